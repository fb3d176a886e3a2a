import { describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { Adam, clipByGlobalNorm, cloneParams, learningRate, updateEma } from '../src/optim.js';
import { ParamSet } from '../src/model/params.js';
import { Rng } from '../src/rng.js';

function params(seed: number): ParamSet {
  const rng = new Rng(seed);
  const ps = new ParamSet();
  ps.add('a', tf.tensor(rng.normals(12), [3, 4]));
  ps.add('b', tf.tensor(rng.normals(5), [5]));
  return ps;
}

function values(ps: ParamSet): number[] {
  return ps.list.flatMap((p) => Array.from(p.variable.dataSync()));
}

describe('learning-rate schedules', () => {
  test('warm-up then cosine, linear or constant, ending at 0', () => {
    expect(learningRate(1, 0, 100, 10, 'cosine')).toBeCloseTo(0.1);
    expect(learningRate(1, 9, 100, 10, 'cosine')).toBeCloseTo(1);
    expect(learningRate(1, 10, 100, 10, 'cosine')).toBeCloseTo(1);
    expect(learningRate(1, 55, 100, 10, 'cosine')).toBeCloseTo(0.5);
    expect(learningRate(1, 100, 100, 10, 'cosine')).toBeCloseTo(0);
    expect(learningRate(2, 50, 100, 0, 'linear')).toBeCloseTo(1);
    expect(learningRate(2, 50, 100, 0, 'none')).toBe(2);
  });
});

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`fused clip + Adam + EMA on ${backend}`, () => {
    test('matches the same update written as tfjs ops', async () => {
      await initBackend(backend);
      const fused = params(1);
      const plain = params(1);
      const cfg = { beta1: 0.9, beta2: 0.99, eps: 1e-8 };
      const A = new Adam(fused, cfg);
      const B = new Adam(plain, cfg);
      const rng = new Rng(2);
      for (let s = 0; s < 4; s++) {
        const g = fused.list.map((p) => tf.mul(tf.tensor(rng.normals(p.variable.size), p.variable.shape), 3));
        const norm = A.step(g, 0.01, 1);
        const c = clipByGlobalNorm(g, 1);
        expect(norm).toBeCloseTo(c.norm.dataSync()[0]!, 4);
        B.apply(c.grads, 0.01);
      }
      const a = values(fused);
      const b = values(plain);
      a.forEach((v, i) => expect(Math.abs(v - b[i]!)).toBeLessThan(1e-5));
      expect(a).not.toEqual(values(params(1)));
    });

    test('writes in place without touching tensors that shared the memory', async () => {
      await initBackend(backend);
      const ps = params(3);
      const before = values(ps);
      const clone = cloneParams(ps, ParamSet);
      const adam = new Adam(clone, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
      adam.step(clone.list.map((p) => tf.onesLike(p.variable)), 0.1, 0);
      expect(values(ps)).toEqual(before);
      values(clone).forEach((v, i) => expect(v).toBeCloseTo(before[i]! - 0.1, 5));
      const ema = cloneParams(ps, ParamSet);
      updateEma(ema, clone, 0.75);
      values(ema).forEach((v, i) => expect(v).toBeCloseTo(0.75 * before[i]! + 0.25 * (before[i]! - 0.1), 5));
      expect(values(ps)).toEqual(before);
    });
  });
}
