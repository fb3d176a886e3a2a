import { describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { epsFromX, lossWeight, noise, predictX, vFromXEps, weightedXLoss, xFromEps, xFromV } from '../src/diffusion.js';
import { alphaSigma, logsnr } from '../src/schedule.js';
import { ddimStep, sample, type Denoise } from '../src/sampler.js';
import { distillTarget } from '../src/distill.js';
import { Rng } from '../src/rng.js';

await initBackend('cpu');

const arr = (t: tf.Tensor) => Array.from(t.dataSync());
const close = (a: number[], b: number[], tol = 1e-5) => a.forEach((v, i) => expect(Math.abs(v - b[i]!)).toBeLessThan(tol));

describe('conversions', () => {
  // α = 0.6, σ = 0.8; x = [1, -2], ε = [0.5, 1]
  const a = tf.scalar(0.6);
  const s = tf.scalar(0.8);
  const x = tf.tensor([[1, -2]]);
  const e = tf.tensor([[0.5, 1]]);

  test('z = α·x + σ·ε and back', () => {
    const z = noise(x, e, a, s);
    close(arr(z), [0.6 + 0.4, -1.2 + 0.8]);
    close(arr(xFromEps(z, e, a, s)), [1, -2]);
    close(arr(epsFromX(z, x, a, s)), [0.5, 1]);
  });

  test('v = α·ε − σ·x, and x = α·z − σ·v', () => {
    const v = vFromXEps(x, e, a, s);
    close(arr(v), [0.3 - 0.8, 0.6 + 1.6]);
    close(arr(xFromV(noise(x, e, a, s), v, a, s)), [1, -2]);
  });

  test('every parameterization recovers x from its ideal output', () => {
    const z = noise(x, e, a, s);
    close(arr(predictX('x', x, z, a, s)), [1, -2]);
    close(arr(predictX('eps', e, z, a, s)), [1, -2]);
    close(arr(predictX('v', vFromXEps(x, e, a, s), z, a, s)), [1, -2]);
    // both: [x̃, ε̃] → σ²·x̃ + α²·x̂(ε̃); with ideal outputs that is (σ² + α²)·x = x
    close(arr(predictX('both', tf.concat([x, e], 1), z, a, s)), [1, -2]);
    // and it really mixes: x̃ = 0 gives α²·x
    close(arr(predictX('both', tf.concat([tf.zerosLike(x), e], 1), z, a, s)), [0.36, -0.72]);
  });

  test('loss weights', () => {
    expect(lossWeight('snr_trunc', Math.log(4))).toBeCloseTo(4, 12);
    expect(lossWeight('snr_trunc', Math.log(0.25))).toBe(1);
    expect(lossWeight('snr_plus_one', Math.log(4))).toBeCloseTo(5, 12);
    expect(lossWeight('snr', Math.log(0.25))).toBeCloseTo(0.25, 12);
    expect(lossWeight('constant', 7)).toBe(1);
  });

  test('weighted x-loss is mean over batch of w·mean over dims', () => {
    const l = weightedXLoss(tf.tensor([[0, 0], [1, 1]]), tf.tensor([[1, 1], [1, 3]]), tf.tensor1d([2, 3]));
    // example 0: mean((1,1)) = 1, ×2; example 1: mean((0,4)) = 2, ×3 → (2 + 6)/2 = 4
    expect(l.dataSync()[0]).toBeCloseTo(4, 6);
  });

  test('v-loss equals (1 + SNR)-weighted x-loss', () => {
    const rng = new Rng(5);
    const l = logsnr(0.3);
    const { alpha, sigma } = alphaSigma(l);
    const xs = tf.tensor(rng.normals(8), [4, 2]);
    const es = tf.tensor(rng.normals(8), [4, 2]);
    const xh = tf.tensor(rng.normals(8), [4, 2]);
    const z = noise(xs, es, tf.scalar(alpha), tf.scalar(sigma));
    const v = vFromXEps(xs, es, tf.scalar(alpha), tf.scalar(sigma));
    const vh = vFromXEps(xh, epsFromX(z, xh, tf.scalar(alpha), tf.scalar(sigma)), tf.scalar(alpha), tf.scalar(sigma));
    const vmse = tf.mean(tf.squaredDifference(v, vh)).dataSync()[0]!;
    const xw = weightedXLoss(xs, xh, tf.fill([4], lossWeight('snr_plus_one', l))).dataSync()[0]!;
    expect(xw).toBeCloseTo(vmse, 4);
  });
});

describe('DDIM', () => {
  test('one step matches the formula on a constant denoiser', () => {
    const xhat = tf.tensor([[0.5, -0.25]]);
    const den: Denoise = () => tf.clone(xhat);
    const z = tf.tensor([[1, 2]]);
    const u = 0.75;
    const s = 0.5;
    const A = alphaSigma(logsnr(u));
    const B = alphaSigma(logsnr(s));
    const got = arr(ddimStep(den, z, u, s));
    const want = [0, 1].map((i) => {
      const zi = [1, 2][i]!;
      const xi = [0.5, -0.25][i]!;
      const eps = (zi - A.alpha * xi) / A.sigma;
      return B.alpha * xi + B.sigma * eps;
    });
    close(got, want, 1e-6);
    // hand-computed for u = 0.75, s = 0.5: α_s = σ_s = √½
    close(got, [0.5 * Math.SQRT1_2 + Math.SQRT1_2 * ((1 - A.alpha * 0.5) / A.sigma), -0.25 * Math.SQRT1_2 + Math.SQRT1_2 * ((2 + A.alpha * 0.25) / A.sigma)], 1e-6);
  });

  test('the last step returns x̂, clipped to the data range', () => {
    const den: Denoise = () => tf.tensor([[3, -0.5]]);
    close(arr(ddimStep(den, tf.tensor([[0, 0]]), 0.5, 0)), [3, -0.5]);
    close(arr(ddimStep(den, tf.tensor([[0, 0]]), 0.5, 0, [-1, 1])), [1, -0.5]);
  });

  test('with the true x as denoiser, sampling returns x for any step count', () => {
    const x = tf.tensor([[0.3, -0.7], [0.1, 0.9]]);
    const den: Denoise = () => tf.clone(x);
    const z = tf.tensor(new Rng(1).normals(4), [2, 2]);
    for (const n of [1, 2, 7, 64]) close(arr(sample(den, z, n)), arr(x), 1e-6);
  });

  test('a tensor leak check: sampling leaves no tensors behind', () => {
    const den: Denoise = (z) => tf.mul(z, 0.5);
    const z = tf.tensor([[1, 2]]);
    const before = tf.memory().numTensors;
    const out = sample(den, z, 8);
    expect(tf.memory().numTensors).toBe(before + 1);
    out.dispose();
  });
});

describe('distillation target', () => {
  const rng = new Rng(11);
  const B = 16;
  const x = tf.tensor(rng.normals(B * 3), [B, 3]);
  const eps = tf.tensor(rng.normals(B * 3), [B, 3]);
  const trueX: Denoise = () => tf.clone(x);

  for (const N of [1, 2, 4, 64]) {
    test(`with a teacher that returns the true x, the target is x (N = ${N})`, () => {
      const u = Float32Array.from({ length: B }, (_, i) => (1 + (i % N)) / N);
      const ls = Array.from(u, (v) => alphaSigma(logsnr(v)));
      const a = tf.tensor(ls.map((v) => v.alpha), [B, 1]);
      const s = tf.tensor(ls.map((v) => v.sigma), [B, 1]);
      const z = noise(x, eps, a, s);
      close(arr(distillTarget(trueX, z, u, N)), arr(x), 2e-4);
    });
  }

  test('midpoints are in order: the first teacher call is at u, the second at u − 0.5/N', () => {
    const N = 4;
    const seen: number[] = [];
    const rec: Denoise = (z, l) => {
      seen.push(l.dataSync()[0]!);
      return tf.zerosLike(z);
    };
    distillTarget(rec, tf.zeros([1, 3]), [0.75], N);
    expect(seen[0]).toBeCloseTo(logsnr(0.75), 4);
    expect(seen[1]).toBeCloseTo(logsnr(0.625), 4);
  });

  test("on the last interval the target is the teacher's second x̂", () => {
    const N = 2;
    let call = 0;
    const teacher: Denoise = (z) => (++call === 1 ? tf.fill(z.shape, 0.1) : tf.fill(z.shape, 0.7));
    const t = distillTarget(teacher, tf.ones([1, 3]), [0.5], N);
    close(arr(t), [0.7, 0.7, 0.7], 1e-6);
  });

  test('the target makes one student DDIM step land where two teacher steps land', () => {
    const N = 8;
    const u = 5 / N;
    const teacher: Denoise = (z, l) => tf.tidy(() => tf.mul(tf.sin(z), tf.reshape(tf.sigmoid(l), [-1, 1])));
    const z = tf.tensor(new Rng(2).normals(6), [2, 3]);
    const target = distillTarget(teacher, z, [u, u], N);
    const two = ddimStep(teacher, ddimStep(teacher, z, u, u - 0.5 / N), u - 0.5 / N, u - 1 / N);
    const one = ddimStep(() => tf.clone(target), z, u, u - 1 / N);
    close(arr(one), arr(two), 1e-4);
  });
});
