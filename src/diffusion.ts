/**
 * Noising, parameterizations and loss weights (Salimans & Ho 2022, §4 and Appendix). Each function's doc
 * line is its formula. α and σ are tensors that broadcast against z (shape [B, 1, …]).
 */
import { tf } from './tf.js';
import { alphaSigma, snr } from './schedule.js';

type T = tf.Tensor;

export const PARAMETERIZATIONS = ['x', 'eps', 'v', 'both'] as const;
export type Parameterization = (typeof PARAMETERIZATIONS)[number];

export const LOSS_WEIGHTS = ['snr_trunc', 'snr_plus_one', 'snr', 'constant'] as const;
export type LossWeight = (typeof LOSS_WEIGHTS)[number];

/** z = α·x + σ·ε */
export function noise(x: T, eps: T, alpha: T, sigma: T): T {
  return tf.add(tf.mul(alpha, x), tf.mul(sigma, eps));
}

/** x = (z − σ·ε) / α */
export function xFromEps(z: T, eps: T, alpha: T, sigma: T): T {
  return tf.div(tf.sub(z, tf.mul(sigma, eps)), alpha);
}

/** ε = (z − α·x) / σ */
export function epsFromX(z: T, x: T, alpha: T, sigma: T): T {
  return tf.div(tf.sub(z, tf.mul(alpha, x)), sigma);
}

/** v = α·ε − σ·x */
export function vFromXEps(x: T, eps: T, alpha: T, sigma: T): T {
  return tf.sub(tf.mul(alpha, eps), tf.mul(sigma, x));
}

/** x = α·z − σ·v */
export function xFromV(z: T, v: T, alpha: T, sigma: T): T {
  return tf.sub(tf.mul(alpha, z), tf.mul(sigma, v));
}

/** Number of output channels a network needs for a parameterization of data with `channels` channels. */
export function outputChannels(p: Parameterization, channels: number): number {
  switch (p) {
    case 'x':
    case 'eps':
    case 'v':
      return channels;
    case 'both':
      return 2 * channels;
  }
}

/**
 * x̂ from the raw network output.
 *  x:    x̂ = out
 *  eps:  x̂ = (z − σ·ε̃) / α
 *  v:    x̂ = α·z − σ·ṽ
 *  both: out = [x̃, ε̃] along the last axis;  x̂ = σ²·x̃ + α²·(z − σ·ε̃)/α
 */
export function predictX(p: Parameterization, out: T, z: T, alpha: T, sigma: T): T {
  switch (p) {
    case 'x':
      return out;
    case 'eps':
      return xFromEps(z, out, alpha, sigma);
    case 'v':
      return xFromV(z, out, alpha, sigma);
    case 'both': {
      const [xt, et] = tf.split(out, 2, -1) as [T, T];
      return tf.add(tf.mul(tf.square(sigma), xt), tf.mul(tf.square(alpha), xFromEps(z, et, alpha, sigma)));
    }
  }
}

/** Loss weight on ‖x − x̂‖² as a function of λ: snr_trunc = max(SNR, 1); snr_plus_one = 1 + SNR; snr = SNR; constant = 1. */
export function lossWeight(w: LossWeight, l: number): number {
  switch (w) {
    case 'snr_trunc':
      return Math.max(snr(l), 1);
    case 'snr_plus_one':
      return 1 + snr(l);
    case 'snr':
      return snr(l);
    case 'constant':
      return 1;
  }
}

/**
 * Per-example schedule values as tensors shaped to broadcast against data of rank `rank`:
 * logsnr [B], alpha and sigma [B, 1, …].
 */
export function scheduleTensors(ls: ArrayLike<number>, rank: number): { logsnr: T; alpha: T; sigma: T } {
  const n = ls.length;
  const a = new Float32Array(n);
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = alphaSigma(ls[i]!);
    a[i] = v.alpha;
    s[i] = v.sigma;
  }
  const shape = [n, ...Array<number>(rank - 1).fill(1)];
  return { logsnr: tf.tensor1d(Float32Array.from(ls)), alpha: tf.tensor(a, shape), sigma: tf.tensor(s, shape) };
}

/** Weighted x-loss: mean over the batch of w(λ)·mean over dims (x − x̂)². `weights` has shape [B]. */
export function weightedXLoss(x: T, xhat: T, weights: T): tf.Scalar {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i + 1);
  const perExample = tf.mean(tf.squaredDifference(x, xhat), axes);
  return tf.mean(tf.mul(weights, perExample)) as tf.Scalar;
}
