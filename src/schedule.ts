/**
 * The noise schedule in continuous time u ∈ [0, 1], in log-SNR form (Salimans & Ho 2022, §2; Kingma
 * et al. 2021). Pure functions of numbers.
 *
 * Cosine schedule, squeezed (not clipped) so that λ(0) = λmax and λ(1) = λmin:
 *   λ(u) = −2·log(tan(a·u + b)),  b = arctan(exp(−λmax/2)),  a = arctan(exp(−λmin/2)) − b.
 *   α² = sigmoid(λ),  σ² = sigmoid(−λ),  z_u = α·x + σ·ε.
 */
export const LOGSNR_MAX = 20;
export const LOGSNR_MIN = -20;

const B = Math.atan(Math.exp(-LOGSNR_MAX / 2));
const A = Math.atan(Math.exp(-LOGSNR_MIN / 2)) - B;

/** λ(u) = −2·log(tan(a·u + b)). */
export function logsnr(u: number): number {
  return -2 * Math.log(Math.tan(A * u + B));
}

/** Inverse of λ(u): u = (arctan(exp(−λ/2)) − b) / a. */
export function timeFromLogsnr(l: number): number {
  return (Math.atan(Math.exp(-l / 2)) - B) / A;
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)); α² + σ² = 1. */
export function alphaSigma(l: number): { alpha: number; sigma: number } {
  return { alpha: Math.sqrt(sigmoid(l)), sigma: Math.sqrt(sigmoid(-l)) };
}

/** SNR = α²/σ² = exp(λ). */
export function snr(l: number): number {
  return Math.exp(l);
}

/** The N-step grid u_i = i/N for i = N, N−1, …, 0 (sampling runs from u = 1 down to u = 0). */
export function timeGrid(steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  return Array.from({ length: steps + 1 }, (_, k) => (steps - k) / steps);
}

/**
 * A monotone map of λ into (0, 1) used to condition the network (as in the official code): the
 * inverse of an unsqueezed cosine schedule, c = arctan(exp(−λ/2)) / (π/2). High SNR → 0, pure noise → 1.
 */
export function logsnrToCond(l: number): number {
  const lc = Math.min(Math.max(l, LOGSNR_MIN), LOGSNR_MAX);
  return Math.atan(Math.exp(-0.5 * lc)) / (0.5 * Math.PI);
}
