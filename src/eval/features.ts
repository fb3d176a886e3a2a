/**
 * The feature network for image metrics: a small classifier that halfstep trains once on the
 * dataset's labels (or, for unlabelled data, an autoencoder) and caches next to the dataset.
 * Its features stand in for Inception's in FID/KID: the numbers compare runs on the same dataset,
 * not with published FIDs.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { tf } from '../tf.js';
import { loadCheckpoint, saveCheckpoint, type NamedTensor } from '../checkpoint.js';
import { exampleSize, splitOf, type Dataset } from '../data/dataset.js';
import { dense, denseParams } from '../model/layers.js';
import { ParamSet } from '../model/params.js';
import { Adam } from '../optim.js';
import { Rng } from '../rng.js';
import type { OnEvent } from '../events.js';
import { yieldToEventLoop } from '../loop.js';

export const FEATURE_NET_VERSION = 1;
const HIDDEN = 512;

export interface FeatureNet {
  kind: 'classifier' | 'autoencoder';
  /** A sentence for the report: what the network is and how good it is. */
  description: string;
  featureDim: number;
  numClasses: number | null;
  heldoutAccuracy: number | null;
  /** Features [n·F] of n examples [n·D] in training units. */
  features(x: Float32Array, n: number): Promise<Float32Array>;
  /** Class probabilities [n·C] (classifier only). */
  probabilities(x: Float32Array, n: number): Promise<Float32Array | null>;
}

interface Meta {
  format: 'halfstep-feature-net';
  version: number;
  kind: FeatureNet['kind'];
  dataset: string;
  inputDim: number;
  featureDim: number;
  numClasses: number | null;
  heldoutAccuracy: number | null;
  finalLoss: number;
  steps: number;
}

function layers(kind: FeatureNet['kind'], D: number, F: number, C: number): [string, number, number][] {
  return kind === 'classifier'
    ? [
        ['fc1', D, HIDDEN],
        ['fc2', HIDDEN, F],
        ['head', F, C],
      ]
    : [
        ['fc1', D, HIDDEN],
        ['fc2', HIDDEN, F],
        ['dec1', F, HIDDEN],
        ['dec2', HIDDEN, D],
      ];
}

/** features = ReLU(fc2(ReLU(fc1(x)))); the classifier's head gives logits, the autoencoder's decoder a reconstruction. */
function forward(ps: ParamSet, kind: FeatureNet['kind'], x: tf.Tensor): { feat: tf.Tensor; out: tf.Tensor } {
  const feat = tf.relu(dense(ps, 'fc2', tf.relu(dense(ps, 'fc1', x))));
  const out = kind === 'classifier' ? dense(ps, 'head', feat) : dense(ps, 'dec2', tf.relu(dense(ps, 'dec1', feat)));
  return { feat, out };
}

/** The cache file for a dataset: next to it, keyed by the file's content hash. */
export function featureCachePath(datasetPath: string): string {
  const h = createHash('sha256').update(readFileSync(datasetPath)).digest('hex').slice(0, 12);
  return `${datasetPath}.features-v${FEATURE_NET_VERSION}-${h}.ckpt`;
}

