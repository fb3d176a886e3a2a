import { describe, expect, test } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeToyDataset } from '../src/data/make.js';
import { readDataset, splitOf, writeDataset } from '../src/data/dataset.js';
import { TOY_DISTS } from '../src/data/toy.js';
import { encodeNpy } from '../src/data/npy.js';
import { DatasetError } from '../src/errors.js';
import { tmp, cli } from './helpers.js';

describe('toy datasets', () => {
  for (const dist of TOY_DISTS) {
    test(`${dist}: deterministic, inside its range, with a held-out split`, () => {
      const a = makeToyDataset({ dist, n: 500, holdout: 0.2, seed: 4 });
      const b = makeToyDataset({ dist, n: 500, holdout: 0.2, seed: 4 });
      expect(a.x).toEqual(b.x);
      expect(a.shape).toEqual([2]);
      for (const v of a.x) {
        expect(v).toBeGreaterThanOrEqual(a.range[0]);
        expect(v).toBeLessThanOrEqual(a.range[1]);
      }
      expect(Array.from(a.split).filter((s) => s === 1).length).toBe(100);
      expect(a.range[1] - a.range[0]).toBeLessThan(3);
    });
  }

  test('8 gaussians sit at radius 0.8 around the origin', () => {
    const d = makeToyDataset({ dist: '8gaussians', n: 2000, holdout: 0.1, seed: 1 });
    let r = 0;
    for (let i = 0; i < 2000; i++) r += Math.hypot(d.x[2 * i]!, d.x[2 * i + 1]!);
    expect(r / 2000).toBeCloseTo(0.8, 1);
  });
});

describe('Arrow IPC files', () => {
  const dir = tmp();
  test('round trip keeps values, labels, split and metadata', () => {
    const d = makeToyDataset({ dist: 'moons', n: 300, holdout: 0.1, seed: 2 });
    const p = join(dir, 'm.arrow');
    writeDataset(p, d);
    const e = readDataset(p);
    expect(e.x).toEqual(d.x);
    expect(e.labels).toEqual(d.labels);
    expect(e.split).toEqual(d.split);
    expect(e.range).toEqual(d.range);
    expect(e.name).toBe('moons');
    expect(e.numClasses).toBe(2);
    const held = splitOf(e, 'heldout');
    expect(held.n).toBe(30);
    expect(splitOf(e, 'train').n).toBe(270);
  });

  test('uint8 storage quantises onto the value range', () => {
    const d = makeToyDataset({ dist: 'rings', n: 100, holdout: 0.1, seed: 2 });
    const p = join(dir, 'q.arrow');
    writeDataset(p, d, 'uint8');
    const e = readDataset(p);
    const step = (d.range[1] - d.range[0]) / 255;
    d.x.forEach((v, i) => expect(Math.abs(v - e.x[i]!)).toBeLessThanOrEqual(step / 2 + 1e-6));
  });

  test('a file that is not Arrow, or not ours, gets a clear error', () => {
    const p = join(dir, 'bad.arrow');
    writeFileSync(p, 'hello');
    expect(() => readDataset(p)).toThrow(DatasetError);
    expect(() => readDataset(p)).toThrow(/not an Arrow IPC file/);
    expect(() => readDataset(join(dir, 'missing.arrow'))).toThrow(/dataset file not found/);
  });

  test('`halfstep data make toy` writes a dataset', async () => {
    const p = join(dir, 'cli.arrow');
    const r = await cli(['data', 'make', 'toy', '--dist', 'checkerboard', '--n', '400', '--out', p]);
    expect(r.code).toBe(0);
    expect(readDataset(p).x.length).toBe(800);
    const bad = await cli(['data', 'make', 'toy', '--dist', 'spiral', '--out', p]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/spiral.*Allowed choices are swissroll, moons/s);
    const badN = await cli(['data', 'make', 'toy', '--n', 'many', '--out', p]);
    expect(badN.code).toBe(2);
    expect(badN.err).toMatch(/--n expects an integer/);
  });
});

test('npy header is what numpy writes', () => {
  const b = encodeNpy(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  expect(b.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
  const hlen = b.readUInt16LE(8);
  expect((10 + hlen) % 64).toBe(0);
  expect(b.subarray(10, 10 + hlen).toString('latin1')).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \}\s+\n$/);
  expect(new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length))).toEqual(Float32Array.from([1, 2, 3, 4, 5, 6]));
});
