/**
 * Progressive distillation (Salimans & Ho 2022, Algorithm 2). A round with N student steps:
 * the student starts as a copy of the teacher; draw i ∈ {1..N}, u = i/N; the teacher takes two DDIM
 * steps u → u − 0.5/N → u − 1/N giving z''; the student learns, in one step, the x̃ that lands on z''.
 * After the round the student is the next teacher.
 */
import { existsSync } from 'node:fs';
import { tf } from './tf.js';
import { lossWeight, noise, predictX, scheduleTensors, weightedXLoss } from './diffusion.js';
import { denoiser } from './model/network.js';
import { ParamSet } from './model/params.js';
import { cloneParams } from './optim.js';
import { logsnr } from './schedule.js';
import { ddimUpdate, type Denoise } from './sampler.js';
import { optimize, type MakeLoss } from './loop.js';
import { removeIfExists } from './checkpoint.js';
import { writeState, type CheckpointMeta } from './state.js';
import { roundSteps, roundUpdates } from './recipe.js';
import { baseMeta, batchShape, drawBatch, loopPlumbing, optimConfig, startOrResume, type Job } from './stage.js';
import { loadModel, type TrainedModel } from './train.js';

type T = tf.Tensor;

/**
 * The student's x-target for z at times u (per example) in a round with N student steps:
 *   z'  = DDIM(u → u − 0.5/N) with the teacher's x̂(z, λ_u)
 *   z'' = DDIM(u − 0.5/N → u − 1/N) with the teacher's x̂(z', λ')
 *   x̃  = (z'' − (σ''/σ_u)·z) / (α'' − (σ''/σ_u)·α_u)
 * On the last interval (u − 1/N = 0) the target is the teacher's x̂ from its second call, x̂(z', λ').
 */
export function distillTarget(teacher: Denoise, z: T, u: ArrayLike<number>, N: number): T {
  return tf.tidy(() => {
    const B = u.length;
    const rank = z.rank;
    const l0 = new Float32Array(B);
    const l1 = new Float32Array(B);
    const l2 = new Float32Array(B);
    const last = new Float32Array(B);
    for (let i = 0; i < B; i++) {
      const u2 = u[i]! - 1 / N;
      l0[i] = logsnr(u[i]!);
      l1[i] = logsnr(u[i]! - 0.5 / N);
      l2[i] = logsnr(Math.max(u2, 0));
      last[i] = u2 <= 1e-9 ? 1 : 0;
    }
    const s0 = scheduleTensors(l0, rank);
    const s1 = scheduleTensors(l1, rank);
    const s2 = scheduleTensors(l2, rank);
    const x1 = teacher(z, s0.logsnr);
    const z1 = ddimUpdate(z, x1, s0.alpha, s0.sigma, s1.alpha, s1.sigma);
    const x2 = teacher(z1, s1.logsnr);
    const z2 = ddimUpdate(z1, x2, s1.alpha, s1.sigma, s2.alpha, s2.sigma);
    const ratio = tf.div(s2.sigma, s0.sigma);
    const xt = tf.div(tf.sub(z2, tf.mul(ratio, z)), tf.sub(s2.alpha, tf.mul(ratio, s0.alpha)));
    const isLast = tf.tensor(last, [B, ...Array<number>(rank - 1).fill(1)]);
    return tf.add(tf.mul(isLast, x2), tf.mul(tf.sub(1, isLast), xt));
  });
}

/** One round: distill `teacher` (sampled with 2N steps) into a student with N steps. */
export async function distillRound(job: Job, N: number, teacher: TrainedModel, round: number): Promise<TrainedModel> {
  const r = job.recipe;
  const cfg = r.distill;
  const total = roundUpdates(r, N);
  const st = startOrResume(job, 'distill', N, () => ({ params: cloneParams(teacher.params, ParamSet), ema: null }));
  const meta = baseMeta(job, 'distill', N, round, total);
  const param = r.model.parameterization;
  const teach = denoiser(job.net, teacher.params, param);
  const rank = job.dataset.shape.length + 1;

  const makeLoss: MakeLoss = (rng) => {
    const B = cfg.batch;
    const x = drawBatch(job, rng, B);
    const eps = rng.normals(x.length);
    const u = new Float32Array(B);
    const ls = new Float32Array(B);
    const w = new Float32Array(B);
    for (let i = 0; i < B; i++) {
      u[i] = (1 + rng.int(N)) / N;
      ls[i] = logsnr(u[i]!);
      w[i] = lossWeight(cfg.loss_weight, ls[i]!);
    }
    const shape = batchShape(job, B);
    const { logsnr: lT, alpha, sigma } = scheduleTensors(ls, rank);
    const z = tf.tidy(() => noise(tf.tensor(x, shape), tf.tensor(eps, shape), alpha, sigma));
    const target = distillTarget(teach, z, u, N);
    const wT = tf.tensor1d(w);
    return {
      loss: () => weightedXLoss(target, predictX(param, job.net.apply(st.params, z, lT, true, rng), z, alpha, sigma), wT),
      dispose: () => tf.dispose([lT, alpha, sigma, z, target, wT]),
    };
  };

  const res = await optimize({
    stage: 'distill',
    label: `round ${round}: ${2 * N} → ${N} steps`,
    total,
    cfg: optimConfig(cfg),
    params: st.params,
    adam: st.adam,
    ema: null,
    rng: st.rng,
    makeLoss,
    progress: st.progress,
    ...loopPlumbing(job, st, meta),
  });
  const finalMeta: CheckpointMeta = { ...meta, step: total, done: true, rng: st.rng.state(), adamT: st.adam.t, finalLoss: res.finalLoss, seconds: res.seconds, lossCurve: res.lossCurve };
  const path = job.run.student(N);
  await writeState(path, finalMeta, { params: st.params, ema: null, adam: null });
  removeIfExists(job.run.progress);
  job.onEvent({ type: 'stage-end', stage: 'distill', label: `round ${round}`, seconds: res.seconds, summary: `${N}-step student, final loss ${res.finalLoss.toPrecision(4)}` });
  st.adam.dispose();
  return { params: st.params, meta: finalMeta, path };
}

/** All rounds from start_steps to end_steps; finished rounds (student-N.ckpt present) are loaded, not redone. */
export async function distillAll(job: Job, teacher: TrainedModel): Promise<TrainedModel[]> {
  const students: TrainedModel[] = [];
  let current = teacher;
  const steps = roundSteps(job.recipe);
  for (const [k, N] of steps.entries()) {
    const path = job.run.student(N);
    const next = existsSync(path) ? loadModel(job, path) : await distillRound(job, N, current, k + 1);
    if (current !== teacher) {
      // keep every student: the evaluation needs them all
    }
    students.push(next);
    current = next;
  }
  return students;
}
