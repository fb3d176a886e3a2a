#!/usr/bin/env node
/**
 * halfstep's command line. The one place that prints errors and sets the exit code; `main` returns
 * the code instead of exiting, so tests can call it.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { HalfstepError } from './errors.js';
import { VERSION } from './version.js';
import { processOutput, type Output } from './commands/progress.js';
import type { CliContext } from './commands/common.js';
import { registerRunCommands } from './commands/run.js';
import { registerDataCommands } from './commands/data.js';
import { registerSampleCommand } from './commands/sample.js';
import { registerExportCommand } from './commands/export.js';
import { registerServeCommand } from './commands/serve.js';

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('halfstep')
    .description('progressive step distillation of diffusion models: teacher → halving rounds → students → report')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.out(s), writeErr: (s) => ctx.io.err(s) })
    .showHelpAfterError('(run halfstep --help for usage)');
  registerRunCommands(program, ctx);
  registerDataCommands(program, ctx);
  registerSampleCommand(program, ctx);
  registerExportCommand(program, ctx);
  registerServeCommand(program, ctx);
  for (const c of program.commands) propagate(c);
  return program;
}

function propagate(c: Command): void {
  c.exitOverride();
  c.commands.forEach(propagate);
}

/** Run the CLI with `argv` (without node and script). Returns the exit code. */
export async function main(argv: string[], io: Output = processOutput, signal?: AbortSignal): Promise<number> {
  const ac = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(130);
    io.err('\nstopping: saving progress, finishing in-flight work (Ctrl-C again to quit at once)\n');
    ac.abort();
  };
  signal?.addEventListener('abort', () => ac.abort());
  const installSignals = signal === undefined;
  if (installSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    await buildProgram({ io, signal: ac.signal }).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof HalfstepError) {
      io.err(`halfstep: ${e.message}\n`);
      return e.exitCode;
    }
    io.err(`halfstep: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 70;
  } finally {
    if (installSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

const invoked = process.argv[1] ? realpathSync(process.argv[1]) : '';
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
