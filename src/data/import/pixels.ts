/**
 * What the image importers share: a batch of uint8 images, the one sharp pipeline that makes every
 * image a square of one size with 1 or 3 channels (resampling raw pixel buffers too, e.g. 28 → 16),
 * and the conversion of a batch into a Dataset in training units, [-1, 1].
 */
import type { Sharp } from 'sharp';
import { requireSharp } from '../../native.js';
import { DatasetError } from '../../errors.js';
import type { Dataset } from '../dataset.js';

export type Channels = 1 | 3;

/** n images, each height × width × channels bytes, row-major (HWC), one after the other. */
export interface ImageBatch {
  pixels: Uint8Array;
  n: number;
  height: number;
  width: number;
  channels: Channels;
  labels: Int32Array | null;
}

/** What an importer hands back: the dataset and counts the command can print. */
export interface ImportResult {
  dataset: Dataset;
  /** Files that could not be read and were left out (images with --on-error skip). */
  skipped: { file: string; reason: string }[];
}

/** Images are stored as uint8 on disk and live in [-1, 1] in training: byte v ↦ −1 + 2·v/255. */
export const IMAGE_RANGE: [number, number] = [-1, 1];
export const IMAGE_STORAGE = 'uint8' as const;

/**
 * The sharp steps every image goes through, after decoding: centre-crop and resize to size × size
 * (sharp's default lanczos3 kernel; `size` null = keep), then grayscale (luminance, 1 channel) or
 * sRGB (3 channels; gray replicated), as 8-bit raw bytes.
 */
export function squarePipeline(img: Sharp, size: number | null, channels: Channels): Sharp {
  let s = img;
  if (size !== null) s = s.resize(size, size, { fit: 'cover', position: 'centre' });
  switch (channels) {
    case 1:
      s = s.grayscale();
      break;
    case 3:
      s = s.toColourspace('srgb');
      break;
  }
  return s.raw({ depth: 'uchar' });
}

/** Run a sharp pipeline to raw bytes and check the result has the expected size and channels. */
export async function rawPixels(s: Sharp, width: number, height: number, channels: Channels): Promise<Uint8Array> {
  const { data, info } = await s.toBuffer({ resolveWithObject: true });
  if (info.width !== width || info.height !== height || info.channels !== channels) {
    throw new DatasetError(`sharp returned ${info.width}×${info.height}×${info.channels}; expected ${width}×${height}×${channels}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Resample every image of a batch to size × size (null = keep its height and width; a non-square
 * image is centre-cropped to the square) and/or convert its channels, through sharp on the raw pixel
 * buffers. A batch that needs neither comes back as is.
 */
export async function resample(b: ImageBatch, o: { size?: number | null; channels?: Channels }): Promise<ImageBatch> {
  const channels = o.channels ?? b.channels;
  const size = o.size ?? null;
  const keepSize = size === null || (size === b.width && size === b.height);
  if (channels === b.channels && keepSize) return b;
  const [h, w] = size === null ? [b.height, b.width] : [size, size];
  const inD = b.height * b.width * b.channels;
  const outD = h * w * channels;
  const pixels = new Uint8Array(b.n * outD);
  await forEachPooled(b.n, 8, async (i) => {
    const img = requireSharp()(b.pixels.subarray(i * inD, (i + 1) * inD), { raw: { width: b.width, height: b.height, channels: b.channels } });
    pixels.set(await rawPixels(squarePipeline(img, keepSize ? null : size, channels), w, h, channels), i * outD);
  });
  return { pixels, n: b.n, height: h, width: w, channels, labels: b.labels };
}

/** Byte v of an image ↦ −1 + (v/255)·2: the same expression readDataset uses for uint8 storage, so a round trip is exact. */
export function pixelsToUnit(pixels: Uint8Array): Float32Array {
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) x[i] = -1 + (pixels[i]! / 255) * 2;
  return x;
}

/** A batch as a Dataset: shape [H, W, C], range [-1, 1]; write it with writeDataset(path, d, IMAGE_STORAGE). */
export function imageDataset(b: ImageBatch, meta: { name: string; source: string; split: Uint8Array; numClasses: number | null }): Dataset {
  if (meta.split.length !== b.n) throw new DatasetError(`split has ${meta.split.length} entries for ${b.n} images`);
  return {
    name: meta.name,
    source: meta.source,
    shape: [b.height, b.width, b.channels],
    range: [...IMAGE_RANGE],
    x: pixelsToUnit(b.pixels),
    labels: b.labels,
    split: meta.split,
    numClasses: meta.numClasses,
  };
}

/** Call fn(0..n−1) with at most `limit` calls in flight (sharp works off the main thread). */
export async function forEachPooled(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}
