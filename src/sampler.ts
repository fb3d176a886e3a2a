/**
 * DDIM sampling (Song et al. 2021, η = 0) in log-SNR form, as small pure functions that take a
 * denoiser. A denoiser maps (z, λ) to x̂; the same code samples from a tfjs teacher, a student, or
 * an ONNX session.
 */
import { tf } from './tf.js';
import { alphaSigma, logsnr, timeGrid } from './schedule.js';
import { epsFromX } from './diffusion.js';

type T = tf.Tensor;

/** A denoiser: z [B, …] and λ [B] → x̂ [B, …] (not clipped). Must not dispose its inputs. */
export type Denoise = (z: T, logsnr: T) => T;

/** Clip range for x̂ at sampling time (the data range), or null for none. */
export type Clip = readonly [number, number] | null;

/** z_s = α_s·x̂ + σ_s·ε̂, with ε̂ = (z_u − α_u·x̂)/σ_u. α/σ may be numbers or broadcastable tensors. */
export function ddimUpdate(z: T, xhat: T, au: T | number, su: T | number, as: T | number, ss: T | number): T {
  return tf.tidy(() => {
    const eps = epsFromX(z, xhat, toT(au), toT(su));
    return tf.add(tf.mul(toT(as), xhat), tf.mul(toT(ss), eps));
  });
}

/** One DDIM step from u to s < u for the whole batch. On the last step (s = 0) it returns x̂. */
export function ddimStep(denoise: Denoise, z: T, u: number, s: number, clip: Clip = null): T {
  return tf.tidy(() => {
    const lu = logsnr(u);
    let xhat = denoise(z, tf.fill([z.shape[0]!], lu));
    if (clip) xhat = tf.clipByValue(xhat, clip[0], clip[1]);
    if (s <= 0) return xhat;
    const a = alphaSigma(lu);
    const b = alphaSigma(logsnr(s));
    return ddimUpdate(z, xhat, a.alpha, a.sigma, b.alpha, b.sigma);
  });
}

/** Sample with `steps` DDIM steps on the grid u = 1, (N−1)/N, …, 0, starting from z_1 = noise. */
export function sample(denoise: Denoise, noise: T, steps: number, clip: Clip = null): T {
  const grid = timeGrid(steps);
  let z = tf.clone(noise);
  for (let k = 0; k < steps; k++) {
    const next = ddimStep(denoise, z, grid[k]!, grid[k + 1]!, clip);
    z.dispose();
    z = next;
  }
  return z;
}

function toT(v: T | number): T {
  return typeof v === 'number' ? tf.scalar(v) : v;
}
