import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { initBackend } from '../src/backend.js';
import { QueueFullError, RequestTimeoutError, ShuttingDownError } from '../src/errors.js';
import { ExportedModel, sampleExported } from '../src/export/onnxfile.js';
import { OnnxGraphBuilder } from '../src/onnx/graph.js';
import { encodeModel, onnx as onnxProto } from '../src/onnx/proto.js';
import { Rng } from '../src/rng.js';
import { findModels } from '../src/serve/models.js';
import { Scheduler, type Clock, type SchedulerOptions } from '../src/serve/scheduler.js';
import { startServer, type RunningServer } from '../src/serve/server.js';
import { optionalSharp } from '../src/native.js';
import { VERSION } from '../src/version.js';
import { cli, tinyArgs, tmp } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// the scheduler, on a fake clock with a runner the test resolves by hand

class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  /** Move time on, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
  }
}

interface Call {
  lane: string;
  items: string[];
  resolve: (outs: string[]) => void;
  reject: (e: Error) => void;
}

function fakeScheduler(o: Partial<SchedulerOptions> = {}) {
  const clock = new FakeClock();
  const calls: Call[] = [];
  const batches: { lane: string; size: number; requests: number; ok: boolean }[] = [];
  const s = new Scheduler<string, string>(
    (lane, items) => new Promise((resolve, reject) => calls.push({ lane, items, resolve, reject })),
    { maxBatchSize: 4, maxWaitMs: 10, maxQueue: 8, timeoutMs: 1000, batching: true, ...o },
    clock,
    (b) => batches.push(b),
  );
  /** Resolve a call with outputs named after the items. */
  const finish = (c: Call) => c.resolve(c.items.map((i) => `out:${i}`));
  return { s, clock, calls, batches, finish };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('Scheduler', () => {
  test('merges requests of a lane up to maxBatchSize samples, at once when full', async () => {
    const { s, calls, finish } = fakeScheduler();
    const a = s.submit('1step', 'a', 2);
    const b = s.submit('1step', 'b', 2);
    const c = s.submit('1step', 'c', 1);
    expect(calls.map((x) => x.items)).toEqual([['a', 'b']]);
    expect(s.depth('1step')).toBe(1);
    finish(calls[0]!);
    const ra = await a;
    expect(ra).toMatchObject({ output: 'out:a', batchSize: 4, batchRequests: 2, queuedMs: 0 });
    expect((await b).output).toBe('out:b');
    await flush();
    // the lane is idle again and c has not waited maxWaitMs yet
    expect(calls).toHaveLength(1);
    expect(s.depth()).toBe(1);
    void c;
  });

  test('an idle lane waits maxWaitMs for a batch to fill, then runs what it has', async () => {
    const { s, clock, calls, finish } = fakeScheduler();
    const a = s.submit('2step', 'a', 1);
    clock.advance(5);
    const b = s.submit('2step', 'b', 1);
    clock.advance(4);
    expect(calls).toHaveLength(0);
    clock.advance(1);
    expect(calls.map((x) => x.items)).toEqual([['a', 'b']]);
    finish(calls[0]!);
    expect(await a).toMatchObject({ queuedMs: 10, batchRequests: 2, batchSize: 2 });
    expect((await b).queuedMs).toBe(5);
  });

  test('requests arriving while a batch runs form the next batch; a request larger than the batch runs alone', async () => {
    const { s, clock, calls, finish } = fakeScheduler();
    const big = s.submit('x', 'big', 9);
    expect(calls.map((c) => c.items)).toEqual([['big']]);
    const rest = ['a', 'b', 'c', 'd', 'e'].map((i) => s.submit('x', i, 1));
    clock.advance(50);
    expect(calls).toHaveLength(1); // one batch per lane at a time
    finish(calls[0]!);
    expect((await big).batchSize).toBe(9);
    await flush();
    expect(calls.map((c) => c.items)).toEqual([['big'], ['a', 'b', 'c', 'd']]);
    finish(calls[1]!);
    await flush();
    expect(calls[2]!.items).toEqual(['e']);
    finish(calls[2]!);
    expect((await Promise.all(rest)).map((r) => r.output)).toEqual(['out:a', 'out:b', 'out:c', 'out:d', 'out:e']);
  });

  test('batching off: every request is a batch of its own', async () => {
    const { s, calls, finish } = fakeScheduler({ batching: false });
    const ps = ['a', 'b', 'c'].map((i) => s.submit('x', i, 1));
    expect(calls.map((c) => c.items)).toEqual([['a']]);
    finish(calls[0]!);
    await flush();
    finish(calls[1]!);
    await flush();
    finish(calls[2]!);
    expect((await Promise.all(ps)).map((r) => r.batchRequests)).toEqual([1, 1, 1]);
    expect(calls.map((c) => c.items)).toEqual([['a'], ['b'], ['c']]);
  });

  test('different lanes run concurrently', () => {
    const { s, clock, calls } = fakeScheduler();
    void s.submit('1step', 'a', 1);
    void s.submit('4step', 'b', 1);
    clock.advance(10);
    expect(calls.map((c) => c.lane).sort()).toEqual(['1step', '4step']);
    expect(s.inFlight()).toBe(2);
  });

  test('a full queue refuses at once with QueueFullError and a Retry-After estimate', async () => {
    const { s, calls, finish } = fakeScheduler({ maxQueue: 2 });
    const first = s.submit('x', 'a', 4); // runs at once: not waiting, not counted
    void s.submit('x', 'b', 1);
    void s.submit('x', 'c', 1);
    const refused = s.submit('x', 'd', 1);
    await expect(refused).rejects.toBeInstanceOf(QueueFullError);
    const e = (await refused.catch((x: unknown) => x)) as QueueFullError;
    expect(e.status).toBe(503);
    expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    finish(calls[0]!);
    await first;
  });

  test('a request past its deadline gets RequestTimeoutError, whether queued or running', async () => {
    const { s, clock, calls, finish } = fakeScheduler({ timeoutMs: 100, maxWaitMs: 0 });
    const running = s.submit('x', 'a', 1);
    const queued = s.submit('x', 'b', 1);
    expect(s.depth()).toBe(1);
    clock.advance(100);
    await expect(running).rejects.toBeInstanceOf(RequestTimeoutError);
    await expect(queued).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(s.depth()).toBe(0);
    // the late result of the running batch is dropped; the lane goes on
    finish(calls[0]!);
    await flush();
    const c = s.submit('x', 'c', 1);
    expect(calls[1]!.items).toEqual(['c']);
    finish(calls[1]!);
    expect((await c).output).toBe('out:c');
  });

  test('a failing batch rejects its requests only; the lane goes on', async () => {
    const { s, calls, finish, batches } = fakeScheduler({ maxWaitMs: 0 });
    const a = s.submit('x', 'a', 1);
    const b = s.submit('x', 'b', 1);
    calls[0]!.reject(new Error('onnxruntime exploded'));
    await expect(a).rejects.toThrow('onnxruntime exploded');
    await flush();
    finish(calls[1]!);
    expect((await b).output).toBe('out:b');
    expect(batches.map((x) => x.ok)).toEqual([false, true]);
  });

  test('drain: no new requests, the queued ones run without waiting, resolves when all are answered', async () => {
    const { s, calls, finish } = fakeScheduler({ maxWaitMs: 1000 });
    const a = s.submit('x', 'a', 1);
    const b = s.submit('y', 'b', 1);
    expect(calls).toHaveLength(0);
    let drained = false;
    const d = s.drain().then(() => (drained = true));
    expect(calls).toHaveLength(2);
    await expect(s.submit('x', 'c', 1)).rejects.toBeInstanceOf(ShuttingDownError);
    finish(calls[0]!);
    await a;
    await flush();
    expect(drained).toBe(false);
    finish(calls[1]!);
    await b;
    await d;
    expect(drained).toBe(true);
  });

  test('rejects nonsensical options', () => {
    expect(() => new Scheduler(async () => [], { maxBatchSize: 0, maxWaitMs: 0, maxQueue: 1, timeoutMs: 1, batching: true })).toThrow(/maxBatchSize/);
  });
});

