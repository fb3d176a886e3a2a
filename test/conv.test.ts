import { beforeAll, describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { Rng } from '../src/rng.js';
import { ParamSet } from '../src/model/params.js';
import { groupNormAct } from '../src/model/unet-layers.js';
import { fusedGroupNormAvailable } from '../src/kernels/groupnorm.js';
import { relErr, stockCpuBackend } from './helpers.js';
import { isHalfstepKernel } from '../src/kernels/registry.js';

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
  { name: '3×3 stride 1 same, Co < Ci (im2col of dy)', x: [2, 6, 5, 6], w: [3, 3, 6, 2], strides: 1, pad: 'same' },
  { name: '3×3 stride 1 valid, Co < Ci (im2col of dy)', x: [2, 7, 6, 5], w: [3, 3, 5, 3], strides: 1, pad: 'valid' },
  { name: '3×3 explicit pads, Co < Ci (im2col of dy)', x: [1, 6, 7, 4], w: [3, 3, 4, 1], strides: 1, pad: [[0, 0], [0, 2], [1, 0], [0, 0]] },
  { name: '3×3 dilation 2 (values only)', x: [2, 9, 9, 2], w: [3, 3, 2, 3], strides: 1, pad: 'same', dilations: 2, noGrad: true },
];

interface Data {
  x: Float32Array;
  w: Float32Array;
  r: Float32Array;
  b: Float32Array;
}
interface Result {
  y: Float32Array;
  dx?: Float32Array;
  dw?: Float32Array;
  db?: Float32Array;
}

