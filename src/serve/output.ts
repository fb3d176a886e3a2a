/**
 * Response bodies of `POST /v1/generate`: samples [n, …data shape] as PNG (an image grid, one PNG
 * per image, or a scatter plot of 2D points), NumPy .npy, or JSON.
 */
import { encodeNpy } from '../data/npy.js';
import { RequestError, ServeError } from '../errors.js';
import { render, scatterSpec } from '../eval/charts.js';
import { imageGrid } from '../eval/grid.js';
import { optionalSharp } from '../native.js';

export const FORMATS = ['png', 'npy', 'json'] as const;
export type Format = (typeof FORMATS)[number];
export const LAYOUTS = ['grid', 'each'] as const;
export type Layout = (typeof LAYOUTS)[number];

export interface Samples {
  values: Float32Array;
  n: number;
  shape: number[];
  range: [number, number];
  /** Title of a scatter plot. */
  title: string;
}

export interface Body {
  contentType: string;
  body: Buffer | string;
}

/** Images are [H, W, C] with C = 1 or 3; everything else is a vector. */
export function isImage(shape: number[]): boolean {
  return shape.length === 3 && (shape[2] === 1 || shape[2] === 3);
}

/** Whether this server can answer format "png" for samples of this shape (scatter plots need sharp). */
export function pngAvailable(shape: number[]): boolean {
  return isImage(shape) || (shape.length === 1 && shape[0]! >= 2 && optionalSharp() !== null);
}

/** Grid columns for n images: a near-square grid, at most 16 wide. */
function columns(n: number): number {
  return Math.min(16, Math.max(1, Math.ceil(Math.sqrt(n))));
}

export async function encode(s: Samples, format: Format, layout: Layout, meta: Record<string, unknown>): Promise<Body> {
  const D = s.shape.reduce((a, b) => a * b, 1);
  switch (format) {
    case 'npy':
      return { contentType: 'application/octet-stream', body: encodeNpy(s.values, [s.n, ...s.shape]) };
    case 'json':
      return { contentType: 'application/json', body: JSON.stringify({ ...meta, shape: [s.n, ...s.shape], range: s.range, data: Array.from(s.values) }) };
    case 'png': {
      if (isImage(s.shape)) {
        switch (layout) {
          case 'grid':
            return { contentType: 'image/png', body: imageGrid(s.values, s.n, s.shape, s.range, columns(s.n)) };
          case 'each': {
            const images = Array.from({ length: s.n }, (_, k) => imageGrid(s.values.subarray(k * D, (k + 1) * D), 1, s.shape, s.range, 1, 3, 0).toString('base64'));
            return { contentType: 'application/json', body: JSON.stringify({ ...meta, shape: [s.n, ...s.shape], images }) };
          }
        }
      }
      if (s.shape.length !== 1 || s.shape[0]! < 2) throw new RequestError('format', `PNG needs images [H, W, 1|3] or vectors of at least 2 values; these samples are [${s.shape.join(', ')}]: ask for "npy" or "json"`);
      if (layout === 'each') throw new RequestError('layout', 'layout "each" (one PNG per sample) is for images; vector samples are drawn as one scatter plot (layout "grid")');
      const png = (await render(scatterSpec(s.values, D, s.title, s.range, '#4c78a8', s.n))).png;
      if (!png) throw new ServeError('PNG scatter plots need the npm package sharp, which could not be loaded on this server; ask for "npy" or "json"', 501, 'format');
      return { contentType: 'image/png', body: png };
    }
  }
}
