/** `halfstep data make toy …`: write datasets as Arrow IPC. */
import { Option, type Command } from 'commander';
import { writeDataset } from '../data/dataset.js';
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
}