const rng = new Rng(31);
const data: Data[] = cases.map((c) => {
  const ySize = outShape(c).reduce((a, b) => a * b, 1);
  return { x: rng.normals(size(c.x)), w: rng.normals(size(c.w)), r: rng.normals(ySize), b: rng.normals(c.w[3]) };
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

/** The same through tf.fused.conv2d with a bias (FusedConv2D); `activation` other than linear goes to the stock kernel. */
function computeFused(c: Case, d: Data, activation: 'linear' | 'relu' = 'linear'): Result {
  return tf.tidy(() => {
    const x = tf.tensor4d(d.x, c.x);
    const w = tf.tensor4d(d.w, c.w);
    const b = tf.tensor1d(d.b);
    const r = tf.tensor(d.r, outShape(c));
    const f = (a: tf.Tensor, k: tf.Tensor, bias: tf.Tensor) =>
      tf.fused.conv2d({ x: a as tf.Tensor4D, filter: k as tf.Tensor4D, strides: c.strides, pad: c.pad, dilations: c.dilations ?? 1, bias, activation });
    const y = f(x, w, b).dataSync() as Float32Array;
    if (c.noGrad || activation !== 'linear') return { y };
    const [dx, dw, db] = tf.grads((a: tf.Tensor, k: tf.Tensor, bias: tf.Tensor) => tf.sum(tf.mul(f(a, k, bias), r)))([x, w, b]);
    return { y, dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array, db: db!.dataSync() as Float32Array };
  });
}

const isOurs = isHalfstepKernel;
const KERNELS = ['Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'];

let reference: Result[];
let gnReference: () => void = () => {};
let sumReference: () => void = () => {};
let concatReference: () => void = () => {};
let fusedReference: Result[];
let reluReference: Result;

beforeAll(async () => {
  // The reference: the stock tfjs cpu kernels (plain JS loops), before anything replaces them.
  await stockCpuBackend();
  for (const k of KERNELS) expect(isOurs(k, 'cpu'), k).toBe(false);
  reference = cases.map((c, i) => compute(c, data[i]!));
  fusedReference = cases.map((c, i) => computeFused(c, data[i]!));
  reluReference = computeFused(cases[1]!, data[1]!, 'relu');
  gnReference();
  sumReference();
  concatReference();
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

  test.each(cases.map((c, i) => [c.name, i] as const))('%s, fused with a bias: values and gradients (bias included) agree to 1e-4', (_, i) => {
    const c = cases[i]!;
    const ours = computeFused(c, data[i]!);
    const ref = fusedReference[i]!;
    expect(relErr(ours.y, ref.y), 'y').toBeLessThan(1e-4);
    if (c.noGrad) return;
    expect(relErr(ours.dx!, ref.dx!), 'dx').toBeLessThan(1e-4);
    expect(relErr(ours.dw!, ref.dw!), 'dw').toBeLessThan(1e-4);
    expect(relErr(ours.db!, ref.db!), 'db').toBeLessThan(1e-4);
  });

  test('a fused conv with relu goes to the stock FusedConv2D and still agrees', () => {
    expect(relErr(computeFused(cases[1]!, data[1]!, 'relu').y, reluReference.y)).toBeLessThan(1e-4);
  });

  test('one cached graph serves several batch sizes', () => {
    const c = cases[1]!;
    for (const n of [1, 5]) {
      const cn: Case = { ...c, x: [n, c.x[1], c.x[2], c.x[3]] };
      const d: Data = { x: rng.normals(size(cn.x)), w: data[1]!.w, r: rng.normals(size(outShape(cn))), b: data[1]!.b };
      const ours = compute(cn, d);
      // per-example check against batch-1 runs of the same example
      const last = n - 1;
      const one: Case = { ...c, x: [1, c.x[1], c.x[2], c.x[3]] };
      const per = size(one.x);
      const perY = size(outShape(one));
      const single = compute(one, { x: d.x.slice(last * per, (last + 1) * per), w: d.w, r: d.r.slice(last * perY, (last + 1) * perY), b: d.b });
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

describe('GroupNorm (+ SiLU) as one op with the onnxruntime kernels HalfstepGroupNorm / HalfstepGroupNormGrad', () => {
  const gnCases: { shape: [number, number, number, number]; groups: number; act: boolean; offset: number }[] = [
    { shape: [2, 5, 7, 6], groups: 3, act: true, offset: 0 },
    { shape: [3, 4, 4, 8], groups: 8, act: false, offset: 0 },
    { shape: [1, 6, 6, 4], groups: 1, act: true, offset: 0 },
    { shape: [2, 3, 5, 12], groups: 4, act: true, offset: 5 },
  ];
  const gnRng = new Rng(5);
  const gnData = gnCases.map((c) => ({
    x: rngShifted(gnRng.normals(size(c.shape)), c.offset),
    g: gnRng.normals(c.shape[3]).map((v) => 1 + 0.3 * v),
    b: gnRng.normals(c.shape[3]),
    r: gnRng.normals(size(c.shape)),
  }));
  function rngShifted(a: Float32Array, o: number): Float32Array {
    return a.map((v) => v * 2 + o);
  }
  /** y = GN(x) (then SiLU), and the gradients of Σ y ⊙ r with respect to x, γ and β. */
  function run(i: number): Float32Array[] {
    const c = gnCases[i]!;
    const d = gnData[i]!;
    const ps = new ParamSet();
    ps.add('n.g', tf.tensor1d(d.g));
    ps.add('n.b', tf.tensor1d(d.b));
    const out = tf.tidy(() => {
      const x = tf.tensor4d(d.x, c.shape);
      const r = tf.tensor4d(d.r, c.shape);
      const y = groupNormAct(ps, 'n', x, c.groups, c.act);
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(groupNormAct(ps, 'n', x, c.groups, c.act), r)) as tf.Scalar, [ps.get('n.g'), ps.get('n.b')]);
      value.dispose();
      const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(groupNormAct(ps, 'n', a, c.groups, c.act), r)))(x);
      return [y, dx, grads[ps.get('n.g').name]!, grads[ps.get('n.b').name]!].map((t) => t.dataSync() as Float32Array);
    });
    ps.dispose();
    return out;
  }
  // the reference: the plain composition of tfjs ops (tf.moments, sigmoid) with tfjs's own gradients,
  // on the stock cpu backend, computed in the first beforeAll of this file (before any kernel is registered)
  let ref: Float32Array[][];
  gnReference = () => {
    expect(fusedGroupNormAvailable()).toBe(false);
    ref = gnCases.map((_, i) => run(i));
  };
  for (const backend of ['wasm', 'cpu'] as const) {
    test(`${backend}: values and gradients (x, γ, β) agree with the composed ops to 1e-4`, async () => {
      await initBackend(backend);
      expect(fusedGroupNormAvailable()).toBe(true);
      gnCases.forEach((c, i) => {
        const ours = run(i);
        ['y', 'dx', 'dγ', 'dβ'].forEach((what, k) => expect(relErr(ours[k]!, ref[i]![k]!), `${JSON.stringify(c)} ${what}`).toBeLessThan(1e-4));
      });
    });
  }
});

test('wasm: Identity (every tensor a gradient saves) shares memory instead of copying it', async () => {
  await initBackend('wasm');
  expect(isOurs('Identity', 'wasm')).toBe(true);
  const x = tf.tensor1d([1, 2, 3]);
  const y = tf.clone(x);
  const heap = (t: tf.Tensor) => (tf.backend() as unknown as { typedArrayFromHeap(t: tf.TensorInfo): Float32Array }).typedArrayFromHeap(t).byteOffset;
  expect(heap(y)).toBe(heap(x));
  x.dispose();
  expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
  y.dispose();
  // gradients through saved (cloned) tensors are unchanged
  const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.sigmoid(a), a)))(tf.tensor1d([0.5, -1]));
  const s = (v: number) => 1 / (1 + Math.exp(-v));
  const expected = [0.5, -1].map((v) => s(v) + v * s(v) * (1 - s(v)));
  Array.from(g.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 5));
});

