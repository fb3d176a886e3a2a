/**
 * The models `halfstep serve` loads: every exported student found in a run folder (`<run>/onnx/`),
 * an export folder, or a Triton model repository (`<dir>/sampler_<N>step/1/model.onnx`), one
 * speed/quality tier per step count.
 *
 * Each model runs in a worker thread of its own, on a synchronous onnxruntime-node session (the
 * binding that src/onnx/runtime.ts wraps). Why not onnxruntime-node's async InferenceSession: in
 * 1.30 its `run` only defers the same synchronous native call with setImmediate, so it still runs
 * on the main thread, blocking the event loop (no new requests, health checks or timeouts while a
 * batch runs) and running the tiers one after another. A worker per model keeps the event loop free
 * and lets different tiers run at the same time on different cores.
 *
 * Unrolled sampler graphs run in one call. A student exported without one (more steps than
 * export.unrolled_max_steps) runs its denoiser graph inside halfstep's DDIM loop (src/sampler.ts),
 * written out here on plain arrays because the worker has no tfjs.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { HalfstepError, UsageError } from '../errors.js';
import type { GraphKind } from '../export/graphs.js';
import { readOnnxInfo, type OnnxFileInfo } from '../export/onnxfile.js';
import { DOUBLE, FLOAT } from '../onnx/graph.js';
import { onnx } from '../onnx/proto.js';
import { alphaSigma, logsnr, timeGrid } from '../schedule.js';

const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);

/** An ONNX file found in the served folder, with halfstep's metadata. */
export interface FoundModel {
  /** "student-4" for `student-4.sampler.onnx`, "sampler_4step" for a Triton model. */
  id: string;
  file: string;
  info: OnnxFileInfo;
}

/** The tier name of an N-step model. */
export function tierName(steps: number): string {
  return `${steps}step`;
}

/**
 * The exported models under `dir`: a run folder (its onnx/), a folder of `*.sampler.onnx` and
 * `*.denoiser.onnx`, or a Triton repository. For each step count the unrolled sampler is preferred,
 * and a student over a teacher. A UsageError when there is nothing to serve.
 */
export function findModels(dir: string): FoundModel[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`${dir}: no such folder (give a run folder, its onnx/ folder, or a Triton model repository)`);
  const candidates: { id: string; file: string }[] = [];
  const scanFlat = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const m = /^(.+)\.(sampler|denoiser)\.onnx$/.exec(f);
      if (m) candidates.push({ id: m[1]!, file: join(d, f) });
    }
  };
  const onnxDir = join(dir, 'onnx');
  if (existsSync(onnxDir) && statSync(onnxDir).isDirectory()) scanFlat(onnxDir);
  scanFlat(dir);
  for (const sub of readdirSync(dir).sort()) {
    const f = join(dir, sub, '1', 'model.onnx');
    if (existsSync(f) && existsSync(join(dir, sub, 'config.pbtxt'))) candidates.push({ id: sub, file: f });
  }
  const best = new Map<number, FoundModel & { rank: number }>();
  for (const c of candidates) {
    const info = readOnnxInfo(readFileSync(c.file), c.file);
    const steps = info.kind === 'sampler' ? info.samplerSteps! : info.steps;
    const rank = (info.kind === 'sampler' ? 2 : 0) + (info.metadata['halfstep.stage'] === 'teacher' ? 0 : 1);
    const prev = best.get(steps);
    if (!prev || rank > prev.rank) best.set(steps, { id: c.id, file: c.file, info, rank });
  }
  if (best.size === 0) {
    throw new UsageError(`${dir}: no exported models (<run>/onnx/student-N.sampler.onnx or .denoiser.onnx, or <dir>/sampler_Nstep/1/model.onnx); export them with \`halfstep export RUN --out DIR\``);
  }
  return [...best.entries()].sort((a, b) => a[0] - b[0]).map(([, m]) => ({ id: m.id, file: m.file, info: m.info }));
}

/** What the worker needs to sample: the session file, and for denoiser graphs the DDIM grid. */
interface WorkerInit {
  binding: string;
  common: string;
  file: string;
  kind: GraphKind;
  dataShape: number[];
  range: [number, number];
  threads: number;
  /** Denoiser graphs: λ, α, σ at each grid point u = 1, (N−1)/N, …, 0 (src/schedule.ts). */
  grid: { logsnr: number[]; alpha: number[]; sigma: number[] } | null;
}

type ToWorker = { id: number; noise: Float32Array; n: number };
type FromWorker = { ready: true } | { fatal: string } | { id: number; sample: Float32Array } | { id: number; error: string };

/**
 * The worker's whole program. It runs from its source text (`new Worker(code, { eval: true })`, so
 * the same code works from the TypeScript sources and from the CLI bundle): it may use only its
 * parameters, never anything imported into this module.
 */
