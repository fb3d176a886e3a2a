/** Options shared by the commands that work on a run folder, and their translation into a Job. */
import { Option, type Command } from 'commander';
import { loadRecipe, BACKENDS, type BackendName, type Recipe } from '../recipe.js';
import { openJob } from '../pipeline.js';
import type { Job } from '../stage.js';
import { progressReporter, type Output } from './progress.js';

export interface CliContext {
  io: Output;
  signal: AbortSignal;
}

export interface RunOptions {
  out?: string;
  set: string[];
  backend?: BackendName;
  resume?: boolean;
  quiet?: boolean;
  stopAfter?: number;
}

export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function backendOption(): Option {
  return new Option('--backend <name>', 'tfjs backend (overrides the recipe)').choices([...BACKENDS]);
}

export function withRunOptions(c: Command): Command {
  return c
    .option('-o, --out <dir>', 'run folder (default: runs/<recipe name>)')
    .option('--set <key=value>', 'override a recipe key, e.g. --set train.lr=3e-4 (repeatable)', collect, [])
    .addOption(backendOption())
    .option('--resume', 'continue an interrupted run from its last checkpoint')
    .option('-q, --quiet', 'no progress output')
    .addOption(new Option('--stop-after <updates>', 'testing aid: stop each stage as if interrupted after this many updates').argParser(Number).hideHelp());
}

export async function jobFrom(recipePath: string, o: RunOptions, ctx: CliContext): Promise<{ job: Job; recipe: Recipe; done: () => void }> {
  const recipe = loadRecipe(recipePath, o.set);
  const reporter = progressReporter(ctx.io, Boolean(o.quiet));
  const job = await openJob(recipe, {
    out: o.out ?? `runs/${recipe.name}`,
    backend: o.backend,
    resume: o.resume,
    onEvent: reporter,
    signal: ctx.signal,
    stopAfter: o.stopAfter,
  });
  return { job, recipe, done: () => reporter.stop() };
}
