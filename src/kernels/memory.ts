/**
 * Direct access to the float32 memory behind a tfjs tensor on the cpu and wasm backends, so that a
 * kernel can hand it to onnxruntime without copying, and allocate outputs the backend owns.
 */
import { tf } from '../tf.js';

type Info = tf.TensorInfo;

interface WasmLike {
  makeOutput(shape: number[], dtype: tf.DataType): Info;
  typedArrayFromHeap(t: Info): Float32Array;
}
interface CpuLike {
  data: { get(id: unknown): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): Info;
}

export type HostBackend = 'cpu' | 'wasm';

/** Allocate an output tensor on the backend; returns it with a writable view of its memory. */
export function allocOutput(kind: HostBackend, backend: unknown, shape: number[]): { info: Info; view: Float32Array } {
  switch (kind) {
    case 'wasm': {
      const b = backend as WasmLike;
      const info = b.makeOutput(shape, 'float32');
      return { info, view: b.typedArrayFromHeap(info) };
    }
    case 'cpu': {
      const size = shape.reduce((a, c) => a * c, 1);
      const values = new Float32Array(size);
      const b = backend as CpuLike;
      return { info: b.makeTensorInfo(shape, 'float32', values), view: values };
    }
  }
}

/** A view of an input tensor's values (valid until the backend next allocates, on wasm). */
export function viewOf(kind: HostBackend, backend: unknown, t: Info): Float32Array {
  switch (kind) {
    case 'wasm':
      return (backend as WasmLike).typedArrayFromHeap(t);
    case 'cpu':
      return (backend as CpuLike).data.get(t.dataId).values;
  }
}

/** The active backend if it is a host backend (cpu or wasm) whose memory halfstep can address, else null. */
export function hostBackend(): { kind: HostBackend; backend: unknown } | null {
  const name = tf.getBackend();
  return name === 'cpu' || name === 'wasm' ? { kind: name, backend: tf.backend() } : null;
}

/**
 * A writable view of a variable's memory. If its data is shared with another tensor (a clone shares
 * memory on the cpu backend), the variable first gets a private copy, so in-place writes touch it alone.
 */
export function ownedView(host: { kind: HostBackend; backend: unknown }, v: tf.Variable): Float32Array {
  const b = host.backend as { refCount(id: unknown): number };
  if (b.refCount(v.dataId) > 1) {
    const copy = tf.tidy(() => tf.add(v, tf.scalar(0)));
    v.assign(copy);
    copy.dispose();
  }
  return viewOf(host.kind, host.backend, v);
}
