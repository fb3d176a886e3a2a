import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import type { Output } from '../src/commands/progress.js';

const made: string[] = [];
// The folders a test file made are removed when its tests are done (HALFSTEP_KEEP_TMP=1 keeps them).
afterAll(() => {
  if (process.env.HALFSTEP_KEEP_TMP) return;
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

export function tmp(prefix = 'halfstep-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Run the CLI in-process. `onErr` sees every stderr chunk (e.g. to abort like Ctrl-C). */
export async function cli(args: string[], opts: { onErr?: (s: string, abort: () => void) => void } = {}): Promise<CliResult> {
  let out = '';
  let err = '';
  const ac = new AbortController();
  const io: Output = {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
      opts.onErr?.(s, () => ac.abort());
    },
    isTTY: false,
  };
  const code = await main(args, io, ac.signal);
  return { code, out, err };
}

export const TINY = 'test/fixtures/tiny.yaml';

/** Arguments that run the tiny recipe in `dir` with its dataset there too. */
export function tinyArgs(dir: string, extra: string[] = []): string[] {
  return [TINY, '--out', join(dir, 'run'), '--set', `data.path=${join(dir, 'moons.arrow')}`, ...extra];
}

/** Max relative error max|a − b| / max|b| (the lengths must match). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relErr: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / s;
}

/**
 * Switch tfjs to the stock cpu backend without halfstep's kernels (as a test reference), quietly.
 * Only valid before initBackend('cpu') registered halfstep's kernels in this process.
 */
export async function stockCpuBackend(): Promise<void> {
  const { tf } = await import('../src/tf.js');
  await import('@tensorflow/tfjs-backend-cpu');
  const { warn, log } = console;
  console.warn = console.log = () => {};
  try {
    await tf.setBackend('cpu');
  } finally {
    console.warn = warn;
    console.log = log;
  }
}
