// halfstep's WGSL kernels against the stock tfjs cpu backend: the split-K Conv2DBackpropFilter and the
// in-place clip + Adam + EMA. Runs wherever Dawn finds an adapter (a GPU, or Mesa's lavapipe on a CPU);
// skipped with a message elsewhere.
import { beforeAll, describe, expect, test } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { Rng } from '../src/rng.js';
import { splitK } from '../src/kernels/webgpu/conv-filter.js';
import { adamStepWgsl } from '../src/kernels/webgpu/optim.js';
import { isHalfstepKernel } from '../src/kernels/registry.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
let reason = '';
try {
  await initBackend('webgpu');
} catch (e) {
  reason = (e as Error).message;
  console.warn(`webgpu kernel tests skipped: ${reason}`);
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-30);
}

async function on<T>(backend: string, f: () => T): Promise<T> {
  await tf.setBackend(backend);
  return f();
}

describe.skipIf(reason !== '')('WGSL kernels on webgpu', () => {
  beforeAll(async () => {
    await tf.setBackend('webgpu');
  });

  test('the filter gradient is halfstep\'s kernel on webgpu', () => {
    expect(isHalfstepKernel('Conv2DBackpropFilter', 'webgpu')).toBe(true);
  });

  const cases: [string, number[], number[], number | [number, number], 'same' | 'valid'][] = [
    ['3×3 same', [2, 6, 6, 4], [3, 3, 4, 5], 1, 'same'],
    ['3×3 stride 2 same, odd size', [3, 7, 5, 3], [3, 3, 3, 8], 2, 'same'],
    ['valid 2×2', [2, 5, 6, 2], [2, 2, 2, 3], 1, 'valid'],
    ['1×1, one input channel', [4, 4, 4, 1], [1, 1, 1, 6], 1, 'same'],
    ['3×3 to one output channel, many rows (several slices)', [16, 9, 9, 3], [3, 3, 3, 1], 1, 'same'],
    ['wide: K and co over one 64-tile', [2, 6, 6, 20], [3, 3, 20, 70], 1, 'same'],
  ];
  for (const [name, xs, fs, strides, pad] of cases) {
    test(`Conv2DBackpropFilter: ${name}`, async () => {
      const rng = new Rng(xs.reduce((a, b) => a * 31 + b, 7));
      const xv = Float32Array.from(rng.normals(xs.reduce((a, b) => a * b, 1)));
      const run = () =>
        tf.tidy(() => {
          const x = tf.tensor4d(xv, xs as [number, number, number, number]);
          const f = tf.tensor4d(Float32Array.from({ length: fs.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i)), fs as [number, number, number, number]);
          const y = tf.conv2d(x, f, strides, pad);
          const r = tf.tensor(Float32Array.from({ length: y.size }, (_, i) => Math.cos(0.7 * i)), y.shape);
          return tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, w as tf.Tensor4D, strides, pad), r)))(f);
        });
      const want = await (await on('cpu', run)).data();
      const got = await (await on('webgpu', run)).data();
      expect(got.length).toBe(want.length);
      expect(relErr(got as Float32Array, want as Float32Array)).toBeLessThan(1e-4);
    });
  }

  test('split-K picks several slices for long reductions and covers every row', () => {
    const g = { n: 128, h: 28, w: 28, ci: 32, oh: 28, ow: 28, co: 32, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, padTop: 1, padLeft: 1 };
    const { slices, chunk } = splitK(g);
    expect(slices).toBeGreaterThan(100);
    expect(chunk % 16).toBe(0);
    expect(slices * chunk).toBeGreaterThanOrEqual(128 * 28 * 28);
    expect((slices - 1) * chunk).toBeLessThan(128 * 28 * 28);
  });

  test('clip + Adam + EMA in place equal the tfjs-op formulas, with clipping active and shared buffers', async () => {
    const shapes = [[3, 4], [5], [2, 3, 3, 2], [300], [7], [1], [4, 4], [2, 2], [600]]; // 9: two Σg² dispatches
    const rng = new Rng(3);
    const init = shapes.map((s) => Float32Array.from(rng.normals(s.reduce((a, b) => a * b, 1))));
    const gradsAt = (t: number) => shapes.map((s, i) => Float32Array.from({ length: init[i]!.length }, (_, j) => Math.sin(1 + t * 3.1 + i * 7 + j)));
    const cfg = { beta1: 0.9, beta2: 0.99, eps: 1e-8 };
    const maxNorm = 1.5; // the gradients' norm is ~9: clipping is active

    // Reference: the same formulas in float64 on the host.
    const p = init.map((a) => Float64Array.from(a));
    const e = init.map((a) => Float64Array.from(a));
    const m = init.map((a) => new Float64Array(a.length));
    const v = init.map((a) => new Float64Array(a.length));
    for (let t = 1; t <= 3; t++) {
      const g = gradsAt(t);
      const norm = Math.sqrt(g.reduce((s, a) => s + a.reduce((q, x) => q + x * x, 0), 0));
      const s = maxNorm / Math.max(norm, maxNorm);
      const lr = 0.01 * t;
      p.forEach((pi, i) => {
        for (let j = 0; j < pi.length; j++) {
          const gj = g[i]![j]! * s;
          m[i]![j] = cfg.beta1 * m[i]![j]! + (1 - cfg.beta1) * gj;
          v[i]![j] = cfg.beta2 * v[i]![j]! + (1 - cfg.beta2) * gj * gj;
          pi[j] = pi[j]! - ((lr / (1 - cfg.beta1 ** t)) * m[i]![j]!) / (Math.sqrt(v[i]![j]! / (1 - cfg.beta2 ** t)) + cfg.eps);
          e[i]![j] = 0.8 * e[i]![j]! + 0.2 * pi[j]!;
        }
      });
    }

    await tf.setBackend('webgpu');
    const pv = init.map((a, i) => tf.variable(tf.tensor(a, shapes[i]!)));
    const ev = pv.map((x) => tf.variable(tf.clone(x))); // shares the parameter's buffer until written
    const mv = pv.map((x) => tf.variable(tf.zerosLike(x)));
    const vv = pv.map((x) => tf.variable(tf.zerosLike(x)));
    let norm = 0;
    for (let t = 1; t <= 3; t++) {
      // Reading a tensor makes tfjs-webgpu keep a CPU copy of it; the in-place kernels must drop it,
      // or later reads (a checkpoint) would return the old values.
      for (const x of [...pv, ...ev, ...mv, ...vv]) await x.data();
      const g = gradsAt(t).map((a, i) => tf.tensor(a, shapes[i]!));
      // odd steps: the EMA fused into Adam's pass; even steps: Adam alone (as for a student), EMA as tfjs ops
      const fused = t % 2 === 1;
      const scale = adamStepWgsl(pv, mv, vv, g, { lr: 0.01 * t, ...cfg, t, maxNorm }, fused ? { vars: ev, decay: 0.8 } : undefined);
      norm = (await scale.data())[1]!;
      scale.dispose();
      if (!fused) ev.forEach((x, i) => x.assign(tf.tidy(() => tf.add(tf.mul(x, 0.8), tf.mul(pv[i]!, 0.2)))));
      tf.dispose(g);
    }
    const g3 = gradsAt(3);
    expect(norm).toBeCloseTo(Math.sqrt(g3.reduce((s, a) => s + a.reduce((q, x) => q + x * x, 0), 0)), 4);
    for (let i = 0; i < shapes.length; i++) {
      expect(relErr((await pv[i]!.data()) as Float32Array, Float32Array.from(p[i]!))).toBeLessThan(1e-5);
      expect(relErr((await ev[i]!.data()) as Float32Array, Float32Array.from(e[i]!))).toBeLessThan(1e-5);
      expect(relErr((await mv[i]!.data()) as Float32Array, Float32Array.from(m[i]!))).toBeLessThan(1e-5);
      expect(relErr((await vv[i]!.data()) as Float32Array, Float32Array.from(v[i]!))).toBeLessThan(1e-5);
    }
    tf.dispose([...pv, ...ev, ...mv, ...vv]);
  });

  test('values made on the host reach the GPU through writeBuffer, without staging buffers, in order', async () => {
    const b = tf.backend() as unknown as { device: { createBuffer: (d: { usage: number }) => unknown } };
    const device = b.device;
    const create = device.createBuffer;
    const MAP_WRITE = (globalThis as unknown as { GPUBufferUsage: { MAP_WRITE: number } }).GPUBufferUsage.MAP_WRITE;
    let staging = 0;
    device.createBuffer = (d: { usage: number }) => {
      if (d.usage & MAP_WRITE) staging++;
      return create.call(device, d);
    };
    try {
      // above WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD, so the adds run on the GPU
      const n = 2048;
      const base = tf.sqrt(tf.square(tf.range(0, n)));
      const results: tf.Tensor[] = [];
      for (let i = 0; i < 25; i++) {
        // float32 from values, added on the GPU; the value tensor is freed while the add is still queued
        const v = tf.tensor1d(Float32Array.from({ length: n }, (_, k) => i * (k + 1)));
        results.push(tf.add(base, v));
        v.dispose();
      }
      const ints = tf.tensor1d(Int32Array.from({ length: n }, (_, k) => k - 5), 'int32');
      const mask = tf.tensor1d(Uint8Array.from({ length: n }, (_, k) => k % 2), 'bool');
      const picked = tf.where(mask, tf.cast(ints, 'float32'), tf.fill([n], 9));
      for (let i = 0; i < 25; i++) {
        const r = await results[i]!.data();
        expect(r.every((x, k) => x === k + i * (k + 1))).toBe(true);
      }
      expect((await picked.data()).every((x, k) => x === (k % 2 ? k - 5 : 9))).toBe(true);
      expect(staging).toBe(0); // tfjs-webgpu's own upload: a staging buffer per tensor whose pooled buffer is not mapped
      tf.dispose([base, ...results, ints, mask, picked]);
    } finally {
      device.createBuffer = create;
    }
  });
});
