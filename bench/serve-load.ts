/**
 * Load test of `halfstep serve`: throughput and p50/p99 latency per tier at concurrency 1, 8 and 64,
 * with batching on and off, against 127.0.0.1 only, every cell bounded in time.
 *
 *   node scripts/build.mjs src/cli.ts bench/serve-load.ts && node dist/bench/serve-load.js [DIR]
 *     [--duration S] [--concurrency 1,8,64] [--tiers 1step,4step] [--n 1] [--format npy|json|png]
 *     [--max-wait-ms 0] [--max-queue 256] [--threads 1] [--json FILE]
 *
 * DIR is what `halfstep serve` takes (a run folder with onnx/, an export folder or a Triton
 * repository); without it the tiny test recipe is run into a temp folder first (seconds). For each
 * batching mode the built CLI serves DIR in a child process, and autocannon (in this process) sends
 * POST /v1/generate {tier, n, seed, format} over `c` keep-alive connections for S seconds per cell.
 * The mean batch is read from the server's /metrics (halfstep_batch_size) before and after each
 * cell, after a warm-up of up to 1 s per tier at the highest concurrency. Latencies have autocannon's 1 ms
 * resolution. Every concurrency must stay below the queue bound, so any failed request (connection error,
 * timeout or non-2xx answer) is a bug: the table says so and the exit code is 1.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type autocannonType from 'autocannon';

// loaded at run time, not bundled (autocannon starts workers from its own files)
const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);
const autocannon = req('autocannon') as typeof autocannonType;

interface Options {
  dir: string | null;
  duration: number;
  concurrency: number[];
  tiers: string[] | null;
  n: number;
  format: string;
  maxWaitMs: number;
  maxQueue: number;
  threads: number;
  json: string | null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { dir: null, duration: 3, concurrency: [1, 8, 64], tiers: null, n: 1, format: 'npy', maxWaitMs: 0, maxQueue: 256, threads: 1, json: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    switch (a) {
      case '--duration':
        o.duration = Number(v());
        break;
      case '--concurrency':
        o.concurrency = v().split(',').map(Number);
        break;
      case '--tiers':
        o.tiers = v().split(',');
        break;
      case '--n':
        o.n = Number(v());
        break;
      case '--format':
        o.format = v();
        break;
      case '--max-wait-ms':
        o.maxWaitMs = Number(v());
        break;
      case '--max-queue':
        o.maxQueue = Number(v());
        break;
      case '--threads':
        o.threads = Number(v());
        break;
      case '--json':
        o.json = v();
        break;
      default:
        if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
        o.dir = a;
    }
  }
  if (!(o.duration > 0 && o.duration <= 60)) throw new Error('--duration must be in (0, 60] seconds');
  if (o.concurrency.some((c) => !Number.isInteger(c) || c < 1)) throw new Error('--concurrency takes positive integers');
  const worst = Math.max(...o.concurrency);
  if (worst >= o.maxQueue) throw new Error(`--concurrency ${worst} is not below the queue bound --max-queue ${o.maxQueue}`);
  return o;
}

const CLI = join(process.cwd(), 'dist', 'src', 'cli.js');

/** Start `halfstep serve` on a free loopback port; resolves with its URL. */
function serve(dir: string, extra: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, 'serve', dir, '--port', '0', '--host', '127.0.0.1', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`halfstep serve did not start in 60 s: ${out}${err}`)), 60_000);
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`halfstep serve exited (${code}): ${out}${err}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

/** Sum and count of halfstep_batch_size for a tier, from /metrics. */
async function batchStats(url: string, tier: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (k: string) => Number(new RegExp(`^halfstep_batch_size_${k}\\{tier="${tier}"\\} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? 0);
  return { sum: get('sum'), count: get('count') };
}

interface Row {
  tier: string;
  batching: boolean;
  concurrency: number;
  requests: number;
  reqPerSec: number;
  samplesPerSec: number;
  p50: number;
  p99: number;
  meanBatch: number;
  failed: number;
}

