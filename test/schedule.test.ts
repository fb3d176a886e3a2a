import { describe, expect, test } from 'vitest';
import { alphaSigma, logsnr, logsnrToCond, sigmoid, snr, timeFromLogsnr, timeGrid } from '../src/schedule.js';

describe('cosine log-SNR schedule', () => {
  test('is squeezed to exactly ±20 at the ends', () => {
    expect(logsnr(0)).toBeCloseTo(20, 10);
    expect(logsnr(1)).toBeCloseTo(-20, 10);
  });

  test('matches hand-computed values', () => {
    // b = atan(e^-10), a = atan(e^10) - b;  λ(0.5) = -2·log(tan(a/2 + b)) = 0 by symmetry
    expect(logsnr(0.5)).toBeCloseTo(0, 10);
    const b = Math.atan(Math.exp(-10));
    const a = Math.atan(Math.exp(10)) - b;
    expect(logsnr(0.25)).toBeCloseTo(-2 * Math.log(Math.tan(a * 0.25 + b)), 12);
    // without the squeeze this would be −2·log(tan(π/8)) = 1.76275; the squeeze moves it by ~1e-4
    expect(logsnr(0.25)).toBeCloseTo(1.762619, 5);
    expect(Math.abs(logsnr(0.25) - -2 * Math.log(Math.tan(Math.PI / 8)))).toBeLessThan(2e-4);
  });

  test('is strictly decreasing and invertible', () => {
    let prev = Infinity;
    for (let u = 0; u <= 1; u += 0.01) {
      const l = logsnr(u);
      expect(l).toBeLessThan(prev);
      expect(timeFromLogsnr(l)).toBeCloseTo(u, 9);
      prev = l;
    }
  });

  test('α² = sigmoid(λ), σ² = sigmoid(−λ), α² + σ² = 1', () => {
    for (const l of [-20, -3, 0, 1.5, 20]) {
      const { alpha, sigma } = alphaSigma(l);
      expect(alpha * alpha).toBeCloseTo(sigmoid(l), 12);
      expect(sigma * sigma).toBeCloseTo(sigmoid(-l), 12);
      expect(alpha * alpha + sigma * sigma).toBeCloseTo(1, 12);
      expect(snr(l)).toBeCloseTo((alpha * alpha) / (sigma * sigma), 6);
    }
    expect(alphaSigma(0).alpha).toBeCloseTo(Math.SQRT1_2, 12);
  });

  test('step grids run from 1 to 0', () => {
    expect(timeGrid(4)).toEqual([1, 0.75, 0.5, 0.25, 0]);
    expect(timeGrid(1)).toEqual([1, 0]);
    expect(() => timeGrid(0)).toThrow(/positive integer/);
  });

  test('the conditioning map is monotone into (0, 1)', () => {
    expect(logsnrToCond(20)).toBeLessThan(logsnrToCond(0));
    expect(logsnrToCond(0)).toBeCloseTo(0.5, 12);
    expect(logsnrToCond(-20)).toBeLessThan(1);
  });
});
