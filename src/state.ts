/**
 * The training state that a checkpoint holds (weights, EMA, Adam moments, RNG, step) and its
 * conversion to and from checkpoint files. Shared by teacher training and distillation.
 */
import { tf } from './tf.js';
import { loadCheckpoint, saveCheckpoint, type NamedTensor } from './checkpoint.js';
import { CheckpointError, HalfstepError } from './errors.js';
import { ParamSet } from './model/params.js';
import type { Adam } from './optim.js';
import type { Recipe } from './recipe.js';
import type { RngState } from './rng.js';

export type CheckpointStage = 'teacher' | 'distill';

export interface CheckpointMeta {
  format: 'halfstep-checkpoint';
  halfstep: string;
  stage: CheckpointStage;
  /** Sampling steps this model is meant for (the teacher: start_steps; a student: its N). */
  steps: number;
  /** 0 for the teacher, k for the k-th distillation round. */
  round: number;
  /** Updates done and planned. */
  step: number;
  total: number;
  done: boolean;
  rng: RngState;
  adamT: number;
  recipe: Recipe;
  trainingHash: string;
  dataset: { name: string; shape: number[]; range: [number, number] };
  backend: string;
  finalLoss: number | null;
  seconds: number;
  /** Mean loss per chunk of updates, for charts. */
  lossCurve: { step: number; loss: number }[];
}

async function toNamed(ps: ParamSet, prefix: string, out: Map<string, NamedTensor>): Promise<void> {
  for (const p of ps.list) out.set(`${prefix}/${p.name}`, { shape: p.variable.shape.slice(), data: (await p.variable.data()) as Float32Array });
}

function fromNamed(target: { name: string; variable: tf.Variable }[], prefix: string, tensors: Map<string, NamedTensor>, path: string): void {
  for (const p of target) {
    const t = tensors.get(`${prefix}/${p.name}`);
    if (!t) throw new CheckpointError(`${path}: no tensor "${prefix}/${p.name}"; the checkpoint was made for another model (compare model.* in the recipe)`);
    if (t.shape.join(',') !== p.variable.shape.join(',')) {
      throw new CheckpointError(`${path}: tensor "${prefix}/${p.name}" has shape [${t.shape}], the model expects [${p.variable.shape}] (compare model.* in the recipe)`);
    }
    p.variable.assign(tf.tensor(t.data, t.shape));
  }
}

export interface StateParts {
  params: ParamSet;
  ema: ParamSet | null;
  adam: Adam | null;
}

/** Write a checkpoint atomically. Refuses weights that are not finite, so no checkpoint on disk holds them. */
export async function writeState(path: string, meta: CheckpointMeta, parts: StateParts): Promise<void> {
  const tensors = new Map<string, NamedTensor>();
  await toNamed(parts.params, 'params', tensors);
  if (parts.ema) await toNamed(parts.ema, 'ema', tensors);
  for (const [name, t] of tensors) {
    if (!t.data.every(Number.isFinite)) {
      throw new HalfstepError(`${meta.stage} (${meta.steps} steps): weight ${name} is not finite after ${meta.step} updates; stopped without writing ${path}. Try a lower learning rate or a smaller grad_clip.`);
    }
  }
  if (parts.adam) {
    for (const [i, p] of parts.params.list.entries()) {
      tensors.set(`adam.m/${p.name}`, { shape: p.variable.shape.slice(), data: (await parts.adam.m[i]!.data()) as Float32Array });
      tensors.set(`adam.v/${p.name}`, { shape: p.variable.shape.slice(), data: (await parts.adam.v[i]!.data()) as Float32Array });
    }
  }
  saveCheckpoint(path, meta, tensors);
}

/** Read a checkpoint's header (and tensors) and check it is a halfstep model checkpoint. */
export function readState(path: string): { meta: CheckpointMeta; tensors: Map<string, NamedTensor> } {
  const ck = loadCheckpoint<CheckpointMeta>(path);
  if (ck.meta?.format !== 'halfstep-checkpoint') throw new CheckpointError(`${path}: not a halfstep model checkpoint`);
  return ck;
}

/** Copy tensors of group `prefix` ("params" or "ema") into a ParamSet with the same names. */
export function loadInto(ps: ParamSet, prefix: 'params' | 'ema', tensors: Map<string, NamedTensor>, path: string): void {
  fromNamed(ps.list, prefix, tensors, path);
}

export function loadAdam(adam: Adam, ps: ParamSet, tensors: Map<string, NamedTensor>, t: number, path: string): void {
  fromNamed(ps.list.map((p, i) => ({ name: p.name, variable: adam.m[i]! })), 'adam.m', tensors, path);
  fromNamed(ps.list.map((p, i) => ({ name: p.name, variable: adam.v[i]! })), 'adam.v', tensors, path);
  adam.t = t;
}