/** Load the cached feature network of a dataset, or train and cache it. */
export async function featureNetFor(ds: Dataset, datasetPath: string, onEvent: OnEvent, opts: { steps?: number; seed?: number } = {}): Promise<FeatureNet> {
  const D = exampleSize(ds);
  const labelled = ds.labels !== null && (ds.numClasses ?? 0) > 1;
  const kind: FeatureNet['kind'] = labelled ? 'classifier' : 'autoencoder';
  const F = labelled ? 128 : 64;
  const C = labelled ? ds.numClasses! : 0;
  const cache = featureCachePath(datasetPath);
  const ps = new ParamSet();
  const rng = new Rng(opts.seed ?? 1234);
  for (const [name, i, o] of layers(kind, D, F, C)) denseParams(ps, rng, name, i, o);
  let meta: Meta;
  if (existsSync(cache)) {
    const ck = loadCheckpoint<Meta>(cache);
    for (const p of ps.list) p.variable.assign(tf.tensor(ck.tensors.get(p.name)!.data, p.variable.shape));
    meta = ck.meta;
  } else {
    meta = await train(ps, kind, ds, D, F, C, opts.steps ?? 1500, rng, onEvent);
    const tensors = new Map<string, NamedTensor>();
    for (const p of ps.list) tensors.set(p.name, { shape: p.variable.shape.slice(), data: (await p.variable.data()) as Float32Array });
    saveCheckpoint(cache, meta, tensors);
  }
  const batched = async (x: Float32Array, n: number, width: number, f: (t: tf.Tensor) => tf.Tensor): Promise<Float32Array> => {
    const out = new Float32Array(n * width);
    for (let i = 0; i < n; i += 500) {
      const m = Math.min(500, n - i);
      const r = tf.tidy(() => f(tf.tensor(x.subarray(i * D, (i + m) * D), [m, D])));
      out.set((await r.data()) as Float32Array, i * width);
      r.dispose();
    }
    return out;
  };
  const description =
    kind === 'classifier'
      ? `a ${D}-${HIDDEN}-${F}-${C} ReLU MLP classifier trained by halfstep on this dataset's labels (${meta.steps} Adam steps; held-out accuracy ${(100 * meta.heldoutAccuracy!).toFixed(1)}%); features are its ${F}-d penultimate layer. This is not the Inception network of the published FID/KID: compare these numbers only with each other.`
      : `the ${F}-d bottleneck of a ${D}-${HIDDEN}-${F}-${HIDDEN}-${D} ReLU MLP autoencoder trained by halfstep on this (unlabelled) dataset (${meta.steps} Adam steps, final reconstruction MSE ${meta.finalLoss.toPrecision(3)}). This is not the Inception network of the published FID/KID: compare these numbers only with each other.`;
  return {
    kind,
    description,
    featureDim: F,
    numClasses: labelled ? C : null,
    heldoutAccuracy: meta.heldoutAccuracy,
    features: (x, n) => batched(x, n, F, (t) => forward(ps, kind, t).feat),
    probabilities: async (x, n) => (kind === 'classifier' ? batched(x, n, C, (t) => tf.softmax(forward(ps, kind, t).out)) : null),
  };
}

async function train(ps: ParamSet, kind: FeatureNet['kind'], ds: Dataset, D: number, F: number, C: number, steps: number, rng: Rng, onEvent: OnEvent): Promise<Meta> {
  const tr = splitOf(ds, 'train');
  const held = splitOf(ds, 'heldout');
  const adam = new Adam(ps, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
  const vars = ps.list.map((p) => p.variable);
  const B = 128;
  let last = 0;
  onEvent({ type: 'stage-start', stage: 'eval', label: `feature ${kind}`, total: steps, startAt: 0, backend: tf.getBackend() });
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const xb = new Float32Array(B * D);
    const yb = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      const k = rng.int(tr.n);
      xb.set(tr.x.subarray(k * D, (k + 1) * D), i * D);
      yb[i] = tr.labels ? tr.labels[k]! : 0;
    }
    const x = tf.tensor(xb, [B, D]);
    const y = kind === 'classifier' ? tf.oneHot(tf.tensor1d(yb, 'int32'), C) : null;
    const { value, grads } = tf.variableGrads(() => {
      const { out } = forward(ps, kind, x);
      return (kind === 'classifier' ? tf.losses.softmaxCrossEntropy(y!, out) : tf.mean(tf.squaredDifference(out, x))) as tf.Scalar;
    }, vars);
    last = (await value.data())[0]!;
    adam.apply(
      ps.list.map((p) => grads[p.variable.name]!),
      1e-3 * (1 - s / steps),
    );
    tf.dispose([x, value, ...(y ? [y] : []), ...Object.values(grads)]);
    onEvent({ type: 'step', stage: 'eval', label: `feature ${kind}`, step: s + 1, total: steps, loss: last, lr: 1e-3 * (1 - s / steps), itPerSec: 0 });
    await yieldToEventLoop();
  }
  adam.dispose();
  let acc: number | null = null;
  if (kind === 'classifier' && held.labels) {
    let right = 0;
    for (let i = 0; i < held.n; i += 500) {
      const m = Math.min(500, held.n - i);
      const pred = tf.tidy(() => tf.argMax(forward(ps, kind, tf.tensor(held.x.subarray(i * D, (i + m) * D), [m, D])).out, 1));
      const p = await pred.data();
      pred.dispose();
      for (let j = 0; j < m; j++) if (p[j] === held.labels[i + j]) right += 1;
    }
    acc = right / held.n;
  }
  onEvent({ type: 'stage-end', stage: 'eval', label: `feature ${kind}`, seconds: (performance.now() - t0) / 1000, summary: acc !== null ? `held-out accuracy ${(100 * acc).toFixed(1)}%` : `reconstruction MSE ${last.toPrecision(3)}` });
  return { format: 'halfstep-feature-net', version: FEATURE_NET_VERSION, kind, dataset: ds.name, inputDim: D, featureDim: F, numClasses: C || null, heldoutAccuracy: acc, finalLoss: last, steps };
}
