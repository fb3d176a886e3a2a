/**
 * The evaluation: for every step count N from start_steps down to end_steps, sample the teacher with
 * DDIM at N steps and the student distilled to N steps from the same noise, and measure each row
 * against the held-out data and the teacher's start_steps samples.
 */
import { tf } from '../tf.js';
import { exampleSize } from '../data/dataset.js';
import { denoiser } from '../model/network.js';
import { Rng } from '../rng.js';
import { sample, type Clip } from '../sampler.js';
import type { Job } from '../stage.js';
import type { TrainedModel } from '../train.js';
import { suiteFor, type MetricSuite, type Metrics } from './suites.js';
import { yieldToEventLoop } from '../loop.js';
import { InterruptedError } from '../errors.js';

export type SamplerKind = 'teacher' | 'student';

export interface Row {
  sampler: SamplerKind;
  steps: number;
  /** The distillation round that produced the model (0 = the teacher itself). */
  round: number;
  metrics: Metrics;
  latency_ms_per_sample: number;
  samples: Float32Array;
}

/** All sampling step counts of a recipe's report: start, start/2, …, end. */
export function reportSteps(start: number, end: number): number[] {
  const out: number[] = [];
  for (let n = start; n >= end; n /= 2) out.push(n);
  return out;
}

/**
 * Images are sampled at most this many at a time: a whole evaluation batch (e.g. 500 MNIST digits) of
 * UNet activations at once can exhaust the wasm heap. Every sample depends only on its own noise, so
 * the samples do not depend on the chunking.
 */
export const IMAGE_SAMPLE_CHUNK = 128;

/** Draw samples with N DDIM steps from fixed noise; returns the samples and the fastest of `repeats` timings. */
export async function timedSample(job: Job, model: TrainedModel, noise: Float32Array, N: number, repeats: number): Promise<{ samples: Float32Array; ms: number }> {
  const D = exampleSize(job.dataset);
  const n = noise.length / D;
  const chunk = job.dataset.shape.length > 1 ? IMAGE_SAMPLE_CHUNK : n;
  const den = denoiser(job.net, model.params, job.recipe.model.parameterization);
  const clip: Clip = job.dataset.range;
  let best = Infinity;
  const out = new Float32Array(n * D);
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      const z = tf.tensor(noise.subarray(i * D, (i + m) * D), [m, ...job.dataset.shape]);
      const s = sample(den, z, N, clip);
      out.set((await s.data()) as Float32Array, i * D);
      tf.dispose([z, s]);
    }
    best = Math.min(best, performance.now() - t0);
    await yieldToEventLoop();
  }
  return { samples: out, ms: best };
}

export interface Evaluation {
  rows: Row[];
  suite: MetricSuite;
  /** Checks of the teacher's start_steps samples (image data: how recognisable they are). */
  teacherCheck: Record<string, number> | null;
}

export async function evaluate(job: Job, teacher: TrainedModel, students: TrainedModel[]): Promise<Evaluation> {
  const r = job.recipe;
  const e = r.eval;
  const D = exampleSize(job.dataset);
  const suite = await suiteFor(job.dataset, r, job.onEvent);
  const n = e.samples;
  const noise = new Rng(e.seed).normals(n * D);
  const steps = reportSteps(r.distill.start_steps, r.distill.end_steps);
  const byN = new Map(students.map((s) => [s.meta.steps, s]));
  const rows: Row[] = [];
  let ref: Float32Array | null = null;
  const t0 = performance.now();
  job.onEvent({ type: 'stage-start', stage: 'eval', label: 'evaluation', total: 2 * steps.length, startAt: 0, backend: job.backend, unit: 'rows' });
  let done = 0;
  const tick = () => job.onEvent({ type: 'step', stage: 'eval', label: 'evaluation', step: ++done, total: 2 * steps.length, loss: Number.NaN, lr: 0, itPerSec: 0 });
  for (const N of steps) {
    if (job.signal?.aborted) throw new InterruptedError(null);
    const t = await timedSample(job, teacher, noise, N, e.latency_repeats);
    if (!ref) ref = t.samples;
    rows.push({ sampler: 'teacher', steps: N, round: 0, metrics: await suite.measure(t.samples, ref), latency_ms_per_sample: t.ms / n, samples: t.samples });
    tick();
    if (N === r.distill.start_steps) {
      // No round produces a start_steps student: the row is the teacher itself (round 0).
      rows.push({ ...rows[rows.length - 1]!, sampler: 'student' });
    } else {
      const s = byN.get(N);
      if (!s) throw new Error(`no ${N}-step student to evaluate`);
      const st = await timedSample(job, s, noise, N, e.latency_repeats);
      rows.push({ sampler: 'student', steps: N, round: s.meta.round, metrics: await suite.measure(st.samples, ref), latency_ms_per_sample: st.ms / n, samples: st.samples });
    }
    tick();
  }
  job.onEvent({ type: 'stage-end', stage: 'eval', label: 'evaluation', seconds: (performance.now() - t0) / 1000, summary: `${rows.length} rows` });
  return { rows, suite, teacherCheck: suite.teacherCheck ? await suite.teacherCheck(ref!) : null };
}
