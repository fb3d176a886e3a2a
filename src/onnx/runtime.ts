/**
 * Synchronous onnxruntime-node sessions. The public InferenceSession.run is async; tfjs kernels and
 * halfstep's samplers are synchronous, so this uses onnxruntime-node's own binding
 * (`onnxruntime-node/dist/binding`: initOrt, InferenceSession.loadModel/run), which runs on the
 * calling thread. It is internal API: onnxruntime-node is pinned (1.30.0) and test/ort.test.ts checks it.
 * onnxruntime-node is loaded lazily, only by code paths that need it (it is not in the GPU bundle).
 */
import { createRequire } from 'node:module';
import { HalfstepError } from '../errors.js';

const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);

interface NativeSession {
  loadModel(buf: ArrayBuffer, off: number, len: number, opts: object): void;
  loadModel(path: string, opts: object): void;
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, opts: object): Record<string, OrtTensorLike>;
  readonly inputMetadata?: unknown;
}
export interface OrtTensorLike {
  data: Float32Array;
  dims: readonly number[];
  type: string;
}
type TensorCtor = new (type: string, data: Float32Array | BigInt64Array, dims: readonly number[]) => OrtTensorLike;

let native: { InferenceSession: new () => NativeSession } | null = null;
let Tensor: TensorCtor | null = null;

function load(): void {
  if (native) return;
  try {
    const b = req('onnxruntime-node/dist/binding') as { binding: { InferenceSession: new () => NativeSession }; initOrt: () => void };
    b.initOrt();
    native = b.binding;
    Tensor = (req('onnxruntime-common') as { Tensor: TensorCtor }).Tensor;
  } catch (e) {
    throw new HalfstepError(`onnxruntime-node could not be loaded: ${(e as Error).message.split('\n')[0]}`);
  }
}

export function ortAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

export interface SessionOptions {
  threads?: number;
  /**
   * false: the session's worker threads block instead of spinning after a run. Every session has its
   * own thread pool, so with many small kernel sessions run one after another, spinning pools steal
   * the cores from the session that runs next (measured: 3.5× slower UNet steps on 2 cores).
   */
  spinning?: boolean;
}

export function defaultThreads(): number {
  const env = Number(process.env.HALFSTEP_ORT_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return 0; // onnxruntime's default: one per physical core
}

/** A synchronous ONNX session over a model given as bytes or a file path. */
export class SyncSession {
  private readonly s: NativeSession;

  constructor(model: Uint8Array | string, opts: SessionOptions = {}) {
    load();
    this.s = new native!.InferenceSession();
    const o = {
      intraOpNumThreads: opts.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      logSeverityLevel: 3,
      ...(opts.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
    };
    if (typeof model === 'string') this.s.loadModel(model, o);
    else this.s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, o);
  }

  /**
   * Run with float32 inputs. `outputs` maps each output name to a preallocated Float32Array (written
   * in place; its dims must be given) or null (a new array is returned).
   */
  run(
    inputs: Record<string, { data: Float32Array; dims: readonly number[] }>,
    outputs: Record<string, { data: Float32Array; dims: readonly number[] } | null>,
  ): Record<string, { data: Float32Array; dims: readonly number[] }> {
    const feeds: Record<string, OrtTensorLike> = {};
    for (const [k, v] of Object.entries(inputs)) feeds[k] = new Tensor!('float32', v.data, v.dims);
    const fetches: Record<string, OrtTensorLike | null> = {};
    for (const [k, v] of Object.entries(outputs)) fetches[k] = v ? new Tensor!('float32', v.data, v.dims) : null;
    const res = this.s.run(feeds, fetches, {});
    const out: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
    for (const k of Object.keys(outputs)) {
      const given = outputs[k];
      out[k] = given ?? { data: res[k]!.data, dims: res[k]!.dims };
    }
    return out;
  }
}
