/**
 * Parity of an exported graph with halfstep's own tfjs computation: the same random inputs through
 * onnxruntime-node and through tfjs, compared element by element (max absolute error, float32).
 *  - denoiser graph: x0 and eps against `denoiser()` (src/model/network.ts) and ε̂ = (z − α·x̂)/σ;
 *  - sampler graph: sample against src/sampler.ts `sample` (DDIM with clipping) from the same noise.
 * The reference runs on tfjs's cpu backend (see onReferenceBackend).
 */
import { tf } from '../tf.js';
import { currentBackend, initBackend } from '../backend.js';
import { epsFromX, type Parameterization } from '../diffusion.js';
import { ParityError } from '../errors.js';
import { alphaSigmaFromLogsnr, denoiser, type Network } from '../model/network.js';
import type { ParamSet } from '../model/params.js';
import { Rng } from '../rng.js';
import { sample } from '../sampler.js';
import { logsnr } from '../schedule.js';
import type { ExportInfo, GraphKind } from './graphs.js';
import { ExportedModel } from './onnxfile.js';

export const PARITY_TOLERANCE = 1e-4;

/**
 * Run `f` on tfjs's cpu backend, then return to the backend that was active. The parity reference is
 * computed there because that backend evaluates exp, atan, sin, cos and sigmoid in float64 (Math.*)
 * and rounds to float32, which the exported graph does too (src/onnx/layers.ts), whereas tfjs-wasm's
 * sin and atan are one ulp off for about 54% and 6% of inputs; the log-SNR embedding multiplies its
 * angle by 1000, turning those ulps into 6e-5 rad, and a network amplifies that past 1e-4.
 * Weights held by another backend are moved by tfjs as the reference reads them.
 */
export async function onReferenceBackend<R>(f: () => R): Promise<R> {
  const prev = currentBackend();
  if (prev === 'cpu') return f();
  await initBackend('cpu');
  try {
    return f();
  } finally {
    if (prev) await initBackend(prev);
  }
}
export const PARITY_BATCHES = [1, 7] as const;

/**
 * The noise levels the denoiser parity draws λ(u) from: u ~ U[uMin, uMax], where both outputs are
 * well-conditioned in float32. ε̂ = (z − α·x̂)/σ multiplies the rounding of x̂ by α/σ = e^{λ/2}, and
 * the ε-parameterization's x̂ = (z − σ·ε̃)/α multiplies that of ε̃ by 1/α; at the ends of the schedule
 * (λ = ±20) these factors reach 2·10⁴, in tfjs and onnxruntime alike, so the outputs there are
 * float32 rounding noise at the 1e-3 level. Within u ∈ [1/64, 63/64] the factors stay below 41, and
 * that interval holds every noise level a sampler of up to 64 steps asks for — except u = 1, which
 * is included wherever x̂ is well-conditioned there (x, v, both).
 */
export function parityRange(p: Parameterization): [number, number] {
  switch (p) {
    case 'x':
    case 'v':
    case 'both':
      return [1 / 64, 1];
    case 'eps':
      return [1 / 64, 63 / 64];
  }
}

/** The largest difference found: which output, which batch size, which element. */
export interface ParityResult {
  kind: GraphKind;
  output: string;
  batch: number;
  /** Multi-index of the worst element, batch axis first. */
  index: number[];
  maxAbs: number;
  onnx: number;
  reference: number;
}

function unravel(flat: number, dims: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = dims.length - 1; i >= 0; i--) {
    out.unshift(flat % dims[i]!);
    flat = Math.floor(flat / dims[i]!);
  }
  return out;
}

/** Max |a − b| over the elements (NaN anywhere on one side only counts as Infinity). */
function worstOf(kind: GraphKind, output: string, dims: number[], a: Float32Array, b: Float32Array): ParityResult {
  let worst = -1;
  let at = 0;
  for (let i = 0; i < b.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const d = Number.isNaN(x) && Number.isNaN(y) ? 0 : Number.isNaN(x) || Number.isNaN(y) ? Infinity : Math.abs(x - y);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  if (a.length !== b.length) worst = Infinity;
  return { kind, output, batch: dims[0]!, index: unravel(at, dims), maxAbs: worst, onnx: a[at] ?? NaN, reference: b[at] ?? NaN };
}

function maxOf(results: ParityResult[]): ParityResult {
  return results.reduce((m, r) => (r.maxAbs > m.maxAbs ? r : m));
}

/** The denoiser graph's x0 and eps against tfjs on random x_t ~ N(0, I) and λ for each batch size. */
export function denoiserParity(model: ExportedModel, net: Network, ps: ParamSet, info: ExportInfo, seed = 0): ParityResult {
  const rng = new Rng(seed);
  const den = denoiser(net, ps, info.parameterization);
  const D = info.dataShape.reduce((a, b) => a * b, 1);
  const [uMin, uMax] = parityRange(info.parameterization);
  const results: ParityResult[] = [];
  for (const B of PARITY_BATCHES) {
    const dims = [B, ...info.dataShape];
    const xt = rng.normals(B * D);
    const ls = new Float32Array(B);
    for (let i = 0; i < B; i++) ls[i] = logsnr(uMin + (uMax - uMin) * rng.uniform());
    // the ends of the range too (u = 1 is the one-step student's only noise level)
    if (B > 2) [ls[0], ls[1]] = [logsnr(uMax), logsnr(uMin)];
    const got = model.denoiseRaw(xt, ls);
    const [x0, eps] = tf.tidy(() => {
      const z = tf.tensor(xt, dims);
      const l = tf.tensor1d(ls);
      const x = den(z, l);
      const { alpha, sigma } = alphaSigmaFromLogsnr(l, z.rank);
      return [x.dataSync() as Float32Array, epsFromX(z, x, alpha, sigma).dataSync() as Float32Array];
    });
    results.push(worstOf('denoiser', 'x0', dims, got.x0, x0!), worstOf('denoiser', 'eps', dims, got.eps, eps!));
  }
  return maxOf(results);
}

/** The sampler graph against halfstep's DDIM loop (with clipping) from the same noise, for each batch size. */
export function samplerParity(model: ExportedModel, net: Network, ps: ParamSet, info: ExportInfo, steps: number, seed = 0): ParityResult {
  const rng = new Rng(seed + 1);
  const den = denoiser(net, ps, info.parameterization);
  const D = info.dataShape.reduce((a, b) => a * b, 1);
  const results: ParityResult[] = [];
  for (const B of PARITY_BATCHES) {
    const dims = [B, ...info.dataShape];
    const noise = rng.normals(B * D);
    const got = model.sample(noise);
    const ref = tf.tidy(() => sample(den, tf.tensor(noise, dims), steps, info.range).dataSync() as Float32Array);
    results.push(worstOf('sampler', 'sample', dims, got, ref));
  }
  return maxOf(results);
}

/** Throw a ParityError naming the graph, the output and the element if the error exceeds `tol`. */
export function assertParity(r: ParityResult, label: string, tol = PARITY_TOLERANCE): void {
  if (r.maxAbs <= tol) return;
  throw new ParityError(
    `${label}: parity check failed: max |onnxruntime − tfjs| = ${r.maxAbs.toExponential(3)} > ${tol} ` +
      `at output "${r.output}", batch size ${r.batch}, index [${r.index.join(', ')}] (onnxruntime ${r.onnx}, tfjs ${r.reference}); nothing was written for this graph`,
    { output: r.output, batch: r.batch, index: r.index, maxAbs: r.maxAbs, onnx: r.onnx, reference: r.reference },
  );
}
