/**
 * IDX files, the format of the MNIST family (LeCun et al., "THE MNIST DATABASE of handwritten digits"):
 * a 4-byte magic 0x00 0x00 <type> <number of dims>, then each dim as a big-endian uint32, then the
 * values row-major. Type 0x08 = unsigned byte is the one read here: 0x00000803 = images [N, H, W],
 * 0x00000801 = labels [N], and 0x00000804 = images [N, H, W, C] with C = 1 or 3. Files may be gzipped
 * (detected by the gzip magic bytes 0x1f 0x8b, not by the name).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DatasetError } from '../../errors.js';
import { randomSplit } from '../dataset.js';
import { imageDataset, resample, type Channels, type ImageBatch, type ImportResult } from './pixels.js';

export type IdxContent = { kind: 'images'; n: number; height: number; width: number; channels: Channels; data: Uint8Array } | { kind: 'labels'; n: number; data: Uint8Array };

const TYPE_NAMES: Record<number, string> = { 0x08: 'unsigned byte', 0x09: 'signed byte', 0x0b: 'short', 0x0c: 'int', 0x0d: 'float', 0x0e: 'double' };

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

/** Whether the bytes start with the gzip magic 0x1f 0x8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Parse one IDX file's bytes (already gunzipped); `file` names it in errors. */
export function parseIdx(bytes: Uint8Array, file: string): IdxContent {
  if (bytes.length < 4) throw new DatasetError(`${file}: not an IDX file (${bytes.length} bytes; an IDX header has at least 4)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const type = bytes[2]!;
  const ndim = bytes[3]!;
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DatasetError(`${file}: not an IDX file (magic ${hex(magic)}; expected 0x00000803 for images or 0x00000801 for labels)`);
  }
  if (type !== 0x08) {
    throw new DatasetError(`${file}: IDX values of type 0x${type.toString(16).padStart(2, '0')} (${TYPE_NAMES[type] ?? 'unknown'}) are not supported; expected 0x08 (unsigned byte)`);
  }
  const header = 4 + 4 * ndim;
  if (bytes.length < header) throw new DatasetError(`${file}: truncated IDX header (${ndim} dims need ${header} bytes; the file has ${bytes.length})`);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i, false));
  const want = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - header;
  if (have !== want) {
    throw new DatasetError(`${file}: IDX dims [${dims.join(', ')}] need ${want} bytes of values; the file has ${have}${have < want ? ' (truncated?)' : ''}`);
  }
  const data = bytes.subarray(header);
  switch (ndim) {
    case 1:
      return { kind: 'labels', n: dims[0]!, data };
    case 3:
      return { kind: 'images', n: dims[0]!, height: dims[1]!, width: dims[2]!, channels: 1, data };
    case 4: {
      const c = dims[3]!;
      if (c !== 1 && c !== 3) throw new DatasetError(`${file}: IDX images [N, H, W, C] with C = ${c}; expected 1 or 3 channels`);
      return { kind: 'images', n: dims[0]!, height: dims[1]!, width: dims[2]!, channels: c, data };
    }
    default:
      throw new DatasetError(`${file}: IDX magic ${hex(magic)} has ${ndim} dims; expected 0x00000803 (images [N, H, W]), 0x00000804 ([N, H, W, C]) or 0x00000801 (labels [N])`);
  }
}

/** Read an IDX file from disk, gunzipping it if it starts with the gzip magic. */
export function readIdx(file: string): IdxContent {
  if (!existsSync(file)) throw new DatasetError(`${file}: file not found`);
  let bytes: Uint8Array = readFileSync(file);
  if (isGzip(bytes)) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DatasetError(`${file}: starts like gzip but does not gunzip (${(e as Error).message})`);
    }
  }
  return parseIdx(bytes, file);
}

export interface IdxOptions {
  size?: number | null;
  channels?: Channels;
  holdout?: number;
  seed?: number;
  limit?: number | null;
  name?: string;
}

/**
 * Import IDX files: the image files are concatenated in the order given, and so are the label files;
 * the i-th label file labels the i-th image file (counts must match). The held-out split is random
 * (randomSplit with `seed`).
 */
export async function importIdx(files: string[], o: IdxOptions = {}): Promise<ImportResult> {
  const images: (IdxContent & { kind: 'images'; file: string })[] = [];
  const labels: (IdxContent & { kind: 'labels'; file: string })[] = [];
  for (const file of files) {
    const c = readIdx(file);
    switch (c.kind) {
      case 'images':
        images.push({ ...c, file });
        break;
      case 'labels':
        labels.push({ ...c, file });
        break;
    }
  }
  if (images.length === 0) throw new DatasetError(`no IDX image file among ${files.join(', ')} (images have magic 0x00000803)`);
  const first = images[0]!;
  for (const im of images.slice(1)) {
    if (im.height !== first.height || im.width !== first.width || im.channels !== first.channels) {
      throw new DatasetError(`${im.file}: images are ${im.height}×${im.width}×${im.channels}; ${first.file} has ${first.height}×${first.width}×${first.channels}`);
    }
  }
  if (labels.length > 0 && labels.length !== images.length) {
    throw new DatasetError(`${labels.length} IDX label file(s) for ${images.length} image file(s); give one label file per image file, in the same order, or none`);
  }
  labels.forEach((l, i) => {
    if (l.n !== images[i]!.n) throw new DatasetError(`${l.file}: ${l.n} labels for the ${images[i]!.n} images of ${images[i]!.file}`);
  });

  const total = images.reduce((a, im) => a + im.n, 0);
  const n = Math.min(o.limit ?? total, total);
  if (n === 0) throw new DatasetError(`${files.join(', ')}: no images`);
  const D = first.height * first.width * first.channels;
  const pixels = new Uint8Array(n * D);
  const lab = labels.length > 0 ? new Int32Array(n) : null;
  let row = 0;
  images.forEach((im, i) => {
    const k = Math.min(im.n, n - row);
    if (k <= 0) return;
    pixels.set(im.data.subarray(0, k * D), row * D);
    if (lab) lab.set(labels[i]!.data.subarray(0, k), row);
    row += k;
  });
  const raw: ImageBatch = { pixels, n, height: first.height, width: first.width, channels: first.channels, labels: lab };
  const b = await resample(raw, { size: o.size ?? null, channels: o.channels ?? 1 });
  const resized = b.width !== raw.width || b.height !== raw.height ? `, resized ${raw.height}×${raw.width} → ${b.height}×${b.width}` : '';
  const numClasses = lab ? lab.reduce((m, v) => Math.max(m, v), 0) + 1 : null;
  const holdout = o.holdout ?? 0.1;
  const seed = o.seed ?? 0;
  return {
    dataset: imageDataset(b, {
      name: o.name ?? basename(first.file).replace(/\.gz$/i, ''),
      source: `idx:${[...images, ...labels].map((f) => basename(f.file)).join(',')}: ${n} of ${total} images${resized}, ${b.channels} channel${b.channels === 1 ? '' : 's'}; held out: random ${+(holdout * 100).toFixed(2)}%, seed ${seed}`,
      split: randomSplit(n, holdout, seed),
      numClasses,
    }),
    skipped: [],
  };
}
