/** 2D toy distributions for the vector pipeline, scaled to lie roughly within [−1, 1]². */
import { Rng } from '../rng.js';

export const TOY_DISTS = ['swissroll', 'moons', '8gaussians', 'checkerboard', 'rings'] as const;
export type ToyDist = (typeof TOY_DISTS)[number];

/** n points [n·2] and a class label per point where the distribution has one (moons, gaussians, rings). */
export function toySamples(dist: ToyDist, n: number, rng: Rng): { x: Float32Array; labels: Int32Array } {
  const x = new Float32Array(2 * n);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let px = 0;
    let py = 0;
    let label = 0;
    switch (dist) {
      case 'swissroll': {
        // t ∈ [1.5π, 4.5π]; (t·cos t, t·sin t) plus Gaussian noise, as in scikit-learn's make_swiss_roll (2D slice)
        const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
        px = (t * Math.cos(t) + 0.3 * rng.normal()) / 14;
        py = (t * Math.sin(t) + 0.3 * rng.normal()) / 14;
        break;
      }
      case 'moons': {
        const th = Math.PI * rng.uniform();
        label = rng.int(2);
        const cx = label === 0 ? Math.cos(th) : 1 - Math.cos(th);
        const cy = label === 0 ? Math.sin(th) : 0.5 - Math.sin(th);
        px = (cx - 0.5 + 0.05 * rng.normal()) / 1.6;
        py = (cy - 0.25 + 0.05 * rng.normal()) / 1.6;
        break;
      }
      case '8gaussians': {
        label = rng.int(8);
        const a = (label * Math.PI) / 4;
        px = 0.8 * Math.cos(a) + 0.05 * rng.normal();
        py = 0.8 * Math.sin(a) + 0.05 * rng.normal();
        break;
      }
      case 'checkerboard': {
        // x1 ∈ [−2, 2); x2 lands on the squares where floor(x1) + floor(x2) is even (as in FFJORD's toy set)
        const x1 = 4 * rng.uniform() - 2;
        const x2 = rng.uniform() - 2 * rng.int(2) + (Math.floor(x1) % 2 === 0 ? 0 : 1);
        px = x1 / 2;
        py = x2 / 2;
        break;
      }
      case 'rings': {
        label = rng.int(2);
        const r = label === 0 ? 0.4 : 0.85;
        const a = 2 * Math.PI * rng.uniform();
        px = r * Math.cos(a) + 0.03 * rng.normal();
        py = r * Math.sin(a) + 0.03 * rng.normal();
        break;
      }
    }
    x[2 * i] = px;
    x[2 * i + 1] = py;
    labels[i] = label;
  }
  return { x, labels };
}
