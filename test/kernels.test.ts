import { describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { registerOrtMatMul } from '../src/kernels/matmul.js';
import { Rng } from '../src/rng.js';
import { relErr } from './helpers.js';
import { isHalfstepKernel } from '../src/kernels/registry.js';

describe('MatMul through onnxruntime agrees with a plain reference', () => {
  const rng = new Rng(9);
  const cases: [number[], number[], boolean, boolean][] = [
    [[7, 5], [5, 3], false, false],
    [[5, 7], [5, 3], true, false],
    [[7, 5], [3, 5], false, true],
    [[5, 7], [3, 5], true, true],
    [[64, 33], [33, 129], false, false],
    [[2, 6, 4], [2, 4, 3], false, false],
    [[2, 4, 6], [2, 3, 4], true, true],
  ];
  for (const backend of ['wasm', 'cpu'] as const) {
    test(`${backend}: all transpose cases and shapes, gradients included`, async () => {
      await initBackend(backend);
      const inputs = cases.map(([sa, sb]) => [tf.tensor(rng.normals(sa.reduce((x, y) => x * y)), sa), tf.tensor(rng.normals(sb.reduce((x, y) => x * y)), sb)] as const);
      const f = (a: tf.Tensor, b: tf.Tensor, ta: boolean, tb: boolean) => tf.matMul(a, b, ta, tb);
      const run = () =>
        inputs.map(([a, b], i) => {
          const [, , ta, tb] = cases[i]!;
          const y = f(a, b, ta, tb).dataSync();
          const g = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(f(x, w, ta, tb), f(x, w, ta, tb))))([a, b]);
          return [Array.from(y), Array.from(g[0]!.dataSync()), Array.from(g[1]!.dataSync())];
        });
      expect(isHalfstepKernel('BatchMatMul', backend)).toBe(true);
      const ours = run();
      const ref = inputs.map(([a, b], i) => {
        const [sa, sb, ta, tb] = cases[i]!;
        const A = ta ? tf.transpose(a, sa.length === 3 ? [0, 2, 1] : [1, 0]) : a;
        const B = tb ? tf.transpose(b, sb.length === 3 ? [0, 2, 1] : [1, 0]) : b;
        return Array.from(reference(A, B));
      });
      ours.forEach((o, i) => expect(relErr(o[0]!, ref[i]!), `case ${i}`).toBeLessThan(1e-5));
      // gradients of L = Σ(AB)²: dL/dA = 2·(AB)·Bᵀ and dL/dB = 2·Aᵀ·(AB), through the transposed cases
      const [a, b] = inputs[0]!;
      const y = tf.matMul(a, b);
      const gA = tf.matMul(tf.mul(2, y), b, false, true).dataSync();
      expect(relErr(ours[0]![1]!, gA)).toBeLessThan(1e-5);
      const gB = tf.matMul(a, tf.mul(2, y), true, false).dataSync();
      expect(relErr(ours[0]![2]!, gB)).toBeLessThan(1e-5);
    });
  }
});

/** Plain triple-loop matmul (batched over a leading axis with broadcasting of 1) as the reference. */
function reference(a: tf.Tensor, b: tf.Tensor): Float32Array {
  const A = a.dataSync();
  const B = b.dataSync();
  const r = a.rank;
  const [M, K] = [a.shape[r - 2]!, a.shape[r - 1]!];
  const N = b.shape[r - 1]!;
  const batch = r === 3 ? Math.max(a.shape[0]!, b.shape[0]!) : 1;
  const out = new Float32Array(batch * M * N);
  for (let t = 0; t < batch; t++) {
    const ao = r === 3 && a.shape[0] !== 1 ? t * M * K : 0;
    const bo = r === 3 && b.shape[0] !== 1 ? t * K * N : 0;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += A[ao + i * K + k]! * B[bo + k * N + j]!;
        out[t * M * N + i * N + j] = s;
      }
  }
  return out;
}

test('registering twice keeps one wrapper', async () => {
  await initBackend('wasm');
  registerOrtMatMul('wasm');
  registerOrtMatMul('wasm');
  expect(isHalfstepKernel('BatchMatMul', 'wasm')).toBe(true);
});
