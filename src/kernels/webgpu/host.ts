/**
 * A host-side cost of tfjs-backend-webgpu on Dawn (node), found with a CPU profile of the UNet training
 * step on an H100 (docs/performance.md), and a cut that changes no result.
 *
 * tfjs-webgpu copies a tensor made from JS values (scalars of `mul(x, 0.5)`, the ones that tfjs's
 * Mean/Sum gradients build, …) through a new mapped staging buffer, created for each upload and never
 * reused, and ends the compute pass to record the copy. Here the values go through
 * `queue.writeBuffer` into a buffer from the backend's pool instead. The pool only hands out buffers
 * that no unsubmitted command uses (a buffer a queued command uses returns to the pool only when the
 * queue is submitted), so writing it at once on the queue timeline is ordered correctly.
 *
 * Installed with halfstep's WGSL kernels; HALFSTEP_WEBGPU_HOST=0 leaves tfjs-webgpu as it is (for A/B runs).
 */
import { tf } from '../../tf.js';

interface TensorData {
  values: ArrayLike<number> | null;
  dtype: tf.DataType;
  shape: number[];
  resource: unknown;
}

interface Internals {
  tensorMap: { get(id: object): TensorData };
  uploadToGPU(id: object): void;
  bufferManager: { acquireBuffer(size: number, usage: number): unknown };
  queue: { writeBuffer(buffer: unknown, offset: number, data: ArrayBufferView): void };
}

const installed = new WeakSet<object>();

export function hostCutsWanted(): boolean {
  return process.env.HALFSTEP_WEBGPU_HOST !== '0';
}

/** Values → the 32-bit array tfjs-webgpu keeps on the GPU for that dtype (bool as int32), or null for dtypes left to tfjs. */
function gpuWords(d: TensorData): Float32Array | Int32Array | null {
  const v = d.values!;
  if (d.dtype === 'float32') return v instanceof Float32Array ? v : Float32Array.from(v);
  if (d.dtype === 'int32' || d.dtype === 'bool') return v instanceof Int32Array ? v : Int32Array.from(v);
  return null;
}

/** Makes the active webgpu backend upload through queue.writeBuffer (once per backend instance). */
export function installWriteBufferUploads(): void {
  const b = tf.backend() as unknown as Internals;
  if (installed.has(b)) return;
  installed.add(b);
  const upload = b.uploadToGPU.bind(b);
  const g = globalThis as unknown as { GPUBufferUsage: { STORAGE: number; COPY_SRC: number; COPY_DST: number } };
  const usage = g.GPUBufferUsage.STORAGE | g.GPUBufferUsage.COPY_SRC | g.GPUBufferUsage.COPY_DST;
  b.uploadToGPU = (id: object): void => {
    const d = b.tensorMap.get(id);
    const words = d.resource == null && d.values != null && d.values.length > 0 ? gpuWords(d) : null;
    if (!words) return upload(id);
    const buffer = b.bufferManager.acquireBuffer(words.byteLength, usage);
    b.queue.writeBuffer(buffer, 0, words);
    d.values = null;
    d.resource = buffer;
  };
}

