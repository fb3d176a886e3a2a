import { describe, expect, test } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Matrix } from 'ml-matrix';
import { initBackend } from '../src/backend.js';
import { frechetDistance, kernelDistance, meanCov, psnr } from '../src/eval/fd.js';
import { featureCachePath, featureNetFor } from '../src/eval/features.js';
import { imageGrid } from '../src/eval/grid.js';
import { randomSplit, writeDataset, type Dataset } from '../src/data/dataset.js';
import { Rng } from '../src/rng.js';
import { noEvents } from '../src/events.js';
import { tmp } from './helpers.js';

describe('Fréchet distance', () => {
  const d = 3;
  const I = Matrix.eye(d);
  test('is ‖Δμ‖² for equal covariances', () => {
    const a = { mu: Float64Array.from([0, 0, 0]), cov: I };
    const b = { mu: Float64Array.from([1, 2, 2]), cov: I };
    expect(frechetDistance(a, b)).toBeCloseTo(9, 9);
    expect(frechetDistance(a, a)).toBeCloseTo(0, 9);
  });
  test('is Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) for equal means: d·(1 + 4 − 4) for I and 4I', () => {
    const a = { mu: new Float64Array(d), cov: I };
    const b = { mu: new Float64Array(d), cov: I.clone().mul(4) };
    expect(frechetDistance(a, b)).toBeCloseTo(d, 9);
  });
  test('handles non-commuting covariances (checked against a 2×2 closed form)', () => {
    // Σ₁ = diag(1, 4), Σ₂ = [[2, 1], [1, 2]]: Tr((Σ₁Σ₂)^½) = sqrt(tr(Σ₁Σ₂) + 2·sqrt(det(Σ₁Σ₂)))
    const s1 = new Matrix([[1, 0], [0, 4]]);
    const s2 = new Matrix([[2, 1], [1, 2]]);
    const tr = 2 + 8;
    const det = 4 * 3;
    const want = 5 + 4 - 2 * Math.sqrt(tr + 2 * Math.sqrt(det));
    expect(frechetDistance({ mu: new Float64Array(2), cov: s1 }, { mu: new Float64Array(2), cov: s2 })).toBeCloseTo(want, 9);
  });
  test('meanCov matches the textbook estimate', () => {
    const x = Float32Array.from([1, 2, 3, 6, 5, 10]); // rows (1,2), (3,6), (5,10)
    const { mu, cov } = meanCov(x, 3, 2);
    expect(Array.from(mu)).toEqual([3, 6]);
    expect(cov.to2DArray()).toEqual([[4, 8], [8, 16]]);
  });
});

describe('KID and PSNR', () => {
  test('KID is near 0 for one distribution and positive for a shifted one', () => {
    const F = 8;
    const a = new Rng(1).normals(400 * F);
    const b = new Rng(2).normals(400 * F);
    const same = kernelDistance(a, 400, b, 400, F, 10, 100, 0);
    expect(Math.abs(same.kid)).toBeLessThan(4 * same.se + 1e-3);
    const far = kernelDistance(a, 400, b.map((v) => v + 1), 400, F, 10, 100, 0);
    expect(far.kid).toBeGreaterThan(20 * far.se);
    expect(far.kid).toBeGreaterThan(0.1);
  });
  test('PSNR of a constant 0.1 offset in [-1, 1] is 10·log10(4/0.01)', () => {
    const a = new Float32Array(32);
    const b = new Float32Array(32).fill(0.1);
    expect(psnr(a, b, 16, [-1, 1])).toBeCloseTo(10 * Math.log10(400), 4);
    expect(psnr(a, a, 16, [-1, 1])).toBeNull();
  });
});

test('image grids place each image in its cell, scaled, with values mapped to 0..255', async () => {
  const { default: sharp } = await import('sharp');
  const x = new Float32Array(3 * 2 * 2).fill(-1);
  x[4] = 1; // image 1, pixel (0, 0) white
  const png = await imageGrid(x, 3, [2, 2, 1], [-1, 1], 2, 2, 1);
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height]).toEqual([2 * (2 * 2 + 1) + 1, 2 * (2 * 2 + 1) + 1]);
  const at = (px: number, py: number) => data[(py * info.width + px) * info.channels]!;
  expect(at(1, 1)).toBe(0); // image 0: black
  expect(at(6, 1)).toBe(255); // image 1, pixel (0,0) scaled ×2 → (6..7, 1..2)
  expect(at(7, 2)).toBe(255);
  expect(at(8, 1)).toBe(0); // image 1, pixel (1, 0)
  expect(at(0, 0)).toBe(255); // padding is white
});

test('the feature classifier learns a tiny labelled image set, is cached, and reloads identically', async () => {
  await initBackend('wasm');
  // 4×4 images, class k = which quadrant is bright, plus noise
  const n = 800;
  const rng = new Rng(3);
  const x = new Float32Array(n * 16);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(4);
    labels[i] = k;
    for (let p = 0; p < 16; p++) {
      const q = (Math.floor(p / 4) >= 2 ? 2 : 0) + (p % 4 >= 2 ? 1 : 0);
      x[i * 16 + p] = (q === k ? 0.8 : -0.8) + 0.2 * rng.normal();
    }
  }
  const ds: Dataset = { name: 'quadrants', source: 'test', shape: [4, 4, 1], range: [-1, 1], x, labels, split: randomSplit(n, 0.2, 1), numClasses: 4 };
  const path = join(tmp(), 'q.arrow');
  writeDataset(path, ds);
  const net = await featureNetFor(ds, path, noEvents, { steps: 150 });
  expect(net.kind).toBe('classifier');
  expect(net.heldoutAccuracy!).toBeGreaterThan(0.95);
  expect(net.description).toMatch(/not the Inception network/);
  expect(existsSync(featureCachePath(path))).toBe(true);
  const again = await featureNetFor(ds, path, noEvents, { steps: 150 });
  expect(Array.from(await again.features(x, 5))).toEqual(Array.from(await net.features(x, 5)));
  const p = (await net.probabilities(x, 10))!;
  for (let i = 0; i < 10; i++) expect(p.subarray(i * 4, i * 4 + 4).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);

});

test('unlabelled images fall back to an autoencoder, and the description says so', async () => {
  await initBackend('wasm');
  const n = 300;
  const x = new Rng(4).normals(n * 16).map((v) => Math.tanh(v));
  const ds: Dataset = { name: 'noise', source: 'test', shape: [4, 4, 1], range: [-1, 1], x, labels: null, split: randomSplit(n, 0.2, 1), numClasses: null };
  const path = join(tmp(), 'u.arrow');
  writeDataset(path, ds);
  const net = await featureNetFor(ds, path, noEvents, { steps: 60 });
  expect(net.kind).toBe('autoencoder');
  expect(net.featureDim).toBe(64);
  expect(await net.probabilities(x, 2)).toBeNull();
  expect(net.description).toMatch(/bottleneck of a 16-512-64-512-16 ReLU MLP autoencoder trained by halfstep on this \(unlabelled\) dataset/);
  expect((await net.features(x, 3)).length).toBe(3 * 64);
});