// ---------------------------------------------------------------------------------------------
// the server, on a loopback port, serving the students of a tiny run

async function post(url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> {
  return fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function json(r: Response): Promise<Record<string, unknown>> {
  return (await r.json()) as Record<string, unknown>;
}

/** The samples `halfstep sample --onnx FILE --seed S --n N` draws: the same Rng noise through the file. */
function reference(file: string, seed: number, n: number): Float32Array {
  const m = new ExportedModel(file);
  return m.sample(new Rng(seed).normals(n * m.info.dataShape.reduce((a, b) => a * b, 1)));
}

/**
 * A halfstep sampler graph for images [4, 4, 1]: sample = tanh(noise). `fragile`: the graph goes
 * through a [-1, 3] reshape, so onnxruntime fails at run time unless n·16 is a multiple of 3.
 */
function imageSampler(dir: string, fragile = false): void {
  const g = new OnnxGraphBuilder('fake_image_sampler');
  const dims = ['batch', 4, 4, 1];
  let x = g.input('noise', dims);
  if (fragile) x = g.op('Reshape', [g.op('Reshape', [x, g.int64([-1, 3])]), g.int64([-1, 4, 4, 1])]);
  g.output(g.op('Tanh', [x]), 'sample', dims);
  const metadata = {
    'halfstep.version': VERSION,
    'halfstep.kind': 'sampler',
    'halfstep.stage': 'student',
    'halfstep.steps': '1',
    'halfstep.sampler_steps': '1',
    'halfstep.parameterization': 'x',
    'halfstep.data_shape': '[4,4,1]',
    'halfstep.data_range': '[-1,1]',
    'halfstep.dataset': 'fake-digits',
    'halfstep.recipe_hash': '0',
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'student-1.sampler.onnx'), encodeModel(g.build({ metadata }), VERSION));
}

function pngSize(b: Uint8Array): { width: number; height: number } {
  const p = PNG.sync.read(Buffer.from(b));
  return { width: p.width, height: p.height };
}

describe('halfstep serve', () => {
  const dir = tmp('halfstep-serve-');
  const run = join(dir, 'run');
  const onnx = (n: number, kind = 'sampler') => join(run, 'onnx', `student-${n}.${kind}.onnx`);
  let s: RunningServer;
  let u: string;

  beforeAll(async () => {
    const r = await cli(['run', ...tinyArgs(dir), '--quiet']);
    expect(r.code).toBe(0);
    // a batching window long enough that concurrent test requests share batches
    s = await startServer(run, { port: 0, maxWaitMs: 25, maxN: 32 });
    u = s.url;
  });
  afterAll(async () => {
    await s?.close();
  });

  test('listens on loopback; GET /healthz', async () => {
    expect(u).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const r = await fetch(`${u}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok', tiers: ['1step', '2step', '4step'], queue_depth: 0, batches_in_flight: 0 });
  });

  test('GET /v1/models: a tier per student, aliases, metadata and limits', async () => {
    const r = await json(await fetch(`${u}/v1/models`));
    const models = r.models as Record<string, unknown>[];
    expect(models.map((m) => [m.id, m.tier, m.steps, m.kind])).toEqual([
      ['student-1', '1step', 1, 'sampler'],
      ['student-2', '2step', 2, 'sampler'],
      ['student-4', '4step', 4, 'sampler'],
    ]);
    expect(models[0]).toMatchObject({ aliases: ['fast'], data_shape: [2], dataset: 'moons', parameterization: 'v', exported_by: VERSION, onnx_url: '/v1/models/student-1/model.onnx' });
    expect(r.tiers).toEqual({ '1step': 'student-1', '2step': 'student-2', '4step': 'student-4', fast: '1step', balanced: '2step', quality: '4step' });
    expect(r.limits).toMatchObject({ max_n: 32, max_batch_size: 64, max_wait_ms: 25, batching: true });
    expect(r.browser_runtime).toBe('/ort/ort.webgpu.min.mjs');
  });

  test('POST /v1/generate json: the samples of `halfstep sample --onnx` for that seed, with headers naming model, steps, latency', async () => {
    const r = await post(`${u}/v1/generate`, { tier: 'quality', n: 5, seed: 11, format: 'json' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-halfstep-model')).toBe('student-4');
    expect(r.headers.get('x-halfstep-steps')).toBe('4');
    expect(r.headers.get('x-halfstep-tier')).toBe('4step');
    expect(r.headers.get('x-halfstep-seed')).toBe('11');
    expect(Number(r.headers.get('x-halfstep-latency-ms'))).toBeGreaterThan(0);
    expect(Number(r.headers.get('x-halfstep-inference-ms'))).toBeGreaterThan(0);
    expect(r.headers.get('server-timing')).toMatch(/inference;dur=/);
    const body = await json(r);
    expect(body).toMatchObject({ model: 'student-4', tier: '4step', steps: 4, seed: 11, shape: [5, 2] });
    expect(new Float32Array(body.data as number[])).toEqual(reference(onnx(4), 11, 5));
  });

  test('"steps" picks the model like "tier"; without a seed the server draws one and says which', async () => {
    const r = await post(`${u}/v1/generate`, { steps: 2, n: 3, format: 'json' });
    expect(r.status).toBe(200);
    const seed = Number(r.headers.get('x-halfstep-seed'));
    expect(Number.isInteger(seed)).toBe(true);
    expect(new Float32Array((await json(r)).data as number[])).toEqual(reference(onnx(2), seed, 3));
  });

  test('the same seed gives the same samples whether the request ran alone or in a batch', async () => {
    const alone = await json(await post(`${u}/v1/generate`, { tier: '1step', n: 3, seed: 7, format: 'json' }));
    const together = await Promise.all([7, 1, 2, 3, 4, 5].map((seed) => post(`${u}/v1/generate`, { tier: '1step', n: 3, seed, format: 'json' })));
    expect(together.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(Math.max(...together.map((r) => Number(r.headers.get('x-halfstep-batch-requests'))))).toBeGreaterThan(1);
    const mine = await json(together[0]!);
    expect(mine.data).toEqual(alone.data);
    // and byte for byte
    const pngs = await Promise.all([0, 1].map(() => post(`${u}/v1/generate`, { tier: '1step', n: 20, seed: 9, format: 'npy' }).then((r) => r.arrayBuffer())));
    expect(Buffer.from(pngs[0]!).equals(Buffer.from(pngs[1]!))).toBe(true);
  });

  test('POST /v1/generate npy: a NumPy array [n, …data shape]', async () => {
    const r = await post(`${u}/v1/generate`, { tier: 'fast', n: 4, seed: 3, format: 'npy' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/octet-stream');
    const b = Buffer.from(await r.arrayBuffer());
    expect(b.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
    const headerLen = b.readUInt16LE(8);
    expect(b.subarray(10, 10 + headerLen).toString('latin1')).toContain("'shape': (4, 2)");
    const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + headerLen, b.byteOffset + b.length));
    expect(data).toEqual(reference(onnx(1), 3, 4));
  });

  test('POST /v1/generate png: a scatter plot of the 2D samples (needs sharp; says so without it)', async () => {
    const r = await post(`${u}/v1/generate`, { tier: 'balanced', n: 32, seed: 1 });
    if (optionalSharp()) {
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('image/png');
      expect(pngSize(new Uint8Array(await r.arrayBuffer())).width).toBeGreaterThan(200);
    } else {
      expect(r.status).toBe(501);
      expect(await json(r)).toMatchObject({ field: 'format', message: expect.stringMatching(/sharp/) });
    }
  });

  test('POST /v1/noise: the noise a seed gives (what the page feeds onnxruntime-web)', async () => {
    const r = await post(`${u}/v1/noise`, { tier: 'fast', n: 3, seed: 5 });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-halfstep-shape')).toBe('[3,2]');
    expect(new Float32Array(await r.arrayBuffer())).toEqual(new Rng(5).normals(6));
    expect((await post(`${u}/v1/noise`, { tier: 'fast', n: 3 })).status).toBe(400);
  });

  test('GET /v1/models/:id/model.onnx serves the exported file', async () => {
    const r = await fetch(`${u}/v1/models/student-1/model.onnx`);
    expect(r.status).toBe(200);
    expect(Buffer.from(await r.arrayBuffer()).equals(readFileSync(onnx(1)))).toBe(true);
    const missing = await fetch(`${u}/v1/models/student-9/model.onnx`);
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ field: 'id' });
  });

  test('GET /v1/models/:id/browser.onnx: the float32 variant for onnxruntime-web, close to the exported file', async () => {
    const r = await fetch(`${u}/v1/models/student-4/browser.onnx`);
    expect(r.status).toBe(200);
    const bytes = new Uint8Array(await r.arrayBuffer());
    const m = onnxProto.ModelProto.decode(bytes);
    expect(m.graph!.initializer!.filter((t) => t.dataType !== 1 && t.dataType !== 7)).toEqual([]);
    expect(m.graph!.node!.filter((n) => n.opType === 'Cast').map((n) => Number(n.attribute![0]!.i))).not.toContain(11);
    expect(m.metadataProps!.find((p) => p.key === 'halfstep.variant')?.value).toMatch(/float32/);
    const variant = new ExportedModel('browser.onnx', bytes);
    const noise = new Rng(3).normals(2 * 256);
    const got = variant.sample(noise.slice());
    const want = new ExportedModel(onnx(4)).sample(noise);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    expect(worst).toBeLessThan(1e-3);
  });

  test('GET / is the page; onnxruntime-web comes from node_modules under /ort/, nothing else does', async () => {
    const page = await fetch(`${u}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    const html = await page.text();
    expect(html).toContain('id="generate"');
    expect(html).not.toMatch(/https?:\/\/(?!127)/); // nothing from the internet
    const mjs = await fetch(`${u}/ort/ort.webgpu.min.mjs`);
    expect(mjs.status).toBe(200);
    expect(mjs.headers.get('content-type')).toMatch(/javascript/);
    const wasm = await fetch(`${u}/ort/ort-wasm-simd-threaded.jsep.wasm`);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect((await fetch(`${u}/ort/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${u}/ort/ort.min.js.map`)).status).toBe(404);
  });

  const bad: [string, unknown, string, RegExp][] = [
    ['unknown tier', { tier: 'turbo', n: 1 }, 'tier', /one of "1step", "2step", "4step", "fast", "quality", "balanced"; got "turbo"/],
    ['unknown steps', { steps: 3, n: 1 }, 'steps', /one of 1, 2, 4; got 3/],
    ['n too large', { tier: 'fast', n: 33 }, 'n', /≤ 32; got 33/],
    ['n zero', { tier: 'fast', n: 0 }, 'n', /≥ 1/],
    ['n not an integer', { tier: 'fast', n: 1.5 }, 'n', /integer/],
    ['n a string', { tier: 'fast', n: '4' }, 'n', /integer; got "4"/],
    ['tier a number', { tier: 1, n: 1 }, 'tier', /string/],
    ['seed negative', { tier: 'fast', n: 1, seed: -1 }, 'seed', /≥ 0/],
    ['seed a string', { tier: 'fast', n: 1, seed: 'x' }, 'seed', /integer/],
    ['unknown format', { tier: 'fast', n: 1, format: 'gif' }, 'format', /"png", "npy", "json"/],
    ['unknown layout', { tier: 'fast', n: 1, layout: 'mosaic' }, 'layout', /"grid", "each"/],
    ['one PNG per sample of vectors', { tier: 'fast', n: 1, layout: 'each' }, 'layout', /images/],
    ['unknown field', { tier: 'fast', n: 1, size: 4 }, 'size', /unknown field "size"/],
    ['n missing', { tier: 'fast' }, 'n', /"n" is required/],
    ['neither tier nor steps', { n: 1 }, 'tier', /give "tier" .* or "steps"/],
    ['both tier and steps', { tier: 'fast', steps: 1, n: 1 }, 'steps', /not both/],
    ['an array', [1, 2], 'body', /JSON object/],
    ['null', 'null', 'body', /JSON object/],
    ['malformed JSON', '{"tier": "fast", n: 1', 'body', /not valid JSON/],
    ['empty body', '', 'body', /empty/],
  ];
  test.each(bad)('400 with the field named: %s', async (_what, body, field, message) => {
    const r = await post(`${u}/v1/generate`, body);
    expect(r.status).toBe(400);
    const e = await json(r);
    expect(e.error).toBe('invalid_request');
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
  });

  test('body too large: 400 naming the body; not JSON: 400 naming the content type; unknown route: 404', async () => {
    const big = await post(`${u}/v1/generate`, JSON.stringify({ tier: 'fast', n: 1, pad: 'x'.repeat(20_000) }));
    expect(big.status).toBe(400);
    expect(await json(big)).toMatchObject({ error: 'body_too_large', field: 'body' });
    const text = await post(`${u}/v1/generate`, 'tier=fast', { 'content-type': 'text/plain' });
    expect(text.status).toBe(400);
    expect(await json(text)).toMatchObject({ field: 'content-type' });
    const form = await post(`${u}/v1/generate`, 'tier=fast&n=1', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(400);
    const none = await fetch(`${u}/v2/generate`);
    expect(none.status).toBe(404);
    expect(await json(none)).toMatchObject({ error: 'not_found' });
    // still serving
    expect((await fetch(`${u}/healthz`)).status).toBe(200);
  });

  test('GET /metrics: Prometheus text with requests, queue depth, batch sizes and latency histograms per tier', async () => {
    await post(`${u}/v1/generate`, { tier: 'fast', n: 2, format: 'json' });
    const r = await fetch(`${u}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await r.text();
    expect(text).toMatch(/^halfstep_requests_total\{tier="1step",code="200"\} \d+$/m);
    expect(text).toMatch(/^halfstep_requests_total\{tier="none",code="400"\} \d+$/m);
    expect(text).toMatch(/^halfstep_request_duration_seconds_bucket\{le="0\.1",tier="4step",code="200"\} \d+$/m);
    expect(text).toMatch(/^halfstep_batch_size_bucket\{le="4",tier="1step"\} \d+$/m);
    expect(text).toMatch(/^halfstep_batch_requests_count\{tier="1step"\} \d+$/m);
    expect(text).toMatch(/^halfstep_queue_wait_seconds_count\{tier="2step"\} \d+$/m);
    expect(text).toMatch(/^halfstep_batch_duration_seconds_sum\{tier="1step"\} [\d.e-]+$/m);
    expect(text).toMatch(/^halfstep_queue_depth\{tier="4step"\} 0$/m);
    expect(text).toMatch(/^halfstep_batches_in_flight 0$/m);
    expect(text).toMatch(/^halfstep_model_info\{tier="1step",model="student-1",steps="1",kind="sampler"\} 1$/m);
  });

  test('a full queue answers 503 with Retry-After; a request past its deadline answers 504', async () => {
    const t = await startServer(run, { port: 0, maxQueue: 1, maxWaitMs: 2000, timeoutMs: 300 });
    try {
      const first = post(`${t.url}/v1/generate`, { tier: 'fast', n: 1, format: 'json' });
      await new Promise((r) => setTimeout(r, 50));
      const second = await post(`${t.url}/v1/generate`, { tier: 'fast', n: 1, format: 'json' });
      expect(second.status).toBe(503);
      expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await json(second)).toMatchObject({ error: 'queue_full' });
      const late = await first;
      expect(late.status).toBe(504);
      expect(await json(late)).toMatchObject({ error: 'timeout', message: expect.stringMatching(/300 ms/) });
      const m = await (await fetch(`${t.url}/metrics`)).text();
      expect(m).toMatch(/halfstep_requests_total\{tier="1step",code="503"\} 1/);
      expect(m).toMatch(/halfstep_requests_total\{tier="1step",code="504"\} 1/);
    } finally {
      await t.close();
    }
  });

  test('serves a Triton model repository written by `halfstep export --triton`', async () => {
    const triton = join(dir, 'triton');
    const r = await cli(['export', run, '--triton', triton, '--device', 'cpu']);
    expect(r.code).toBe(0);
    expect(findModels(triton).map((m) => m.id)).toEqual(['sampler_1step', 'sampler_2step', 'sampler_4step']);
    const t = await startServer(triton, { port: 0 });
    try {
      const g = await post(`${t.url}/v1/generate`, { steps: 4, n: 3, seed: 2, format: 'json' });
      expect(g.headers.get('x-halfstep-model')).toBe('sampler_4step');
      expect(new Float32Array((await json(g)).data as number[])).toEqual(reference(onnx(4), 2, 3));
    } finally {
      await t.close();
    }
  });

  test('a student exported without its unrolled sampler runs its denoiser graph in the DDIM loop', async () => {
    const only = join(dir, 'denoiser-only');
    mkdirSync(only);
    copyFileSync(onnx(4, 'denoiser'), join(only, 'student-4.denoiser.onnx'));
    const t = await startServer(only, { port: 0 });
    try {
      const models = await json(await fetch(`${t.url}/v1/models`));
      expect((models.models as { kind: string }[])[0]!.kind).toBe('denoiser');
      const got = new Float32Array((await json(await post(`${t.url}/v1/generate`, { tier: '4step', n: 6, seed: 4, format: 'json' }))).data as number[]);
      await initBackend('cpu');
      const want = sampleExported(new ExportedModel(onnx(4, 'denoiser')), new Rng(4).normals(12)).samples;
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
      // and the unrolled sampler agrees
      const unrolled = reference(onnx(4), 4, 6);
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(unrolled[i]!, 4);
    } finally {
      await t.close();
    }
  });

  test('image models: a PNG grid, one PNG per sample, .npy [n, H, W, C]', async () => {
    const imgDir = join(dir, 'images');
    imageSampler(imgDir);
    const t = await startServer(imgDir, { port: 0 });
    try {
      const grid = await post(`${t.url}/v1/generate`, { tier: 'fast', n: 6, seed: 1 });
      expect(grid.status).toBe(200);
      expect(grid.headers.get('content-type')).toBe('image/png');
      // 3 columns × 2 rows of 4×4 images at scale 3 with 1-pixel padding
      expect(pngSize(new Uint8Array(await grid.arrayBuffer()))).toEqual({ width: 3 * 13 + 1, height: 2 * 13 + 1 });
      const each = await post(`${t.url}/v1/generate`, { tier: 'fast', n: 3, seed: 1, format: 'png', layout: 'each' });
      expect(each.status).toBe(200);
      const body = await json(each);
      expect(body.shape).toEqual([3, 4, 4, 1]);
      const images = body.images as string[];
      expect(images).toHaveLength(3);
      for (const b64 of images) expect(pngSize(Buffer.from(b64, 'base64'))).toEqual({ width: 12, height: 12 });
      // pixel (0, 0) of image 0 is tanh of the first noise value, mapped from [-1, 1] to 0..255
      const px = PNG.sync.read(Buffer.from(images[0]!, 'base64')).data[0]!;
      expect(px).toBe(Math.round(((Math.tanh(new Rng(1).normals(1)[0]!) + 1) / 2) * 255));
      const npy = Buffer.from(await (await post(`${t.url}/v1/generate`, { tier: 'fast', n: 2, seed: 1, format: 'npy' })).arrayBuffer());
      expect(npy.toString('latin1', 10, 80)).toContain("'shape': (2, 4, 4, 1)");
    } finally {
      await t.close();
    }
  });

  test('an inference error answers 500 with JSON; the server goes on serving', async () => {
    const fragile = join(dir, 'fragile');
    imageSampler(fragile, true);
    const t = await startServer(fragile, { port: 0 });
    try {
      const r = await post(`${t.url}/v1/generate`, { tier: 'fast', n: 1, format: 'npy' });
      expect(r.status).toBe(500);
      expect(await json(r)).toMatchObject({ error: 'internal', message: expect.stringMatching(/student-1: inference failed/) });
      expect((await post(`${t.url}/v1/generate`, { tier: 'fast', n: 3, format: 'npy' })).status).toBe(200);
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  test('a folder without exports is a UsageError that says what to do', async () => {
    await expect(startServer(dir, { port: 0 })).rejects.toThrow(/no exported models.*halfstep export/);
    await expect(startServer(join(dir, 'nope'), { port: 0 })).rejects.toThrow(/no such folder/);
  });

  test('`halfstep serve` (the built binary): prints the address; SIGTERM answers the request in flight, then exits 0', async () => {
    const child = spawn(process.execPath, ['dist/src/cli.js', 'serve', run, '--port', '0', '--max-wait-ms', '600'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('close', () => reject(new Error(`serve exited early: ${out}${err}`)));
    });
    expect(out).toMatch(/1step \(fast\): student-1, sampler graph/);
    // this request waits 600 ms for its batch to fill: SIGTERM arrives while it is queued
    const inFlight = post(`${url}/v1/generate`, { tier: 'fast', n: 2, seed: 1, format: 'json' });
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGTERM');
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(new Float32Array((await json(r)).data as number[])).toEqual(reference(onnx(1), 1, 2));
    expect(await exited).toBe(0);
    expect(out).toMatch(/draining \(1 queued, 0 batches running\)\n.*stopped/s);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
