/**
 * Teacher training in continuous time (Salimans & Ho 2022, §2; Kingma et al. 2021): u ~ U[0, 1],
 * z_u = α_u·x + σ_u·ε, loss w(λ_u)·‖x − x̂(z_u, λ_u)‖², Adam with warm-up and decay, global-norm
 * clipping and an EMA of the weights. Emits events; never prints.
 */
import { existsSync } from 'node:fs';
import { tf } from './tf.js';
import { lossWeight, noise, predictX, scheduleTensors, weightedXLoss } from './diffusion.js';
import { alphaSigmaFromLogsnr } from './model/network.js';
import { cloneParams } from './optim.js';
import { ParamSet } from './model/params.js';
import { logsnr } from './schedule.js';
import { optimize, type MakeLoss } from './loop.js';
import { Rng } from './rng.js';
import { removeIfExists } from './checkpoint.js';
import { loadInto, readState, writeState, type CheckpointMeta } from './state.js';
import { baseMeta, batchShape, checkSameTraining, drawBatch, loopPlumbing, optimConfig, startOrResume, type Job } from './stage.js';

export interface TrainedModel {
  /** Weights to sample with (the teacher's EMA; a student's parameters). */
  params: ParamSet;
  meta: CheckpointMeta;
  path: string;
}

/** Initial weights of the teacher: a pure function of the recipe seed. */
export function initialParams(job: Job): ParamSet {
  return job.net.init(new Rng((job.recipe.seed ^ 0x7ea0c4e5) >>> 0));
}

/** Load a finished model checkpoint (teacher: its EMA; student: its parameters). */
export function loadModel(job: Job, path: string): TrainedModel {
  const { meta, tensors } = readState(path);
  checkSameTraining(meta, job.recipe, path);
  const params = job.net.init(new Rng(0));
  loadInto(params, meta.stage === 'teacher' ? 'ema' : 'params', tensors, path);
  return { params, meta, path };
}

export async function trainTeacher(job: Job): Promise<TrainedModel> {
  const r = job.recipe;
  if (existsSync(job.run.teacher)) return loadModel(job, job.run.teacher);
  const cfg = r.train;
  const st = startOrResume(job, 'teacher', r.distill.start_steps, () => {
    const params = initialParams(job);
    return { params, ema: cloneParams(params, ParamSet) };
  });
  const meta = baseMeta(job, 'teacher', r.distill.start_steps, 0, cfg.steps);
  const param = r.model.parameterization;
  const rank = job.dataset.shape.length + 1;

  const makeLoss: MakeLoss = (rng) => {
    const B = cfg.batch;
    const x = drawBatch(job, rng, B);
    const eps = rng.normals(x.length);
    const ls = new Float32Array(B);
    const w = new Float32Array(B);
    for (let i = 0; i < B; i++) {
      ls[i] = logsnr(rng.uniform());
      w[i] = lossWeight(cfg.loss_weight, ls[i]!);
    }
    const shape = batchShape(job, B);
    const xT = tf.tensor(x, shape);
    const { logsnr: lT, alpha, sigma } = scheduleTensors(ls, rank);
    const z = noise(xT, tf.tensor(eps, shape), alpha, sigma);
    const wT = tf.tensor1d(w);
    return {
      loss: () => weightedXLoss(xT, predictX(param, job.net.apply(st.params, z, lT, true, rng), z, alpha, sigma), wT),
      dispose: () => tf.dispose([xT, lT, alpha, sigma, z, wT]),
    };
  };

  const res = await optimize({
    stage: 'teacher',
    label: `teacher (${r.distill.start_steps} steps)`,
    total: cfg.steps,
    cfg: optimConfig(cfg),
    params: st.params,
    adam: st.adam,
    ema: { params: st.ema!, decay: cfg.ema },
    rng: st.rng,
    makeLoss,
    progress: st.progress,
    ...loopPlumbing(job, st, meta),
  });
  const finalMeta: CheckpointMeta = { ...meta, step: cfg.steps, done: true, rng: st.rng.state(), adamT: st.adam.t, finalLoss: res.finalLoss, seconds: res.seconds, lossCurve: res.lossCurve };
  await writeState(job.run.teacher, finalMeta, { params: st.params, ema: st.ema, adam: null });
  removeIfExists(job.run.progress);
  job.onEvent({ type: 'stage-end', stage: 'teacher', label: 'teacher', seconds: res.seconds, summary: `final loss ${res.finalLoss.toPrecision(4)}` });
  st.adam.dispose();
  st.params.dispose();
  return { params: st.ema!, meta: finalMeta, path: job.run.teacher };
}

export { alphaSigmaFromLogsnr };
