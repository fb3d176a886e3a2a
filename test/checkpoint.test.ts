import { describe, expect, test } from 'vitest';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint, type NamedTensor } from '../src/checkpoint.js';
import { CheckpointError } from '../src/errors.js';
import { tmp } from './helpers.js';

describe('checkpoint files', () => {
  const dir = tmp();
  const path = join(dir, 'a.ckpt');
  const tensors = new Map<string, NamedTensor>([
    ['params/w', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['params/b', { shape: [3], data: Float32Array.from([-1, 0.5, 1e-30]) }],
  ]);
  saveCheckpoint(path, { hello: 'world', n: 3 }, tensors);

  test('round trip of metadata and tensors, bit for bit', () => {
    const ck = loadCheckpoint<{ hello: string; n: number }>(path);
    expect(ck.meta).toEqual({ hello: 'world', n: 3 });
    expect(Array.from(ck.tensors.get('params/w')!.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(ck.tensors.get('params/b')!.data[2]).toBe(Math.fround(1e-30));
    expect(ck.tensors.get('params/w')!.shape).toEqual([2, 3]);
  });

  test('the write is atomic: no temp files stay behind', () => {
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  test('a truncated file gets a clear error', () => {
    const bytes = readFileSync(path);
    const cut = join(dir, 'cut.ckpt');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 10));
    expect(() => loadCheckpoint(cut)).toThrow(CheckpointError);
    expect(() => loadCheckpoint(cut)).toThrow(/truncated/);
    writeFileSync(cut, bytes.subarray(0, 30));
    expect(() => loadCheckpoint(cut)).toThrow(/truncated/);
  });

  test('a foreign file gets a clear error', () => {
    const f = join(dir, 'foreign.ckpt');
    writeFileSync(f, 'PK\u0003\u0004 this is a zip file, not a checkpoint');
    expect(() => loadCheckpoint(f)).toThrow(/not a halfstep checkpoint/);
  });

  test('a corrupted byte is caught by the checksum', () => {
    const bytes = Buffer.from(readFileSync(path));
    bytes[bytes.length - 8] ^= 0xff;
    const f = join(dir, 'flip.ckpt');
    writeFileSync(f, bytes);
    expect(() => loadCheckpoint(f)).toThrow(/checksum/);
  });

  test('a missing file is named', () => {
    expect(() => loadCheckpoint(join(dir, 'none.ckpt'))).toThrow(/none\.ckpt: checkpoint not found/);
    expect(existsSync(join(dir, 'none.ckpt'))).toBe(false);
  });
});
