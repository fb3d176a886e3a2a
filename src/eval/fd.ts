/**
 * Distances between two sets of feature vectors: the Fréchet distance between Gaussians fitted to
 * them (the formula of FID, Heusel et al. 2017) and the kernel distance KID (Bińkowski et al. 2018,
 * unbiased MMD² with the cubic polynomial kernel, averaged over subsets, with its standard error).
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { Rng } from '../rng.js';

/** Mean [F] and covariance [F×F] (divisor n − 1) of n feature rows. */
export function meanCov(x: Float32Array, n: number, F: number): { mu: Float64Array; cov: Matrix } {
  const mu = new Float64Array(F);
  for (let i = 0; i < n; i++) for (let j = 0; j < F; j++) mu[j] += x[i * F + j]!;
  for (let j = 0; j < F; j++) mu[j] /= n;
  const c = new Matrix(F, F);
  const row = new Float64Array(F);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < F; j++) row[j] = x[i * F + j]! - mu[j]!;
    for (let a = 0; a < F; a++) {
      const ra = row[a]!;
      if (ra === 0) continue;
      for (let b = a; b < F; b++) c.set(a, b, c.get(a, b) + ra * row[b]!);
    }
  }
  for (let a = 0; a < F; a++)
    for (let b = a; b < F; b++) {
      const v = c.get(a, b) / (n - 1);
      c.set(a, b, v);
      c.set(b, a, v);
    }
  return { mu, cov: c };
}

/** Symmetric PSD square root via the eigendecomposition (negative rounding noise clipped to 0). */
function sqrtPsd(m: Matrix): Matrix {
  const e = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const V = e.eigenvectorMatrix;
  const d = e.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0)));
  return V.mmul(Matrix.diag(d)).mmul(V.transpose());
}

/**
 * d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), with Tr((Σ₁Σ₂)^½) = Σ sqrt(eig(Σ₁^½ Σ₂ Σ₁^½)), the
 * eigenvalues of a symmetric PSD matrix (so no complex parts to discard).
 */
export function frechetDistance(a: { mu: Float64Array; cov: Matrix }, b: { mu: Float64Array; cov: Matrix }): number {
  let d2 = 0;
  for (let j = 0; j < a.mu.length; j++) d2 += (a.mu[j]! - b.mu[j]!) ** 2;
  const s1 = sqrtPsd(a.cov);
  const m = s1.mmul(b.cov).mmul(s1);
  const sym = m.add(m.transpose()).mul(0.5);
  const ev = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).realEigenvalues;
  const trSqrt = ev.reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
  return d2 + a.cov.trace() + b.cov.trace() - 2 * trSqrt;
}

/**
 * KID: over `subsets` random subsets of m rows from each set, the unbiased MMD² with
 * k(x, y) = (x·y/F + 1)³; returns the mean and the standard error of the mean over subsets.
 */
export function kernelDistance(x: Float32Array, nx: number, y: Float32Array, ny: number, F: number, subsets: number, m: number, seed: number): { kid: number; se: number } {
  const mm = Math.min(m, nx, ny);
  const rng = new Rng(seed);
  const k = (A: Float32Array, i: number, B: Float32Array, j: number) => {
    let s = 0;
    for (let f = 0; f < F; f++) s += A[i * F + f]! * B[j * F + f]!;
    return (s / F + 1) ** 3;
  };
  const vals: number[] = [];
  for (let t = 0; t < subsets; t++) {
    const ix = rng.permutation(nx).subarray(0, mm);
    const iy = rng.permutation(ny).subarray(0, mm);
    let kxx = 0;
    let kyy = 0;
    let kxy = 0;
    for (let a = 0; a < mm; a++) {
      for (let b = 0; b < mm; b++) {
        if (a !== b) {
          kxx += k(x, ix[a]!, x, ix[b]!);
          kyy += k(y, iy[a]!, y, iy[b]!);
        }
        kxy += k(x, ix[a]!, y, iy[b]!);
      }
    }
    vals.push((kxx + kyy) / (mm * (mm - 1)) - (2 * kxy) / (mm * mm));
  }
  const mean = vals.reduce((s, v) => s + v, 0) / vals.length;
  const sd = vals.length > 1 ? Math.sqrt(vals.reduce((s, v) => s + (v - mean) ** 2, 0) / (vals.length - 1)) : 0;
  return { kid: mean, se: sd / Math.sqrt(vals.length) };
}

/** Mean over images of PSNR = 10·log10(peak² / MSE) with peak = the data range's width; ∞ (null) for identical sets. */
export function psnr(a: Float32Array, b: Float32Array, perImage: number, range: [number, number]): number | null {
  const n = a.length / perImage;
  const peak2 = (range[1] - range[0]) ** 2;
  let total = 0;
  let identical = true;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * perImage; j < (i + 1) * perImage; j++) s += (a[j]! - b[j]!) ** 2;
    const mse = s / perImage;
    if (mse > 0) identical = false;
    total += 10 * Math.log10(peak2 / Math.max(mse, 1e-20));
  }
  return identical ? null : total / n;
}
