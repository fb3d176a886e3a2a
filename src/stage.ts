/**
 * What teacher training and a distillation round have in common: the job they belong to, batches
 * drawn from the training split, the checkpoint metadata, and the rule that decides between a
 * fresh start, a resume from progress.ckpt, and a refusal to overwrite.
 */
import { existsSync } from 'node:fs';
import { tf } from './tf.js';
import { CheckpointError, UsageError } from './errors.js';
import type { Dataset } from './data/dataset.js';
import { exampleSize } from './data/dataset.js';
import type { OnEvent } from './events.js';
import type { Network } from './model/network.js';
import { ParamSet } from './model/params.js';
import { Adam } from './optim.js';
import { canonicalJson, recipeHash, type Recipe } from './recipe.js';
import { Rng } from './rng.js';
import type { RunDir } from './rundir.js';
import { loadAdam, loadInto, readState, writeState, type CheckpointMeta, type CheckpointStage } from './state.js';
import type { LoopOptions, LoopProgress, OptimConfig } from './loop.js';
import { VERSION } from './version.js';

export interface Job {
  recipe: Recipe;
  dataset: Dataset;
  train: { x: Float32Array; n: number };
  net: Network;
  run: RunDir;
  backend: string;
  onEvent: OnEvent;
  signal?: AbortSignal;
  resume: boolean;
  /** Testing aid: every stage stops (as if interrupted) once it has done this many updates. */
  stopAfter?: number;
}

/**
 * The recipe sections that change what a stage computes; a checkpoint is reused or resumed only if
 * they match. The teacher does not depend on distill.*; no student depends on distill.end_steps, so a
 * run can be extended to fewer steps later (64 → 4 now, → 1 next time) without redoing its rounds.
 */
export function trainingSections(r: Recipe, stage: CheckpointStage): Partial<Recipe> {
  const base = { seed: r.seed, data: r.data, model: r.model, train: r.train };
  if (stage === 'teacher') return base;
  const { end_steps: _unused, ...distill } = r.distill;
  return { ...base, distill: distill as Recipe['distill'] };
}

export function trainingHash(r: Recipe, stage: CheckpointStage): string {
  return recipeHash(trainingSections(r, stage) as Recipe);
}

/** Keys whose values differ between two recipes' training sections, for error messages. */
export function differingKeys(a: unknown, b: unknown, path = ''): string[] {
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => differingKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
  }
  return canonicalJson(a) === canonicalJson(b) ? [] : [path];
}

export function checkSameTraining(meta: CheckpointMeta, r: Recipe, path: string): void {
  if (meta.trainingHash === trainingHash(r, meta.stage)) return;
  const diff = differingKeys(trainingSections(meta.recipe, meta.stage), trainingSections(r, meta.stage));
  throw new UsageError(`${path} was made with a different recipe (differs at: ${diff.join(', ') || 'unknown'}); use the same recipe and --set overrides, or another --out`);
}

/** A batch of `b` training examples drawn with replacement: values [b·D]. */
export function drawBatch(job: Job, rng: Rng, b: number): Float32Array {
  const D = exampleSize(job.dataset);
  const out = new Float32Array(b * D);
  for (let i = 0; i < b; i++) {
    const k = rng.int(job.train.n);
    out.set(job.train.x.subarray(k * D, (k + 1) * D), i * D);
  }
  return out;
}

export function batchShape(job: Job, b: number): number[] {
  return [b, ...job.dataset.shape];
}

export function baseMeta(job: Job, stage: CheckpointStage, steps: number, round: number, total: number): Omit<CheckpointMeta, 'step' | 'done' | 'rng' | 'adamT' | 'finalLoss' | 'seconds' | 'lossCurve'> {
  return {
    format: 'halfstep-checkpoint',
    halfstep: VERSION,
    stage,
    steps,
    round,
    total,
    recipe: job.recipe,
    trainingHash: trainingHash(job.recipe, stage),
    dataset: { name: job.dataset.name, shape: job.dataset.shape, range: job.dataset.range },
    backend: job.backend,
  };
}

