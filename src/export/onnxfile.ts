/**
 * Reading exported files back: the metadata halfstep wrote, and a synchronous onnxruntime session
 * (src/onnx/runtime.ts) wrapped as a sampler `Denoise` (denoiser graphs) or as a one-call sampler
 * (unrolled graphs).
 */
import { existsSync, readFileSync } from 'node:fs';
import { tf } from '../tf.js';
import type { Parameterization } from '../diffusion.js';
import { UsageError } from '../errors.js';
import { onnx } from '../onnx/proto.js';
import { SyncSession, type SessionOptions } from '../onnx/runtime.js';
import { sample, type Denoise } from '../sampler.js';
import type { GraphKind } from './graphs.js';

export interface OnnxFileInfo {
  kind: GraphKind;
  /** Steps the model was trained for. */
  steps: number;
  /** For sampler graphs: the steps unrolled in the graph. */
  samplerSteps: number | null;
  parameterization: Parameterization;
  dataShape: number[];
  range: [number, number];
  dataset: string;
  recipeHash: string;
  version: string;
  metadata: Record<string, string>;
}

/** halfstep's metadata of an ONNX model (bytes of `file`); a UsageError if the file was not written by halfstep. */
export function readOnnxInfo(bytes: Uint8Array, file: string): OnnxFileInfo {
  let model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new UsageError(`${file}: not an ONNX model (${(e as Error).message.split('\n')[0]})`);
  }
  const metadata: Record<string, string> = {};
  for (const p of model.metadataProps) if (p.key) metadata[p.key] = p.value ?? '';
  const need = (k: string): string => {
    const v = metadata[`halfstep.${k}`];
    if (v === undefined) throw new UsageError(`${file}: metadata_props lacks "halfstep.${k}"; was it exported by \`halfstep export\`?`);
    return v;
  };
  const kind = need('kind');
  if (kind !== 'denoiser' && kind !== 'sampler') throw new UsageError(`${file}: unknown halfstep.kind "${kind}" (expected denoiser or sampler)`);
  return {
    kind,
    steps: Number(need('steps')),
    samplerSteps: kind === 'sampler' ? Number(need('sampler_steps')) : null,
    parameterization: need('parameterization') as Parameterization,
    dataShape: JSON.parse(need('data_shape')) as number[],
    range: JSON.parse(need('data_range')) as [number, number],
    dataset: need('dataset'),
    recipeHash: need('recipe_hash'),
    version: need('version'),
    metadata,
  };
}

/** An exported model loaded into onnxruntime-node. */
export class ExportedModel {
  readonly info: OnnxFileInfo;
  readonly session: SyncSession;

  constructor(readonly file: string, bytes?: Uint8Array, opts: SessionOptions = {}) {
    if (!bytes) {
      if (!existsSync(file)) throw new UsageError(`${file}: ONNX file not found`);
      bytes = readFileSync(file);
    }
    this.info = readOnnxInfo(bytes, file);
    this.session = new SyncSession(bytes, opts);
  }

  /** Denoiser graphs: x0 and eps for x_t [B, …] and logsnr [B]. */
  denoiseRaw(xt: Float32Array, logsnr: Float32Array): { x0: Float32Array; eps: Float32Array } {
    this.expect('denoiser');
    const B = logsnr.length;
    const dims = [B, ...this.info.dataShape];
    const r = this.session.run({ x_t: { data: xt, dims }, logsnr: { data: logsnr, dims: [B] } }, { x0: null, eps: null });
    return { x0: r.x0!.data, eps: r.eps!.data };
  }

  /** Denoiser graphs as the function halfstep's samplers take: (z, λ) → x̂. */
  denoise(): Denoise {
    this.expect('denoiser');
    return (z, l) => {
      const r = this.session.run({ x_t: { data: z.dataSync() as Float32Array, dims: z.shape }, logsnr: { data: l.dataSync() as Float32Array, dims: l.shape } }, { x0: null });
      return tf.tensor(r.x0!.data, r.x0!.dims as number[]);
    };
  }

  /** Sampler graphs: samples from noise [n, …] in one call. */
  sample(noise: Float32Array): Float32Array {
    this.expect('sampler');
    const D = this.info.dataShape.reduce((a, b) => a * b, 1);
    const dims = [noise.length / D, ...this.info.dataShape];
    return this.session.run({ noise: { data: noise, dims } }, { sample: null }).sample!.data;
  }

  private expect(kind: GraphKind): void {
    if (this.info.kind !== kind) throw new UsageError(`${this.file} is a ${this.info.kind} graph; this needs a ${kind} graph`);
  }
}

/**
 * Samples from an exported model: a sampler graph in one call, or a denoiser graph driven by
 * halfstep's DDIM loop (src/sampler.ts, x̂ clipped to the data range) with `steps` steps (default: the
 * model's own). Noise is [n, …data shape], flattened.
 */
export function sampleExported(m: ExportedModel, noise: Float32Array, steps?: number): { samples: Float32Array; steps: number } {
  switch (m.info.kind) {
    case 'sampler': {
      const own = m.info.samplerSteps!;
      if (steps !== undefined && steps !== own) throw new UsageError(`${m.file} is an unrolled ${own}-step sampler; it cannot sample with ${steps} steps (export the denoiser graph for that)`);
      return { samples: m.sample(noise), steps: own };
    }
    case 'denoiser': {
      const n = steps ?? m.info.steps;
      const D = m.info.dataShape.reduce((a, b) => a * b, 1);
      const samples = tf.tidy(() => sample(m.denoise(), tf.tensor(noise, [noise.length / D, ...m.info.dataShape]), n, m.info.range).dataSync() as Float32Array);
      return { samples, steps: n };
    }
  }
}
