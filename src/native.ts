/**
 * Native npm packages loaded lazily, only by the code paths that need them: the GPU machine's
 * bundle runs without them (see ../shared/gpu/README.md), and everything else must still work there.
 */
import { createRequire } from 'node:module';
import { HalfstepError } from './errors.js';

const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);

type SharpFn = typeof import('sharp').default;
let sharpCache: SharpFn | null | undefined;

/** sharp, or null where it cannot be loaded. */
export function optionalSharp(): SharpFn | null {
  if (sharpCache === undefined) {
    try {
      sharpCache = req('sharp') as SharpFn;
    } catch {
      sharpCache = null;
    }
  }
  return sharpCache;
}

/** sharp, or a clear error saying what needs it. */
export function requireSharp(what = 'image import'): SharpFn {
  const s = optionalSharp();
  if (!s) throw new HalfstepError(`${what} needs the npm package sharp, which could not be loaded here (install it with npm, or run this step on a machine that has it)`);
  return s;
}