/** The optimiser settings of a recipe section as the loop wants them. */
export function optimConfig(s: Recipe['train'] | Recipe['distill']): OptimConfig {
  return {
    lr: s.lr,
    warmup: 'warmup' in s ? s.warmup : 0,
    decay: s.decay,
    grad_clip: s.grad_clip,
    adam_beta1: s.adam_beta1,
    adam_beta2: s.adam_beta2,
    adam_eps: s.adam_eps,
    checkpoint_every: s.checkpoint_every,
  };
}

export interface StageState {
  params: ParamSet;
  ema: ParamSet | null;
  adam: Adam;
  rng: Rng;
  progress: LoopProgress;
}

/**
 * Resume the stage from progress.ckpt if it holds this stage (and --resume was given), or start
 * from `fresh()`. Refuses to silently discard another run's progress.
 */
export function startOrResume(job: Job, stage: CheckpointStage, steps: number, fresh: () => { params: ParamSet; ema: ParamSet | null }): StageState {
  const cfg = optimConfig(stage === 'teacher' ? job.recipe.train : job.recipe.distill);
  const path = job.run.progress;
  if (existsSync(path)) {
    const { meta, tensors } = readState(path);
    const same = meta.stage === stage && meta.steps === steps;
    if (!job.resume) {
      throw new UsageError(`${job.run.root} holds an interrupted run (${meta.stage} at ${meta.step}/${meta.total} updates); continue it with --resume, or choose another --out`);
    }
    if (same) {
      checkSameTraining(meta, job.recipe, path);
      const { params, ema } = fresh();
      loadInto(params, 'params', tensors, path);
      if (ema) loadInto(ema, 'ema', tensors, path);
      const adam = new Adam(params, { beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_eps });
      loadAdam(adam, params, tensors, meta.adamT, path);
      job.onEvent({ type: 'info', message: `resuming ${meta.stage} (${steps} steps) at update ${meta.step}/${meta.total} from ${path}` });
      return { params, ema, adam, rng: new Rng(meta.rng), progress: { step: meta.step, rng: meta.rng, seconds: meta.seconds, lossCurve: meta.lossCurve } };
    }
    if (!(meta.stage === 'teacher' || meta.stage === 'distill')) throw new CheckpointError(`${path}: unknown stage ${String(meta.stage)}`);
  }
  const { params, ema } = fresh();
  const adam = new Adam(params, { beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_eps });
  // A stage's batches come from a generator seeded by the recipe seed and the stage, so each stage
  // is reproducible on its own.
  const rng = new Rng((job.recipe.seed * 1000003 + (stage === 'teacher' ? 0 : steps + 1)) >>> 0);
  return { params, ema, adam, rng, progress: { step: 0, rng: rng.state(), seconds: 0, lossCurve: [] } };
}

/** The loop options common to both stages: saving progress and naming the last good checkpoint. */
export function loopPlumbing(
  job: Job,
  st: StageState,
  meta: ReturnType<typeof baseMeta>,
): Pick<LoopOptions, 'save' | 'lastCheckpoint' | 'backend' | 'onEvent' | 'signal' | 'stopAfter'> {
  let last: string | null = existsSync(job.run.progress) ? job.run.progress : null;
  return {
    save: async (p, finalLoss) => {
      await writeState(job.run.progress, { ...meta, step: p.step, done: false, rng: p.rng, adamT: st.adam.t, finalLoss, seconds: p.seconds, lossCurve: p.lossCurve }, st);
      last = job.run.progress;
      return job.run.progress;
    },
    lastCheckpoint: () => last,
    backend: job.backend,
    onEvent: job.onEvent,
    signal: job.signal,
    stopAfter: job.stopAfter,
  };
}

/** A tensor of per-example scalars shaped [B, 1, …] for data of the job's rank. */
export function perExample(job: Job, values: Float32Array): tf.Tensor {
  return tf.tensor(values, [values.length, ...job.dataset.shape.map(() => 1)]);
}
