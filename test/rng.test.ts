import { expect, test } from 'vitest';
import { Rng } from '../src/rng.js';

test('the generator is deterministic and its state restores the stream', () => {
  const a = new Rng(42);
  a.normals(10);
  const saved = a.state();
  const next = a.normals(5);
  expect(new Rng(saved).normals(5)).toEqual(next);
  expect(new Rng(42).nextU32()).toBe(new Rng(42).nextU32());
  expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
});

test('normals have mean 0 and variance 1; uniforms lie in [0, 1)', () => {
  const x = new Rng(7).normals(100000);
  const m = x.reduce((s, v) => s + v, 0) / x.length;
  const v = x.reduce((s, y) => s + (y - m) ** 2, 0) / x.length;
  expect(Math.abs(m)).toBeLessThan(0.02);
  expect(Math.abs(v - 1)).toBeLessThan(0.02);
  const r = new Rng(8);
  for (let i = 0; i < 1000; i++) {
    const u = r.uniform();
    expect(u).toBeGreaterThanOrEqual(0);
    expect(u).toBeLessThan(1);
  }
});

test('permutations are permutations', () => {
  const p = Array.from(new Rng(3).permutation(50)).sort((a, b) => a - b);
  expect(p).toEqual(Array.from({ length: 50 }, (_, i) => i));
});
