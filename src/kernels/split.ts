/**
 * Concat and SplitV along any axis through onnxruntime (wasm and cpu backends). A UNet concatenates
 * each up-path input with its skip on the channel axis of NHWC tensors, and the gradient of that
 * concat is a SplitV; stock tfjs-wasm runs that split as strided slices at ~0.2 GB/s (58 ms for one
 * [64, 28, 28, 64] split, 4% of a step). Viewed as [outer, channels, inner] both are one ONNX node.
 * Sessions are keyed by the part sizes (outer and inner dimensions are symbolic). Small tensors and
 * other dtypes go to the stock kernels.
 */
import { tf } from '../tf.js';
import { replaceKernel } from './registry.js';
import { encodeModel, int64Tensor, node, valueInfo } from '../onnx/proto.js';
import { SyncSession } from '../onnx/runtime.js';
import { allocOutput, viewOf, type HostBackend } from './memory.js';

const MIN_SIZE = 16384;
const sessions = new Map<string, SyncSession>();

function session(op: 'Concat' | 'Split', sizes: number[]): SyncSession {
  const key = `${op} ${sizes.join(',')}`;
  let s = sessions.get(key);
  if (!s) {
    const parts = sizes.map((c, i) => valueInfo(`p${i}`, ['a', c, 'i']));
    const whole = valueInfo('x', ['a', sizes.reduce((x, y) => x + y, 0), 'i']);
    const names = sizes.map((_, i) => `p${i}`);
    const bytes =
      op === 'Concat'
        ? encodeModel({ name: 'concat_axis1', nodes: [node('Concat', names, ['x'], { axis: 1 })], inputs: parts, outputs: [whole] })
        : encodeModel({ name: 'split_axis1', nodes: [node('Split', ['x', 'sizes'], names, { axis: 1 })], initializers: [int64Tensor('sizes', [sizes.length], sizes)], inputs: [whole], outputs: parts });
    s = new SyncSession(bytes, { spinning: false });
    sessions.set(key, s);
  }
  return s;
}

/** [outer, inner] around `axis` of `shape`. */
function around(shape: number[], axis: number): [number, number] {
  const prod = (a: number[]) => a.reduce((x, y) => x * y, 1);
  return [prod(shape.slice(0, axis)), prod(shape.slice(axis + 1))];
}


export function registerOrtConcat(kind: HostBackend): void {
  replaceKernel(kind, 'Concat', ({ inputs, attrs, backend }) => {
    const xs = Object.values(inputs) as tf.TensorInfo[];
    if (xs.length < 2 || xs.some((t) => t.dtype !== 'float32' || t.shape.length !== xs[0]!.shape.length)) return null;
    const axis = tf.util.parseAxisParam((attrs as unknown as { axis: number }).axis, xs[0]!.shape)[0]!;
    const sizes = xs.map((t) => t.shape[axis]!);
    const outShape = xs[0]!.shape.map((d, i) => (i === axis ? sizes.reduce((a, b) => a + b, 0) : d));
    if (outShape.reduce((a, b) => a * b, 1) < MIN_SIZE || sizes.some((c) => c === 0)) return null;
    const [outer, inner] = around(outShape, axis);
    if (xs.some((t) => t.shape.some((d, i) => i !== axis && d !== outShape[i]))) return null;
    const out = allocOutput(kind, backend, outShape);
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = {};
    xs.forEach((t, i) => (feeds[`p${i}`] = { data: viewOf(kind, backend, t), dims: [outer, sizes[i]!, inner] }));
    const view = kind === 'wasm' ? viewOf(kind, backend, out.info) : out.view;
    session('Concat', sizes).run(feeds, { x: { data: view, dims: [outer, outShape[axis]!, inner] } });
    return out.info;
  });
}

export function registerOrtSplitV(kind: HostBackend): void {
  replaceKernel(kind, 'SplitV', ({ inputs, attrs, backend }) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const a = attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    if (x.dtype !== 'float32' || x.shape.reduce((p, d) => p * d, 1) < MIN_SIZE) return null;
    const axis = tf.util.parseAxisParam(a.axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, a.numOrSizeSplits, axis);
    if (sizes.length < 2 || sizes.some((c) => c === 0)) return null;
    const [outer, inner] = around(x.shape, axis);
    const outs = sizes.map((c) => allocOutput(kind, backend, x.shape.map((d, i) => (i === axis ? c : d))).info);
    const fetches: Record<string, { data: Float32Array; dims: number[] }> = {};
    outs.forEach((o, i) => (fetches[`p${i}`] = { data: viewOf(kind, backend, o), dims: [outer, sizes[i]!, inner] }));
    session('Split', sizes).run({ x: { data: viewOf(kind, backend, x), dims: [outer, x.shape[axis]!, inner] } }, fetches);
    return outs;
  });
}