describe('Sum over a contiguous block of axes through onnxruntime', () => {
  const sumCases: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
    { shape: [4, 16, 16, 32], axis: [0, 1, 2], keepDims: false },
    { shape: [4, 16, 16, 32], axis: [1, 2], keepDims: true },
    { shape: [4, 16, 16, 32], axis: -1, keepDims: false },
    { shape: [20000], axis: 0, keepDims: false },
    { shape: [3, 7, 1000], axis: [2, 1], keepDims: false },
    { shape: [64, 2, 14, 2, 8], axis: [1, 3], keepDims: false }, // not contiguous: stock kernel
    { shape: [5, 6], axis: [0], keepDims: false }, // small: stock kernel
  ];
  const sumRng = new Rng(77);
  const sumData = sumCases.map((c) => sumRng.normals(c.shape.reduce((a, b) => a * b, 1)));
  const run = () =>
    sumCases.map((c, i) =>
      tf.tidy(() => {
        const x = tf.tensor(sumData[i]!, c.shape);
        const y = tf.sum(x, c.axis, c.keepDims);
        return { shape: y.shape, values: y.dataSync() as Float32Array };
      }),
    );
  let ref: { shape: number[]; values: Float32Array }[];
  sumReference = () => {
    expect(isOurs('Sum', 'cpu')).toBe(false);
    ref = run();
  };
  for (const backend of ['wasm', 'cpu'] as const) {
    test(`${backend}: values and shapes agree with the stock cpu Sum to 1e-5`, async () => {
      await initBackend(backend);
      expect(isOurs('Sum', backend)).toBe(true);
      run().forEach((o, i) => {
        expect(o.shape, JSON.stringify(sumCases[i])).toEqual(ref[i]!.shape);
        expect(relErr(o.values, ref[i]!.values), JSON.stringify(sumCases[i])).toBeLessThan(1e-5);
      });
      const ints = tf.sum(tf.tensor([1, 2, 3], [3], 'int32'));
      expect(ints.dtype).toBe('int32');
      expect(ints.dataSync()[0]).toBe(6);
    });
  }
});

describe('Concat and SplitV through onnxruntime', () => {
  const shapes: { parts: number[][]; axis: number }[] = [
    { parts: [[4, 12, 12, 32], [4, 12, 12, 16]], axis: 3 },
    { parts: [[4, 12, 12, 8], [4, 12, 12, 8], [4, 12, 12, 24]], axis: -1 },
    { parts: [[2, 30, 300], [2, 10, 300]], axis: 1 },
    { parts: [[20000], [5000]], axis: 0 },
    { parts: [[3, 4], [3, 2]], axis: 1 }, // small: stock kernels
  ];
  const cRng = new Rng(78);
  const cData = shapes.map((c) => c.parts.map((s) => cRng.normals(s.reduce((a, b) => a * b, 1))));
  /** concat of the parts, its gradient under a random weighting (a SplitV), and a direct split of the concatenation. */
  const run = () =>
    shapes.map((c, i) =>
      tf.tidy(() => {
        const xs = c.parts.map((s, k) => tf.tensor(cData[i]![k]!, s));
        const y = tf.concat(xs, c.axis);
        const r = tf.tensor(Float32Array.from({ length: y.size }, (_, k) => Math.sin(k)), y.shape);
        const gs = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(tf.concat(a, c.axis), r)))(xs);
        const parts = tf.split(y, c.parts.map((s) => s.at(c.axis)!), c.axis);
        return [y, ...gs, ...parts].map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
      }),
    );
  let ref: ReturnType<typeof run>;
  concatReference = () => {
    expect(isOurs('Concat', 'cpu')).toBe(false);
    ref = run();
  };
  for (const backend of ['wasm', 'cpu'] as const) {
    test(`${backend}: concatenation, its gradient and splits equal the stock cpu kernels exactly`, async () => {
      await initBackend(backend);
      expect(isOurs('Concat', backend)).toBe(true);
      expect(isOurs('SplitV', backend)).toBe(true);
      run().forEach((o, i) =>
        o.forEach((t, k) => {
          expect(t.shape, `${JSON.stringify(shapes[i])} #${k}`).toEqual(ref[i]![k]!.shape);
          expect(Array.from(t.values), `${JSON.stringify(shapes[i])} #${k}`).toEqual(Array.from(ref[i]![k]!.values));
        }),
      );
    });
  }
});
