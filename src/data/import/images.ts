/**
 * A folder of PNG/JPEG/WebP images (searched recursively; names starting with "." are passed over,
 * links to files are followed, links to folders are not),
 * decoded by sharp, turned upright by their EXIF orientation, flattened onto black where they have
 * alpha, centre-cropped and resized to a square, and made grayscale or RGB. Files are taken in
 * code-point order of their paths relative to the folder, so the row order does not depend on the disk.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, extname, join, relative, resolve } from 'node:path';
import { requireSharp } from '../../native.js';
import { DatasetError } from '../../errors.js';
import { randomSplit } from '../dataset.js';
import { forEachPooled, imageDataset, rawPixels, squarePipeline, type Channels, type ImportResult } from './pixels.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'] as const;
export const ON_ERROR = ['skip', 'stop'] as const;
export type OnError = (typeof ON_ERROR)[number];

export interface ImagesOptions {
  /** Side of the square images; null = the shorter side of the first readable image. */
  size?: number | null;
  /** 1 = grayscale (luminance), 3 = RGB; default 3. */
  channels?: Channels;
  /** What to do with a file sharp cannot read: stop with an error naming it (default), or leave it out. */
  onError?: OnError;
  holdout?: number;
  seed?: number;
  /** Use at most the first N image files (in path order). */
  limit?: number | null;
  name?: string;
}

/** The image files under `dir`, recursively, by extension (case-insensitive), sorted by relative path. */
export function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!(IMAGE_EXTENSIONS as readonly string[]).includes(extname(e.name).toLowerCase())) continue;
      else if (e.isFile() || (e.isSymbolicLink() && statSync(p, { throwIfNoEntry: false })?.isFile() === true)) out.push(p);
    }
  };
  walk(dir);
  const rel = (p: string) => relative(dir, p);
  return out.sort((a, b) => (rel(a) < rel(b) ? -1 : rel(a) > rel(b) ? 1 : 0));
}

function decoder(file: string) {
  // failOn 'error': a truncated or corrupt file is an error, not a half-grey image.
  return requireSharp()(file, { failOn: 'error' }).rotate().flatten({ background: '#000000' });
}

function reasonOf(e: unknown): string {
  return (e as Error).message.split('\n')[0] ?? String(e);
}

function unreadable(file: string, reason: string): DatasetError {
  return new DatasetError(`${file}: not a readable PNG/JPEG/WebP image (${reason}); pass --on-error skip to leave such files out`);
}

/** Import the images under `dir` (see the file comment). */
export async function importImages(dir: string, o: ImagesOptions = {}): Promise<ImportResult> {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new DatasetError(`${dir}: folder not found`);
  }
  if (!st.isDirectory()) throw new DatasetError(`${dir}: not a folder`);
  const all = listImages(dir);
  if (all.length === 0) throw new DatasetError(`${dir}: no ${IMAGE_EXTENSIONS.join('/')} files in it or below it`);
  const files = all.slice(0, o.limit ?? all.length);
  const onError = o.onError ?? 'stop';
  const channels = o.channels ?? 3;
  const skipped: { file: string; reason: string }[] = [];

  let size = o.size ?? null;
  let start = 0;
  while (size === null) {
    const file = files[start];
    if (file === undefined) break;
    try {
      const m = await decoder(file).metadata();
      if (!m.width || !m.height) throw new Error('no width or height in its header');
      size = Math.min(m.width, m.height);
    } catch (e) {
      switch (onError) {
        case 'stop':
          throw unreadable(file, reasonOf(e));
        case 'skip':
          skipped.push({ file, reason: reasonOf(e) });
          start++;
          break;
      }
    }
  }
  if (size === null) throw new DatasetError(`${dir}: none of the ${files.length} image files could be read`);
  const side = size;

  const todo = files.slice(start);
  const D = side * side * channels;
  const decoded: (Uint8Array | { reason: string })[] = new Array(todo.length);
  await forEachPooled(todo.length, 4, async (i) => {
    try {
      decoded[i] = await rawPixels(squarePipeline(decoder(todo[i]!), side, channels), side, side, channels);
    } catch (e) {
      decoded[i] = { reason: reasonOf(e) };
    }
  });
  const good: Uint8Array[] = [];
  decoded.forEach((d, i) => {
    if (d instanceof Uint8Array) good.push(d);
    else {
      switch (onError) {
        case 'stop':
          throw unreadable(todo[i]!, d.reason);
        case 'skip':
          skipped.push({ file: todo[i]!, reason: d.reason });
          break;
      }
    }
  });
  if (good.length === 0) throw new DatasetError(`${dir}: none of the ${files.length} image files could be read`);
  const n = good.length;
  const pixels = new Uint8Array(n * D);
  good.forEach((g, i) => pixels.set(g, i * D));
  const holdout = o.holdout ?? 0.1;
  const seed = o.seed ?? 0;
  return {
    dataset: imageDataset(
      { pixels, n, height: side, width: side, channels, labels: null },
      {
        name: o.name ?? basename(resolve(dir)),
        source: `images:${dir}: ${n} of ${all.length} files${skipped.length ? ` (${skipped.length} unreadable, skipped)` : ''}, ${side}×${side}, ${channels} channel${channels === 1 ? '' : 's'}; held out: random ${+(holdout * 100).toFixed(2)}%, seed ${seed}`,
        split: randomSplit(n, holdout, seed),
        numClasses: null,
      },
    ),
    skipped,
  };
}