function workerMain(require: NodeJS.Require, init: WorkerInit, port: { on(ev: 'message', f: (m: ToWorker) => void): void; postMessage(m: FromWorker, transfer?: ArrayBuffer[]): void }): void {
  type Tensor = { data: Float32Array; dims: number[] };
  let session: { run(feeds: object, fetches: object, opts: object): Record<string, Tensor> };
  let TensorCtor: new (type: string, data: Float32Array, dims: number[]) => Tensor;
  try {
    const b = require(init.binding) as { initOrt(): void; binding: { InferenceSession: new () => typeof session & { loadModel(p: string, o: object): void } } };
    b.initOrt();
    TensorCtor = (require(init.common) as { Tensor: typeof TensorCtor }).Tensor;
    const s = new b.binding.InferenceSession();
    s.loadModel(init.file, {
      intraOpNumThreads: init.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      // fatal only: a failed run is answered with its error message (HTTP 500), not printed
      logSeverityLevel: 4,
      // workers of several tiers share the cores: block, do not spin, between runs
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    });
    session = s;
  } catch (e) {
    port.postMessage({ fatal: (e as Error).message.split('\n')[0]! });
    return;
  }
  const [lo, hi] = init.range;
  const sampleDenoiser = (noise: Float32Array, n: number): Float32Array => {
    const g = init.grid!;
    const dims = [n, ...init.dataShape];
    let z = noise;
    const steps = g.logsnr.length - 1;
    for (let k = 0; k < steps; k++) {
      const l = new Float32Array(n).fill(g.logsnr[k]!);
      const x = session.run({ x_t: new TensorCtor('float32', z, dims), logsnr: new TensorCtor('float32', l, [n]) }, { x0: null }, {}).x0!.data;
      // x̂ clipped to the data range; z_s = α_s·x̂ + σ_s·(z_u − α_u·x̂)/σ_u; the last step returns x̂
      const next = new Float32Array(z.length);
      const [au, su, as, ss] = [g.alpha[k]!, g.sigma[k]!, g.alpha[k + 1]!, g.sigma[k + 1]!];
      for (let i = 0; i < z.length; i++) {
        const xh = Math.min(hi, Math.max(lo, x[i]!));
        next[i] = k === steps - 1 ? xh : as * xh + ss * ((z[i]! - au * xh) / su);
      }
      z = next;
    }
    return z;
  };
  port.on('message', (m) => {
    try {
      const sample =
        init.kind === 'sampler' ? session.run({ noise: new TensorCtor('float32', m.noise, [m.n, ...init.dataShape]) }, { sample: null }, {}).sample!.data : sampleDenoiser(m.noise, m.n);
      const out = sample.byteOffset === 0 && sample.byteLength === sample.buffer.byteLength ? sample : sample.slice();
      port.postMessage({ id: m.id, sample: out }, [out.buffer as ArrayBuffer]);
    } catch (e) {
      port.postMessage({ id: m.id, error: (e as Error).message.split('\n')[0]! });
    }
  });
  port.postMessage({ ready: true });
}

const WORKER_SOURCE = `const wt = require('node:worker_threads');\n(${workerMain.toString()})(require, wt.workerData, wt.parentPort);\n`;