async function cell(url: string, tier: string, batching: boolean, c: number, o: Options): Promise<Row> {
  const body = JSON.stringify({ tier, n: o.n, seed: 1, format: o.format });
  const before = await batchStats(url, tier);
  const r = await autocannon({
    url: `${url}/v1/generate`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: c,
    pipelining: 1,
    duration: o.duration,
    timeout: 30,
  });
  const after = await batchStats(url, tier);
  const batches = after.count - before.count;
  const ok = r['2xx'];
  return {
    tier,
    batching,
    concurrency: c,
    requests: r.requests.total,
    reqPerSec: ok / o.duration,
    samplesPerSec: (ok * o.n) / o.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    meanBatch: batches > 0 ? (after.sum - before.sum) / batches : 0,
    failed: r.errors + r.timeouts + r.non2xx,
  };
}

function table(rows: Row[]): string {
  const head = ['tier', 'batching', 'conc.', 'req/s', 'samples/s', 'p50 ms', 'p99 ms', 'mean batch', 'failed'];
  const body = rows.map((r) => [r.tier, r.batching ? 'on' : 'off', String(r.concurrency), r.reqPerSec.toFixed(0), r.samplesPerSec.toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1), r.meanBatch.toFixed(1), String(r.failed)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((x, i) => (i < 2 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join(' | ')} |`;
  return [line(head), `| ${w.map((n, i) => (i < 2 ? '-'.repeat(n) : `${'-'.repeat(n - 1)}:`)).join(' | ')} |`, ...body.map(line)].join('\n');
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  let dir = o.dir;
  if (!dir) {
    const tmp = mkdtempSync(join(tmpdir(), 'halfstep-serve-load-'));
    process.stderr.write(`no DIR given: running the tiny test recipe into ${tmp}/run …\n`);
    const r = spawnSync(process.execPath, [CLI, 'run', 'test/fixtures/tiny.yaml', '--out', join(tmp, 'run'), '--set', `data.path=${join(tmp, 'moons.arrow')}`, '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error('the tiny run failed');
    dir = join(tmp, 'run');
  }
  const rows: Row[] = [];
  let models: { tier: string; id: string; kind: string; data_shape: number[] }[] = [];
  for (const batching of [true, false]) {
    const extra = ['--max-queue', String(o.maxQueue), '--max-wait-ms', String(o.maxWaitMs), '--threads', String(o.threads), ...(batching ? [] : ['--no-batching'])];
    const { url, child } = await serve(dir, extra);
    try {
      models = ((await (await fetch(`${url}/v1/models`)).json()) as { models: typeof models }).models;
      const tiers = o.tiers ?? models.map((m) => m.tier);
      for (const tier of tiers) {
        // warm-up (not counted): the JIT, onnxruntime's first runs at each batch size
        await cell(url, tier, batching, Math.max(...o.concurrency), { ...o, duration: Math.min(1, o.duration) });
        for (const c of o.concurrency) {
          const row = await cell(url, tier, batching, c, o);
          rows.push(row);
          process.stderr.write(`  ${tier} batching ${batching ? 'on' : 'off'} c=${c}: ${row.reqPerSec.toFixed(0)} req/s, p50 ${row.p50.toFixed(1)} ms, p99 ${row.p99.toFixed(1)} ms\n`);
        }
      }
    } finally {
      await stop(child);
    }
  }
  rows.sort((a, b) => a.tier.localeCompare(b.tier, undefined, { numeric: true }) || Number(b.batching) - Number(a.batching) || a.concurrency - b.concurrency);
  const failed = rows.reduce((s, r) => s + r.failed, 0);
  const what = models.map((m) => `${m.tier} = ${m.id} (${m.kind}, [${m.data_shape.join(', ')}])`).join('; ');
  process.stdout.write(
    `halfstep serve ${dir}: ${what}\n` +
      `POST /v1/generate n=${o.n} format=${o.format}; ${o.duration} s per cell; batching on = up to 64 samples, max wait ${o.maxWaitMs} ms; ` +
      `queue bound ${o.maxQueue}; ${o.threads} onnxruntime thread(s) per model; node ${process.version}\n\n${table(rows)}\n\n` +
      (failed === 0 ? 'no failed requests (all concurrencies are below the queue bound)\n' : `FAILED: ${failed} requests failed below the queue bound\n`),
  );
  if (o.json) writeFileSync(o.json, JSON.stringify({ dir, options: o, models, rows }, null, 2));
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`serve-load: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
