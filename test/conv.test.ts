import { beforeAll, describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { Rng } from '../src/rng.js';

/** Max relative error max|a − b| / max|b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / s;
}

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
interface Case {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
  dilations?: number;
  /** tfjs has no conv gradients for dilations > 1: values only. */
  noGrad?: boolean;
}

const cases: Case[] = [
  { name: '3×3 stride 1 same, odd size', x: [2, 5, 5, 3], w: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '3×3 stride 2 same, odd size', x: [2, 7, 7, 4], w: [3, 3, 4, 6], strides: 2, pad: 'same' },
  { name: '3×3 stride 2 same, even size', x: [3, 8, 8, 2], w: [3, 3, 2, 5], strides: 2, pad: 'same' },
  { name: '3×3 stride 2 valid, unused last row', x: [2, 9, 8, 3], w: [3, 3, 3, 2], strides: 2, pad: 'valid' },
  { name: '1×1 stride 1 valid, not square', x: [1, 6, 9, 3], w: [1, 1, 3, 2], strides: 1, pad: 'valid' },
  { name: '1×1 stride 2 same', x: [2, 5, 6, 3], w: [1, 1, 3, 4], strides: 2, pad: 'same' },
  { name: '5×5 stride 1 same', x: [2, 6, 6, 2], w: [5, 5, 2, 3], strides: 1, pad: 'same' },
  { name: '3×3 strides [2, 1] same', x: [2, 6, 7, 3], w: [3, 3, 3, 4], strides: [2, 1], pad: 'same' },
  { name: '3×3 explicit asymmetric pads', x: [2, 8, 6, 3], w: [3, 3, 3, 2], strides: 1, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { name: '3×3 stride 2 numeric pad 1', x: [2, 7, 7, 3], w: [3, 3, 3, 2], strides: 2, pad: 1 },
  { name: 'UNet-like 3×3 32→16 stride 2', x: [4, 14, 14, 32], w: [3, 3, 32, 16], strides: 2, pad: 'same' },
  { name: '3×3 dilation 2 (values only)', x: [2, 9, 9, 2], w: [3, 3, 2, 3], strides: 1, pad: 'same', dilations: 2, noGrad: true },
];

interface Data {
  x: Float32Array;
  w: Float32Array;
  r: Float32Array;
}
interface Result {
  y: Float32Array;
  dx?: Float32Array;
  dw?: Float32Array;
}

const rng = new Rng(31);
const data: Data[] = cases.map((c) => {
  const ySize = outShape(c).reduce((a, b) => a * b, 1);
  return { x: rng.normals(size(c.x)), w: rng.normals(size(c.w)), r: rng.normals(ySize) };
});

function size(s: number[]): number {
  return s.reduce((a, b) => a * b, 1);
}
function outShape(c: Case): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.x, c.w, c.strides, c.dilations ?? 1, c.pad);
  return [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
}

/** y = conv(x, w), and the gradients of L = Σ y ⊙ r (dx is Conv2DBackpropInput of r, dw is Conv2DBackpropFilter of x and r). */
function compute(c: Case, d: Data): Result {
  return tf.tidy(() => {
    const x = tf.tensor4d(d.x, c.x);
    const w = tf.tensor4d(d.w, c.w);
    const r = tf.tensor(d.r, outShape(c));
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad, 'NHWC', c.dilations ?? 1);
    const y = f(x, w).dataSync() as Float32Array;
    if (c.noGrad) return { y };
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, w]);
    return { y, dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array };
  });
}

const isOurs = (name: string, backend: string) => (tf.getKernel(name, backend) as { halfstep?: boolean } | undefined)?.halfstep === true;
const KERNELS = ['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'];

let reference: Result[];

beforeAll(async () => {
  // The reference: the stock tfjs cpu kernels (plain JS loops), before anything replaces them.
  await import('@tensorflow/tfjs-backend-cpu');
  const { warn, log } = console;
  console.warn = console.log = () => {};
  await tf.setBackend('cpu');
  console.warn = warn;
  console.log = log;
  for (const k of KERNELS) expect(isOurs(k, 'cpu'), k).toBe(false);
  reference = cases.map((c, i) => compute(c, data[i]!));
});

describe.each(['wasm', 'cpu'] as const)('Conv2D and its gradients through onnxruntime on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  test('all three kernels are replaced', () => {
    for (const k of KERNELS) expect(isOurs(k, backend), k).toBe(true);
  });

  test.each(cases.map((c, i) => [c.name, i] as const))('%s: values and gradients agree with the stock cpu kernels to 1e-4', (_, i) => {
    const c = cases[i]!;
    const ours = compute(c, data[i]!);
    const ref = reference[i]!;
    expect(relErr(ours.y, ref.y), 'y').toBeLessThan(1e-4);
    if (c.noGrad) return;
    expect(relErr(ours.dx!, ref.dx!), 'dx').toBeLessThan(1e-4);
    expect(relErr(ours.dw!, ref.dw!), 'dw').toBeLessThan(1e-4);
  });

  test('one cached graph serves several batch sizes', () => {
    const c = cases[1]!;
    for (const n of [1, 5]) {
      const cn: Case = { ...c, x: [n, c.x[1], c.x[2], c.x[3]] };
      const d: Data = { x: rng.normals(size(cn.x)), w: data[1]!.w, r: rng.normals(size(outShape(cn))) };
      const ours = compute(cn, d);
      // per-example check against batch-1 runs of the same example
      const last = n - 1;
      const one: Case = { ...c, x: [1, c.x[1], c.x[2], c.x[3]] };
      const per = size(one.x);
      const perY = size(outShape(one));
      const single = compute(one, { x: d.x.slice(last * per, (last + 1) * per), w: d.w, r: d.r.slice(last * perY, (last + 1) * perY) });
      expect(relErr(ours.y.slice(last * perY), single.y)).toBeLessThan(1e-5);
      expect(relErr(ours.dx!.slice(last * per), single.dx!)).toBeLessThan(1e-5);
    }
  });

  test('a case the graphs do not take (ceil rounding) goes to the stock Conv2D', () => {
    const x = tf.tensor4d(data[0]!.x.slice(0, 2 * 6 * 6 * 1), [2, 6, 6, 1]);
    const w = tf.tensor4d(data[0]!.w.slice(0, 9), [3, 3, 1, 1]);
    const y = tf.conv2d(x, w, 2, 1, 'NHWC', 1, 'ceil');
    expect(y.shape).toEqual([2, 4, 4, 1]);
    // the stock kernel reads past the last row with zeros: the first output matches a direct sum
    const X = x.dataSync();
    const W = w.dataSync();
    let s = 0;
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) if (i >= 1 && j >= 1) s += X[(i - 1) * 6 + (j - 1)]! * W[i * 3 + j]!;
    expect(y.dataSync()[0]).toBeCloseTo(s, 4);
    tf.dispose([x, w, y]);
  });
});