/** Where the workers load onnxruntime-node's binding from; a HalfstepError where it is not installed. */
function runtimePaths(): { binding: string; common: string } {
  try {
    return { binding: req.resolve('onnxruntime-node/dist/binding'), common: req.resolve('onnxruntime-common') };
  } catch (e) {
    throw new HalfstepError(`halfstep serve needs the npm package onnxruntime-node, which could not be found here: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** One served model: its metadata and the worker thread that samples from it. */
export class ServedModel {
  readonly tier: string;
  readonly steps: number;
  /** Values per sample. */
  readonly dim: number;
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (x: Float32Array) => void; reject: (e: Error) => void }>();
  private closed = false;

  constructor(
    readonly found: FoundModel,
    private readonly threads: number,
  ) {
    const info = found.info;
    this.steps = info.kind === 'sampler' ? info.samplerSteps! : info.steps;
    this.tier = tierName(this.steps);
    this.dim = info.dataShape.reduce((a, b) => a * b, 1);
  }

  get id(): string {
    return this.found.id;
  }
  get info(): OnnxFileInfo {
    return this.found.info;
  }

  /** Start the worker and load the session; rejects with a HalfstepError when onnxruntime cannot load the file. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new HalfstepError(`${this.id}: the model was closed`));
    if (this.ready) return this.ready;
    const info = this.info;
    const grid = info.kind === 'denoiser' ? timeGrid(this.steps) : null;
    const init: WorkerInit = {
      ...runtimePaths(),
      file: this.found.file,
      kind: info.kind,
      dataShape: info.dataShape,
      range: info.range,
      threads: this.threads,
      grid: grid && {
        logsnr: grid.map((u) => logsnr(u)),
        alpha: grid.map((u) => alphaSigma(logsnr(u)).alpha),
        sigma: grid.map((u) => alphaSigma(logsnr(u)).sigma),
      },
    };
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: init, name: `halfstep-${this.id}` });
    this.worker = w;
    this.ready = new Promise<void>((resolve, reject) => {
      const fail = (message: string) => {
        const err = new HalfstepError(`${this.id} (${this.found.file}): ${message}`);
        reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (this.worker === w) {
          // the next run starts a fresh worker
          this.worker = null;
          this.ready = null;
        }
      };
      w.on('message', (m: FromWorker) => {
        if ('ready' in m) return resolve();
        if ('fatal' in m) return fail(`onnxruntime could not load the model: ${m.fatal}`);
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if ('error' in m) p.reject(new HalfstepError(`${this.id}: inference failed: ${m.error}`));
        else p.resolve(m.sample);
      });
      w.on('error', (e) => fail(`worker error: ${e.message}`));
      w.on('exit', (code) => {
        if (!this.closed) fail(`worker exited (code ${code})`);
      });
    });
    return this.ready;
  }

  /** Samples for noise [n, …data shape] (flattened); the noise array is handed over to the worker. */
  async sample(noise: Float32Array, n: number): Promise<Float32Array> {
    await this.start();
    const w = this.worker!;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, noise, n } satisfies ToWorker, [noise.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    for (const p of this.pending.values()) p.reject(new HalfstepError(`${this.id}: the model was closed`));
    this.pending.clear();
    if (w) await w.terminate();
  }
}

/** The served models, by tier, with the alias tiers "fast", "balanced" and "quality". */
export class ModelSet {
  readonly models: ServedModel[];
  /** Alias → tier name: fast = fewest steps, quality = most, balanced = the middle one (with 3 or more models). */
  readonly aliases: Record<string, string>;

  constructor(found: FoundModel[], threads = 1) {
    if (found.length === 0) throw new UsageError('no models to serve');
    this.models = found.map((f) => new ServedModel(f, threads));
    const ms = this.models;
    this.aliases = { fast: ms[0]!.tier, quality: ms[ms.length - 1]!.tier };
    if (ms.length >= 3) this.aliases.balanced = ms[Math.floor(ms.length / 2)]!.tier;
  }

  /** Load every model found under `dir`, each in its worker. */
  static async load(dir: string, threads = 1): Promise<ModelSet> {
    const set = new ModelSet(findModels(dir), threads);
    try {
      await Promise.all(set.models.map((m) => m.start()));
    } catch (e) {
      await set.close();
      throw e;
    }
    return set;
  }

  /** Tier names and aliases that requests may give. */
  tierNames(): string[] {
    return [...this.models.map((m) => m.tier), ...Object.keys(this.aliases)];
  }

  byTier(name: string): ServedModel | undefined {
    const t = this.aliases[name] ?? name;
    return this.models.find((m) => m.tier === t);
  }

  bySteps(steps: number): ServedModel | undefined {
    return this.models.find((m) => m.steps === steps);
  }

  byId(id: string): ServedModel | undefined {
    return this.models.find((m) => m.id === id);
  }

  /** The aliases of a tier, e.g. ["fast"]. */
  aliasesOf(tier: string): string[] {
    return Object.entries(this.aliases)
      .filter(([, t]) => t === tier)
      .map(([a]) => a);
  }

  async close(): Promise<void> {
    await Promise.all(this.models.map((m) => m.close()));
  }
}

/** The file name a model's ONNX file is offered under (e.g. to the browser). */
export function modelFileName(m: ServedModel): string {
  return basename(m.found.file);
}

/**
 * The model for browsers: the exported graph with its float64 parts (the log-SNR embedding's exp,
 * arctan, sin and cos, see src/onnx/layers.ts inDouble) computed in float32 instead. onnxruntime-web
 * has no float64 kernels (its WebAssembly build lacks even Cast to double, and WebGPU has no f64), so
 * the exported file cannot load there as it is. The samples then differ from the server's by float32
 * rounding in the embedding; the page shows by how much.
 */
export function float32Variant(bytes: Uint8Array): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph!;
  for (const n of g.node ?? []) {
    if (n.opType !== 'Cast') continue;
    for (const a of n.attribute ?? []) if (a.name === 'to' && Number(a.i) === DOUBLE) a.i = FLOAT;
  }
  for (const t of g.initializer ?? []) {
    if (t.dataType !== DOUBLE) continue;
    const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
    const values = raw ? new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) : Float64Array.from(t.doubleData ?? []);
    const f = Float32Array.from(values);
    t.dataType = FLOAT;
    t.doubleData = [];
    t.rawData = new Uint8Array(f.buffer);
  }
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]) {
    const tt = v.type?.tensorType;
    if (tt && tt.elemType === DOUBLE) tt.elemType = FLOAT;
  }
  const metadata = m.metadataProps ?? [];
  metadata.push(onnx.StringStringEntryProto.create({ key: 'halfstep.variant', value: 'float32 (for onnxruntime-web: the float64 parts computed in float32)' }));
  m.metadataProps = metadata;
  return onnx.ModelProto.encode(m).finish();
}
