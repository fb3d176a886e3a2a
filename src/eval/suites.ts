/**
 * What a row is measured by, per kind of data. Vectors: sliced Wasserstein, energy distance and MSE
 * to the teacher. Images: Fréchet distance and KID in a feature network's space, PSNR to the teacher,
 * and the fraction of samples the classifier is confident about.
 */
import { exampleSize, splitOf, type Dataset } from '../data/dataset.js';
import type { OnEvent } from '../events.js';
import type { Recipe } from '../recipe.js';
import { frechetDistance, kernelDistance, meanCov, psnr } from './fd.js';
import { featureNetFor, type FeatureNet } from './features.js';
import { energyDistance, METRIC_DEFINITIONS, mse, slicedWasserstein } from './metrics.js';

export type Metrics = Record<string, number | null>;

export interface MetricInfo {
  name: string;
  /** Whether larger values are better (psnr, confident) or smaller (distances). */
  better: 'lower' | 'higher';
  definition: string;
}

export interface MetricSuite {
  kind: 'vector' | 'image';
  metrics: MetricInfo[];
  /** A sentence about the feature space, for image data. */
  featureNetwork: string | null;
  measure(samples: Float32Array, teacherRef: Float32Array): Promise<Metrics>;
  /** Extra numbers about the teacher's start_steps samples (e.g. how recognisable they are). */
  teacherCheck?(samples: Float32Array): Promise<Record<string, number>>;
}

export function vectorSuite(ds: Dataset, e: Recipe['eval']): MetricSuite {
  const D = exampleSize(ds);
  const held = splitOf(ds, 'heldout');
  return {
    kind: 'vector',
    featureNetwork: null,
    metrics: [
      { name: 'swd', better: 'lower', definition: METRIC_DEFINITIONS.swd },
      { name: 'energy', better: 'lower', definition: METRIC_DEFINITIONS.energy },
      { name: 'teacher_mse', better: 'lower', definition: METRIC_DEFINITIONS.teacher_mse },
    ],
    measure: async (s, ref) => ({
      swd: slicedWasserstein(s, held.x, D, e.projections, e.seed + 1),
      energy: energyDistance(s, held.x, D, e.energy_samples),
      teacher_mse: mse(s, ref),
    }),
  };
}

export const CONFIDENCE = 0.9;

export async function imageSuite(ds: Dataset, datasetPath: string, e: Recipe['eval'], onEvent: OnEvent): Promise<MetricSuite> {
  const D = exampleSize(ds);
  const held = splitOf(ds, 'heldout');
  const net: FeatureNet = await featureNetFor(ds, datasetPath, onEvent, { steps: e.feature_steps });
  const heldFeat = await net.features(held.x, held.n);
  const heldStats = meanCov(heldFeat, held.n, net.featureDim);
  const confident = async (s: Float32Array): Promise<number | null> => {
    const n = s.length / D;
    const p = await net.probabilities(s, n);
    if (!p) return null;
    const C = net.numClasses!;
    let k = 0;
    for (let i = 0; i < n; i++) {
      let m = 0;
      for (let c = 0; c < C; c++) m = Math.max(m, p[i * C + c]!);
      if (m > CONFIDENCE) k += 1;
    }
    return k / n;
  };
  const metrics: MetricInfo[] = [
    { name: 'fd', better: 'lower', definition: `Fréchet distance ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between Gaussians fitted to the features of the row's samples and of the ${held.n} held-out images. Features: ${net.description}` },
    { name: 'kid', better: 'lower', definition: `Kernel distance: unbiased MMD² with k(x, y) = (x·y/d + 1)³ in the same feature space, averaged over ${e.kid_subsets} random subsets of ${e.kid_subset_size} samples and held-out images.` },
    { name: 'kid_se', better: 'lower', definition: 'Standard error of kid over its subsets.' },
    { name: 'psnr', better: 'higher', definition: "Fidelity to the teacher: mean over images of 10·log10(w²/MSE), w the width of the data range, between the row's samples and the teacher's start_steps samples from the same noise (null: identical)." },
  ];
  if (net.kind === 'classifier') {
    metrics.push({ name: 'confident', better: 'higher', definition: `Fraction of samples the feature classifier assigns a class with probability above ${CONFIDENCE} (recognisability).` });
  }
  return {
    kind: 'image',
    featureNetwork: net.description,
    metrics,
    measure: async (s, ref) => {
      const n = s.length / D;
      const f = await net.features(s, n);
      const kid = kernelDistance(f, n, heldFeat, held.n, net.featureDim, e.kid_subsets, e.kid_subset_size, e.seed + 2);
      const m: Metrics = {
        fd: frechetDistance(meanCov(f, n, net.featureDim), heldStats),
        kid: kid.kid,
        kid_se: kid.se,
        psnr: psnr(s, ref, D, ds.range),
      };
      if (net.kind === 'classifier') m.confident = await confident(s);
      return m;
    },
    teacherCheck:
      net.kind === 'classifier' ? async (s) => ({ confident: (await confident(s))!, heldout_confident: (await confident(held.x))!, classifier_heldout_accuracy: net.heldoutAccuracy! }) : undefined,
  };
}

export async function suiteFor(ds: Dataset, r: Recipe, onEvent: OnEvent): Promise<MetricSuite> {
  return ds.shape.length === 3 ? imageSuite(ds, r.data.path, r.eval, onEvent) : vectorSuite(ds, r.eval);
}
