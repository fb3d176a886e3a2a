/** Sample-quality metrics for vector data. Exact definitions are also written into every report. */
import { Rng } from '../rng.js';

export const METRIC_DEFINITIONS = {
  swd:
    'Sliced Wasserstein-1 distance: for K directions θ drawn uniformly on the unit sphere (fixed by eval.seed), project the n samples and n held-out points onto θ, sort both, and average |a_(i) − b_(i)| over i; then average over the K directions. n = min(samples, held-out size). Lower is better; 0 for identical sets.',
  energy:
    'Energy distance (Székely & Rizzo): 2·E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖ with Euclidean norms, X the samples and Y the held-out points (m = eval.energy_samples of each; within-set means over pairs i ≠ j). Lower is better; 0 in expectation for identical distributions.',
  teacher_mse:
    "Fidelity to the teacher: mean over samples and coordinates of (s − t)², where t is the teacher's sample at start_steps DDIM steps from the same initial noise. 0 for the teacher at start_steps itself.",
} as const;

/** Sliced Wasserstein-1 distance between point sets a and b ([n·d] row-major), with K random directions. */
export function slicedWasserstein(a: Float32Array, b: Float32Array, d: number, K: number, seed: number): number {
  const n = Math.min(a.length, b.length) / d;
  const rng = new Rng(seed);
  const pa = new Float64Array(n);
  const pb = new Float64Array(n);
  const th = new Float64Array(d);
  let total = 0;
  for (let k = 0; k < K; k++) {
    let norm = 0;
    for (let j = 0; j < d; j++) {
      th[j] = rng.normal();
      norm += th[j]! * th[j]!;
    }
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) {
      let sa = 0;
      let sb = 0;
      for (let j = 0; j < d; j++) {
        sa += a[i * d + j]! * th[j]!;
        sb += b[i * d + j]! * th[j]!;
      }
      pa[i] = sa / norm;
      pb[i] = sb / norm;
    }
    pa.sort();
    pb.sort();
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.abs(pa[i]! - pb[i]!);
    total += s / n;
  }
  return total / K;
}

function meanDist(a: Float32Array, b: Float32Array, d: number, m: number, same: boolean): number {
  let s = 0;
  let count = 0;
  for (let i = 0; i < m; i++) {
    for (let j = same ? i + 1 : 0; j < m; j++) {
      let q = 0;
      for (let k = 0; k < d; k++) {
        const t = a[i * d + k]! - b[j * d + k]!;
        q += t * t;
      }
      s += Math.sqrt(q);
      count += 1;
    }
  }
  return s / count;
}

/** Energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ on the first m points of each set. */
export function energyDistance(x: Float32Array, y: Float32Array, d: number, m: number): number {
  const mm = Math.min(m, x.length / d, y.length / d);
  return 2 * meanDist(x, y, d, mm, false) - meanDist(x, x, d, mm, true) - meanDist(y, y, d, mm, true);
}

/** Mean squared difference over all values. */
export function mse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const t = a[i]! - b[i]!;
    s += t * t;
  }
  return s / a.length;
}
