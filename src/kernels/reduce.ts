/**
 * Sum over a contiguous block of axes through onnxruntime (wasm and cpu backends). tfjs-wasm reduces
 * only over the innermost axes, so for the sums a conv network's backward pass is full of (bias and
 * per-channel gradients: [B, H, W, C] over [0, 1, 2]; the log-SNR projection's over [1, 2]) it first
 * transposes the whole tensor; that was ~8% of a UNet step. Viewed as [outer, reduced, inner], any such
 * sum is one ReduceSum over axis 1, which onnxruntime runs without a transpose on its threads. One
 * session with symbolic dimensions serves every shape. Small tensors, other dtypes and non-contiguous
 * axes go to the stock kernel.
 */
import { tf } from '../tf.js';
import { replaceKernel } from './registry.js';
import { encodeModel, int64Tensor, node, valueInfo } from '../onnx/proto.js';
import { SyncSession } from '../onnx/runtime.js';
import { allocOutput, viewOf, type HostBackend } from './memory.js';

/** Below this many elements the stock kernel is as fast as a call into onnxruntime. */
const MIN_SIZE = 16384;

let session: SyncSession | null = null;
function reduceSession(): SyncSession {
  session ??= new SyncSession(
    encodeModel({
      name: 'sum_axis1',
      nodes: [node('ReduceSum', ['x', 'axes'], ['y'], { keepdims: 0 })],
      initializers: [int64Tensor('axes', [1], [1])],
      inputs: [valueInfo('x', ['a', 'r', 'i'])],
      outputs: [valueInfo('y', ['a', 'i'])],
    }),
    { spinning: false },
  );
  return session;
}

/** [outer, reduced, inner] if `axes` (sorted, unique) are one contiguous block of `shape`, else null. */
export function contiguousBlock(shape: number[], axes: number[]): [number, number, number] | null {
  if (axes.length === 0) return null;
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1]! + 1) return null;
  const prod = (a: number[]) => a.reduce((x, y) => x * y, 1);
  return [prod(shape.slice(0, axes[0])), prod(shape.slice(axes[0], axes[axes.length - 1]! + 1)), prod(shape.slice(axes[axes.length - 1]! + 1))];
}

export function registerOrtSum(kind: HostBackend): void {
  replaceKernel(kind, 'Sum', (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const size = x.shape.reduce((a, b) => a * b, 1);
    if (x.dtype !== 'float32' || size < MIN_SIZE) return null;
    const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b);
    const block = contiguousBlock(x.shape, axes);
    // innermost-axis sums need no transpose in the stock kernel
    if (!block || block[1] === 1 || block[2] === 1) return null;
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = allocOutput(kind, args.backend, outShape);
    const xv = viewOf(kind, args.backend, x);
    const yv = kind === 'wasm' ? viewOf(kind, args.backend, out.info) : out.view;
    reduceSession().run({ x: { data: xv, dims: block } }, { y: { data: yv, dims: [block[0], block[2]] } });
    return out.info;
  });
}
