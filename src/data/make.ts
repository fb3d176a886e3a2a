/** Making datasets from a generator spec (toy distributions; MNIST once the image importers exist). */
import { Rng } from '../rng.js';
import { toySamples, type ToyDist } from './toy.js';
import { randomSplit, type Dataset } from './dataset.js';

export interface ToySpec {
  dist: ToyDist;
  n: number;
  holdout: number;
  seed: number;
}

export function makeToyDataset(spec: ToySpec): Dataset {
  const { x, labels } = toySamples(spec.dist, spec.n, new Rng(spec.seed));
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const pad = 0.05 * (hi - lo);
  const labelled = spec.dist === 'moons' || spec.dist === '8gaussians' || spec.dist === 'rings';
  return {
    name: spec.dist,
    source: `toy:${spec.dist} n=${spec.n} seed=${spec.seed}`,
    shape: [2],
    range: [lo - pad, hi + pad],
    x,
    labels: labelled ? labels : null,
    split: randomSplit(spec.n, spec.holdout, spec.seed),
    numClasses: labelled ? (spec.dist === '8gaussians' ? 8 : 2) : null,
  };
}
