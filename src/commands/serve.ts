/** `halfstep serve RUN_DIR|TRITON_DIR`: an HTTP server for the exported students, one tier per step count (see docs/serve.md). */
import { Option, type Command } from 'commander';
import { UsageError } from '../errors.js';
import { SERVE_DEFAULTS, startServer } from '../serve/server.js';
import type { CliContext } from './common.js';

interface ServeCliOptions {
  port: number;
  host: string;
  maxBatchSize: number;
  maxWaitMs: number;
  maxQueue: number;
  timeoutMs: number;
  maxN: number;
  bodyLimit: number;
  threads: number;
  batching: boolean;
}

function intArg(flag: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} expects an integer in [${min}, ${max}]; got "${v}"`);
    return n;
  };
}

export function registerServeCommand(program: Command, ctx: CliContext): void {
  const d = SERVE_DEFAULTS;
  program
    .command('serve')
    .argument('<dir>', 'a run folder (serves <run>/onnx/), a folder of exported .onnx files, or a Triton model repository')
    .description('serve the exported students over HTTP: POST /v1/generate, GET /v1/models, /healthz, /metrics and a web page at /')
    .addOption(new Option('--port <n>', 'TCP port (0: any free one)').argParser(intArg('--port', 0, 65535)).default(d.port))
    .option('--host <addr>', 'address to listen on', d.host)
    .addOption(new Option('--max-batch-size <n>', 'largest batch, in samples').argParser(intArg('--max-batch-size', 1)).default(d.maxBatchSize))
    .addOption(new Option('--max-wait-ms <ms>', 'how long a request may wait for others to join its batch').argParser(intArg('--max-wait-ms', 0)).default(d.maxWaitMs))
    .addOption(new Option('--max-queue <n>', 'requests waiting before new ones get 503').argParser(intArg('--max-queue', 1)).default(d.maxQueue))
    .addOption(new Option('--timeout-ms <ms>', 'per-request deadline (then 504)').argParser(intArg('--timeout-ms', 1)).default(d.timeoutMs))
    .addOption(new Option('--max-n <n>', 'largest n of one request').argParser(intArg('--max-n', 1)).default(d.maxN))
    .addOption(new Option('--body-limit <bytes>', 'largest request body').argParser(intArg('--body-limit', 64)).default(d.bodyLimit))
    .addOption(new Option('--threads <n>', 'onnxruntime threads per model (each tier runs in its own worker thread)').argParser(intArg('--threads', 1)).default(d.threads))
    .option('--no-batching', 'run every request as a batch of its own')
    .action(async (dir: string, o: ServeCliOptions) => {
      const s = await startServer(dir, { ...o });
      const tiers = s.models.models.map((m) => {
        const aliases = s.models.aliasesOf(m.tier);
        return `${m.tier}${aliases.length ? ` (${aliases.join(', ')})` : ''}: ${m.id}, ${m.info.kind} graph`;
      });
      ctx.io.out(`halfstep serve: listening on ${s.url}\n${tiers.map((t) => `  ${t}\n`).join('')}`);
      if (!ctx.signal.aborted) await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      const busy = s.scheduler.depth() + s.scheduler.inFlight();
      ctx.io.out(`halfstep serve: draining${busy ? ` (${s.scheduler.depth()} queued, ${s.scheduler.inFlight()} batches running)` : ''}\n`);
      await s.close();
      ctx.io.out('halfstep serve: stopped\n');
    });
}
