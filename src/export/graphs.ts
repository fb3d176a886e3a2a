/**
 * The two ONNX graphs halfstep writes for a model:
 *  - the denoiser: x_t [batch, …], logsnr [batch] → x0 (x̂, not clipped), eps (ε̂ = (x_t − α·x̂)/σ);
 *  - the sampler: the model's whole N-step DDIM loop unrolled, noise [batch, …] → sample, with the
 *    log-SNR grid baked in as constants and x̂ clipped to the data range at each step, exactly as
 *    src/sampler.ts `sample` does.
 * Both carry halfstep's metadata (metadata_props), so a file says what it is and where it came from.
 */
import type { Parameterization } from '../diffusion.js';
import type { Network } from '../model/network.js';
import type { ParamSet } from '../model/params.js';
import { OnnxGraphBuilder } from '../onnx/graph.js';
import { encodeModel } from '../onnx/proto.js';
import { recipeHash } from '../recipe.js';
import { alphaSigma, logsnr, LOGSNR_MAX, LOGSNR_MIN, timeGrid } from '../schedule.js';
import type { CheckpointMeta } from '../state.js';
import { VERSION } from '../version.js';
import { denoiseOnnx, epsFromXOnnx } from './parameterization.js';

export type GraphKind = 'denoiser' | 'sampler';

/** What an exported file records about its model (all of it lands in metadata_props). */
export interface ExportInfo {
  modelType: string;
  parameterization: Parameterization;
  /** The sampling steps the model was trained for. */
  steps: number;
  stage: string;
  round: number;
  dataShape: number[];
  range: [number, number];
  dataset: string;
  recipeHash: string;
}

export function exportInfo(meta: CheckpointMeta): ExportInfo {
  return {
    modelType: meta.recipe.model.type,
    parameterization: meta.recipe.model.parameterization,
    steps: meta.steps,
    stage: meta.stage === 'teacher' ? 'teacher' : 'student',
    round: meta.round,
    dataShape: meta.dataset.shape,
    range: meta.dataset.range,
    dataset: meta.dataset.name,
    recipeHash: recipeHash(meta.recipe),
  };
}

/** The schedule as recorded in the files (see src/schedule.ts). */
export const SCHEDULE = JSON.stringify({ type: 'cosine', form: 'logsnr = -2*log(tan(a*u + b)), squeezed', logsnr_min: LOGSNR_MIN, logsnr_max: LOGSNR_MAX });

/** Input and output names of the two graphs. */
export const IO = {
  denoiser: { inputs: ['x_t', 'logsnr'], outputs: ['x0', 'eps'] },
  sampler: { inputs: ['noise'], outputs: ['sample'] },
} as const;

function metadata(info: ExportInfo, kind: GraphKind, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'halfstep.version': VERSION,
    'halfstep.kind': kind,
    'halfstep.model': info.modelType,
    'halfstep.stage': info.stage,
    'halfstep.round': String(info.round),
    'halfstep.steps': String(info.steps),
    'halfstep.schedule': SCHEDULE,
    'halfstep.parameterization': info.parameterization,
    'halfstep.data_shape': JSON.stringify(info.dataShape),
    'halfstep.data_range': JSON.stringify(info.range),
    'halfstep.dataset': info.dataset,
    'halfstep.recipe_hash': info.recipeHash,
    ...extra,
  };
}

/** The denoiser graph: x_t [batch, …], logsnr [batch] → x0 [batch, …] (not clipped), eps [batch, …]. */
export function denoiserModel(net: Network, ps: ParamSet, info: ExportInfo): Uint8Array {
  const g = new OnnxGraphBuilder(`halfstep_denoiser_${info.steps}step`);
  const dims = ['batch', ...info.dataShape];
  const z = g.input('x_t', dims);
  const l = g.input('logsnr', ['batch']);
  const { x0, alpha, sigma } = denoiseOnnx(g, net, info.modelType, ps, info.parameterization, z, l, dims.length);
  const eps = g.layer('eps', () => epsFromXOnnx(g, z, x0, alpha, sigma));
  g.output(x0, 'x0', dims);
  g.output(eps, 'eps', dims);
  const doc =
    `halfstep ${info.stage} (${info.steps} steps, ${info.parameterization}-parameterization) as a denoiser: ` +
    'x0 = x̂(x_t, λ) (not clipped), eps = (x_t − α·x0)/σ with α² = sigmoid(λ), σ² = sigmoid(−λ).';
  return encodeModel(g.build({ metadata: metadata(info, 'denoiser'), docString: doc }), VERSION);
}

/**
 * The sampler graph: DDIM (η = 0) with `steps` steps on the grid u = 1, (N−1)/N, …, 0 unrolled, from
 * noise [batch, …] to sample [batch, …]. Per step: x̂ = clip(x̂(z, λ_u)); z_s = α_s·x̂ + σ_s·(z − α_u·x̂)/σ_u;
 * the last step returns x̂.
 */
export function samplerModel(net: Network, ps: ParamSet, info: ExportInfo, steps: number): Uint8Array {
  const g = new OnnxGraphBuilder(`halfstep_sampler_${steps}step`);
  const dims = ['batch', ...info.dataShape];
  const grid = timeGrid(steps);
  const [lo, hi] = info.range;
  let z = g.input('noise', dims);
  for (let k = 0; k < steps; k++) {
    const u = grid[k]!;
    const s = grid[k + 1]!;
    z = g.layer(`step${k}`, () => {
      const lu = logsnr(u);
      const { x0 } = denoiseOnnx(g, net, info.modelType, ps, info.parameterization, z, g.constant([lu], [1], `logsnr_step${k}`), dims.length);
      const xhat = g.op('Clip', [x0, g.constant(lo), g.constant(hi)]);
      if (s <= 0) return xhat;
      const a = alphaSigma(lu);
      const b = alphaSigma(logsnr(s));
      const eps = epsFromXOnnx(g, z, xhat, g.constant(a.alpha), g.constant(a.sigma));
      return g.op('Add', [g.op('Mul', [g.constant(b.alpha), xhat]), g.op('Mul', [g.constant(b.sigma), eps])]);
    });
  }
  g.output(z, 'sample', dims);
  const doc =
    `halfstep ${info.stage} (${info.parameterization}-parameterization): ${steps}-step DDIM sampler, unrolled. ` +
    `noise ~ N(0, I) → sample; x̂ clipped to [${lo}, ${hi}] at each step.`;
  const extra = {
    'halfstep.sampler': 'ddim',
    'halfstep.sampler_steps': String(steps),
    'halfstep.time_grid': JSON.stringify(grid),
    'halfstep.logsnr_grid': JSON.stringify(grid.slice(0, -1).map(logsnr)),
    'halfstep.clip': JSON.stringify([lo, hi]),
  };
  return encodeModel(g.build({ metadata: metadata(info, 'sampler', extra), docString: doc }), VERSION);
}
