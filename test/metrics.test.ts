import { expect, test } from 'vitest';
import { energyDistance, mse, slicedWasserstein } from '../src/eval/metrics.js';
import { Rng } from '../src/rng.js';

test('SWD is 0 for identical sets and |c| for a 1D shift by c', () => {
  const a = new Rng(1).normals(1000);
  expect(slicedWasserstein(a, a, 2, 16, 0)).toBe(0);
  const b = a.map((v) => v + 0.5);
  expect(slicedWasserstein(a, b, 1, 8, 0)).toBeCloseTo(0.5, 5);
});

test('SWD of a 2D shift is |c|·E|θ₁| = |c|·2/π', () => {
  const n = 500;
  const a = new Rng(2).normals(2 * n);
  const b = a.map((v, i) => (i % 2 === 0 ? v + 1 : v));
  expect(slicedWasserstein(a, b, 2, 4000, 3)).toBeCloseTo(2 / Math.PI, 1);
});

test('energy distance on a hand-computed case', () => {
  // X = {0, 1}, Y = {10, 11}: E|X−Y| = 10, within-set pair distances 1 → 2·10 − 1 − 1 = 18
  expect(energyDistance(Float32Array.from([0, 1]), Float32Array.from([10, 11]), 1, 2)).toBeCloseTo(18, 10);
});

test('energy distance is larger for farther distributions', () => {
  const a = new Rng(3).normals(400);
  const b = new Rng(4).normals(400);
  const near = energyDistance(a, b, 2, 200);
  const far = energyDistance(a, b.map((v) => v * 3), 2, 200);
  expect(Math.abs(near)).toBeLessThan(0.05);
  expect(far).toBeGreaterThan(0.5);
});

test('mse', () => {
  expect(mse(Float32Array.from([0, 0]), Float32Array.from([1, 3]))).toBe(5);
});
