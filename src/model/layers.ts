/** Functional building blocks shared by the denoisers (pure tfjs-core ops; no tfjs-layers). */
import { tf } from '../tf.js';
import { glorotUniform, zeros, type ParamSet } from './params.js';
import type { Rng } from '../rng.js';

type T = tf.Tensor;

/** SiLU(x) = x·sigmoid(x). */
export function silu(x: T): T {
  return tf.mul(x, tf.sigmoid(x));
}

/** A dense layer's parameters: `${name}.w` [in, out] and `${name}.b` [out]. */
export function denseParams(ps: ParamSet, rng: Rng, name: string, fanIn: number, fanOut: number, init: 'glorot' | 'zero' = 'glorot'): void {
  ps.add(`${name}.w`, init === 'zero' ? zeros([fanIn, fanOut]) : glorotUniform(rng, [fanIn, fanOut], fanIn, fanOut));
  ps.add(`${name}.b`, zeros([fanOut]));
}

/** y = x·W + b over the last axis of a 2D input. */
export function dense(ps: ParamSet, name: string, x: T): T {
  return tf.add(tf.matMul(x as tf.Tensor2D, ps.get(`${name}.w`) as tf.Tensor2D), ps.get(`${name}.b`));
}

/**
 * Sinusoidal embedding of the noise level. λ is first mapped monotonically into (0, 1) by
 * c = arctan(exp(−λ/2)) / (π/2) (clipped to ±20 first), then c·1000 is embedded as
 * [sin(c·1000·f_k), cos(c·1000·f_k)], f_k = 10000^(−k/(d/2)) (Vaswani et al. 2017; Ho et al. 2020).
 */
export function logsnrEmbedding(logsnr: T, dim: number): T {
  return tf.tidy(() => {
    const half = dim / 2;
    const freqs = new Float32Array(half);
    for (let k = 0; k < half; k++) freqs[k] = Math.exp((-Math.log(10000) * k) / half);
    const c = tf.div(tf.atan(tf.exp(tf.mul(tf.clipByValue(logsnr, -20, 20), -0.5))), Math.PI / 2);
    const ang = tf.mul(tf.reshape(tf.mul(c, 1000), [-1, 1]), tf.tensor2d(freqs, [1, half]));
    return tf.concat([tf.sin(ang), tf.cos(ang)], 1);
  });
}

/** The time-embedding MLP's parameters: `temb.0` [embDim, width] and `temb.1` [width, width]. */
export function timeEmbeddingParams(ps: ParamSet, rng: Rng, embDim: number, width: number): void {
  denseParams(ps, rng, 'temb.0', embDim, width);
  denseParams(ps, rng, 'temb.1', width, width);
}

/** t = SiLU(temb.1(SiLU(temb.0(emb(λ))))): the conditioning every block of a denoiser adds. */
export function timeEmbedding(ps: ParamSet, logsnr: T, embDim: number): T {
  return silu(dense(ps, 'temb.1', silu(dense(ps, 'temb.0', logsnrEmbedding(logsnr, embDim)))));
}
