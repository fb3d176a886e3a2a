import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { randomSplit, writeDataset } from '../src/data/dataset.js';
import type { ReportJson } from '../src/eval/report.js';
import { loadCheckpoint } from '../src/checkpoint.js';
import { Rng } from '../src/rng.js';
import { cli, tmp } from './helpers.js';

/** 8×8 grayscale pictures: class k ∈ {0..3} lights quadrant k, plus a little noise. */
function writeQuadrants(path: string, n = 600): void {
  const rng = new Rng(11);
  const x = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(4);
    labels[i] = k;
    for (let p = 0; p < 64; p++) {
      const q = (Math.floor(p / 8) >= 4 ? 2 : 0) + (p % 8 >= 4 ? 1 : 0);
      x[i * 64 + p] = Math.max(-1, Math.min(1, (q === k ? 0.8 : -0.8) + 0.1 * rng.normal()));
    }
  }
  writeDataset(path, { name: 'quadrants', source: 'test', shape: [8, 8, 1], range: [-1, 1], x, labels, split: randomSplit(n, 0.2, 2), numClasses: 4 }, 'uint8');
}

describe('images end to end: UNet teacher → 4 → 2 → 1 → image report', () => {
  const dir = tmp();
  const data = join(dir, 'quadrants.arrow');
  writeQuadrants(data);
  const args = ['test/fixtures/tiny-images.yaml', '--out', join(dir, 'run'), '--set', `data.path=${data}`, '--set', 'export.onnx=false'];

  test('the run writes image metrics, grids and the feature-network note', async () => {
    const r = await cli(['run', ...args]);
    expect(r.err).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'run', 'report.json'), 'utf8')) as ReportJson;
    expect(report.data_kind).toBe('image');
    expect(report.metrics.map((m) => m.name)).toEqual(['fd', 'kid', 'kid_se', 'psnr', 'confident']);
    expect(report.feature_network).toMatch(/MLP classifier trained by halfstep on this dataset's labels .* not the Inception network/);
    expect(report.rows.map((x) => `${x.sampler}${x.steps}`)).toEqual(['teacher4', 'student4', 'teacher2', 'student2', 'teacher1', 'student1']);
    for (const row of report.rows) {
      expect(row.metrics.fd).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(row.metrics.kid)).toBe(true);
      expect(row.metrics.confident).toBeGreaterThanOrEqual(0);
      expect(row.metrics.confident).toBeLessThanOrEqual(1);
      expect(existsSync(join(dir, 'run', row.figure))).toBe(true);
    }
    expect(report.rows[0]!.metrics.psnr).toBeNull(); // the teacher against itself
    expect(report.rows[5]!.metrics.psnr).toBeGreaterThan(0);
    expect(report.teacher_check!.classifier_heldout_accuracy).toBeGreaterThan(0.9);
    expect(report.teacher_check!.heldout_confident).toBeGreaterThan(0.8);
    const md = readFileSync(join(dir, 'run', 'report.md'), 'utf8');
    expect(md).toMatch(/\| steps \| teacher DDIM fd \| student fd \|/);
    expect(md).toMatch(/Feature space of the image metrics/);
    // the grid is a PNG of 8 columns of 8×8 images scaled ×3 with 1-pixel gaps
    const png = readFileSync(join(dir, 'run', 'figures', 'student-1.png'));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(8 * (8 * 3 + 1) + 1);
  });

  test('dropout masks come from the batch RNG: a resumed image run equals an uninterrupted one', async () => {
    const b = tmp();
    const bargs = ['test/fixtures/tiny-images.yaml', '--out', join(b, 'run'), '--set', `data.path=${data}`, '--set', 'export.onnx=false', '--quiet'];
    expect((await cli(['train', ...bargs, '--stop-after', '15'])).code).toBe(130);
    expect((await cli(['train', ...bargs, '--resume'])).code).toBe(0);
    const x = loadCheckpoint(join(dir, 'run', 'checkpoints', 'teacher.ckpt')).tensors;
    const y = loadCheckpoint(join(b, 'run', 'checkpoints', 'teacher.ckpt')).tensors;
    for (const [k, v] of x) expect(Array.from(y.get(k)!.data), k).toEqual(Array.from(v.data));
  });

  test('the mlp refuses image data and the unet refuses vectors, naming model.type', async () => {
    const r = await cli(['train', ...args, '--set', 'model.type=mlp']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/model\.type: mlp takes vector data/);
  });
});
