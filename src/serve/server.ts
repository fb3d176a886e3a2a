/**
 * `halfstep serve`'s HTTP server (fastify): routes, JSON-schema validation, error answers, metrics.
 *
 *   POST /v1/generate   {tier | steps, n, seed?, format?, layout?} → PNG / .npy / JSON samples
 *   POST /v1/noise      {tier | steps, n, seed}  → the request's noise, float32 little-endian
 *   GET  /v1/models     tiers, steps, metadata, limits
 *   GET  /v1/models/:id/model.onnx   an exported file, as it is
 *   GET  /v1/models/:id/browser.onnx its float32 variant for onnxruntime-web (the page runs the fastest tier in the browser)
 *   GET  /healthz, GET /metrics (Prometheus text), GET / (the web page), GET /ort/* (onnxruntime-web)
 *
 * Noise comes from halfstep's Rng seeded per request (the same as `halfstep sample --onnx --seed`),
 * so a seed gives the same samples whatever batch the request ran in. Never prints.
 */
import { randomInt } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { HalfstepError, RequestError, ServeError, QueueFullError } from '../errors.js';
import { Rng } from '../rng.js';
import { VERSION } from '../version.js';
import { float32Variant, ModelSet, modelFileName, type ServedModel } from './models.js';
import { encode, FORMATS, LAYOUTS, pngAvailable, type Format, type Layout } from './output.js';
import { pageHtml } from './page.js';
import { Scheduler, SCHEDULER_DEFAULTS, type Clock, type SchedulerOptions } from './scheduler.js';

const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);

/**
 * fastify, loaded when a server is built: the CLI bundles leave it out (scripts/build.mjs), and the
 * GPU machine's bundle runs without node_modules, so a static import would stop every command there.
 */
function loadFastify(): typeof import('fastify').default {
  try {
    const m = req('fastify') as typeof import('fastify').default & { default?: typeof import('fastify').default };
    return m.default ?? m;
  } catch (e) {
    throw new HalfstepError(`halfstep serve needs the npm package fastify, which could not be loaded here: ${(e as Error).message.split('\n')[0]}`);
  }
}

export interface ServeOptions extends SchedulerOptions {
  host: string;
  port: number;
  /** Largest n of one request. */
  maxN: number;
  /** Largest request body, in bytes. */
  bodyLimit: number;
  /** onnxruntime intra-op threads of each model's session. */
  threads: number;
}

export const SERVE_DEFAULTS: ServeOptions = { ...SCHEDULER_DEFAULTS, host: '127.0.0.1', port: 8080, maxN: 64, bodyLimit: 16 * 1024, threads: 1 };

export interface RunningServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  app: FastifyInstance;
  models: ModelSet;
  scheduler: Scheduler<BatchItem, Float32Array>;
  /** Stop taking requests, answer those in flight, stop the model workers. Idempotent. */
  close(): Promise<void>;
}

/** One request's share of a batch. */
export interface BatchItem {
  model: ServedModel;
  noise: Float32Array;
  n: number;
}

interface GenerateBody {
  tier?: string;
  steps?: number;
  n: number;
  seed?: number;
  format: Format;
  layout: Layout;
}

/** Load the models under `source` and listen. */
export async function startServer(source: string, options: Partial<ServeOptions> = {}, clock?: Clock): Promise<RunningServer> {
  const o: ServeOptions = { ...SERVE_DEFAULTS, ...options };
  const models = await ModelSet.load(source, o.threads);
  try {
    const s = buildServer(models, o, clock);
    await s.app.listen({ host: o.host, port: o.port });
    const a = s.app.server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { ...s, url: `http://${host}:${a.port}` };
  } catch (e) {
    await models.close();
    throw e;
  }
}

/** Run one batch: the requests' noise concatenated, one call to the model's worker, split again. */
async function runBatch(_lane: string, items: BatchItem[]): Promise<Float32Array[]> {
  const m = items[0]!.model;
  if (items.length === 1) return [await m.sample(items[0]!.noise, items[0]!.n)];
  const total = items.reduce((s, it) => s + it.n, 0);
  const noise = new Float32Array(total * m.dim);
  let at = 0;
  for (const it of items) {
    noise.set(it.noise, at);
    at += it.noise.length;
  }
  const out = await m.sample(noise, total);
  at = 0;
  return items.map((it) => {
    const part = out.subarray(at, at + it.n * m.dim);
    at += it.n * m.dim;
    return part;
  });
}

export function buildServer(models: ModelSet, o: ServeOptions, clock?: Clock): Omit<RunningServer, 'url'> {
  const metrics = createMetrics(models, o, { depth: (tier) => scheduler.depth(tier), inFlight: () => scheduler.inFlight() });
  const scheduler = new Scheduler<BatchItem, Float32Array>(runBatch, o, clock, (b) => {
    metrics.batchSize.observe({ tier: b.lane }, b.size);
    metrics.batchRequests.observe({ tier: b.lane }, b.requests);
    metrics.inference.observe({ tier: b.lane }, b.runMs / 1000);
  });

  const app = loadFastify()({
    logger: false,
    bodyLimit: o.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // no type coercion and no silent removal of unknown fields: wrong types and unknown fields are 400s
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
  });
  // JSON only: a text/plain body is a 400 naming the content type, not a string that fails the schema
  app.removeContentTypeParser('text/plain');
  const tierOf = new WeakMap<FastifyRequest, string>();

  const tiers = models.tierNames();
  const steps = models.models.map((m) => m.steps);
  const select = {
    tier: { type: 'string', enum: tiers },
    steps: { type: 'integer', enum: steps },
    n: { type: 'integer', minimum: 1, maximum: o.maxN },
    seed: { type: 'integer', minimum: 0, maximum: 0xffffffff },
  };
  const generateSchema = {
    type: 'object',
    additionalProperties: false,
    required: ['n'],
    properties: { ...select, format: { type: 'string', enum: [...FORMATS], default: 'png' }, layout: { type: 'string', enum: [...LAYOUTS], default: 'grid' } },
  };
  const noiseSchema = { type: 'object', additionalProperties: false, required: ['n', 'seed'], properties: select };

  /** The model a request names with `tier` or `steps` (exactly one of them). */
  const pick = (b: { tier?: string; steps?: number }): ServedModel => {
    if (b.tier !== undefined && b.steps !== undefined) throw new RequestError('steps', 'give "tier" or "steps", not both');
    if (b.tier === undefined && b.steps === undefined) throw new RequestError('tier', `give "tier" (one of ${tiers.join(', ')}) or "steps" (one of ${steps.join(', ')})`);
    const m = b.tier !== undefined ? models.byTier(b.tier) : models.bySteps(b.steps!);
    if (!m) throw new RequestError(b.tier !== undefined ? 'tier' : 'steps', 'no such model'); // the schema's enum rules this out
    return m;
  };

  let closing: Promise<void> | null = null;
  app.addHook('onSend', async (_req, reply, payload) => {
    // while draining, answers close their connection: a keep-alive socket would hold the process open
    if (closing) reply.header('connection', 'close');
    // cross-origin isolation: onnxruntime-web may then use threads (SharedArrayBuffer) in the page
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-embedder-policy', 'require-corp');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.url !== '/v1/generate') return;
    const tier = tierOf.get(request) ?? 'none';
    metrics.requests.inc({ tier, code: String(reply.statusCode) });
    if (tier !== 'none') metrics.latency.observe({ tier, code: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError, request, reply) => errorReply(err, request, reply));
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });

  app.post('/v1/generate', { schema: { body: generateSchema } }, async (request, reply) => {
    const t0 = performance.now();
    const b = request.body as GenerateBody;
    const m = pick(b);
    tierOf.set(request, m.tier);
    if (b.format === 'png' && b.layout === 'each' && m.info.dataShape.length !== 3) throw new RequestError('layout', 'layout "each" (one PNG per sample) is for images; vector samples are drawn as one scatter plot');
    const seed = b.seed ?? randomInt(0, 2 ** 32);
    const noise = new Rng(seed).normals(b.n * m.dim);
    const served = await scheduler.submit(m.tier, { model: m, noise, n: b.n }, b.n);
    metrics.queueWait.observe({ tier: m.tier }, served.queuedMs / 1000);
    const meta = { model: m.id, tier: m.tier, steps: m.steps, seed };
    const title = `${m.id}: ${m.steps} step${m.steps === 1 ? '' : 's'}, seed ${seed}`;
    const body = await encode({ values: served.output, n: b.n, shape: m.info.dataShape, range: m.info.range, title }, b.format, b.layout, meta);
    const total = performance.now() - t0;
    return reply
      .type(body.contentType)
      .header('x-halfstep-model', m.id)
      .header('x-halfstep-tier', m.tier)
      .header('x-halfstep-steps', String(m.steps))
      .header('x-halfstep-seed', String(seed))
      .header('x-halfstep-shape', JSON.stringify([b.n, ...m.info.dataShape]))
      .header('x-halfstep-latency-ms', total.toFixed(3))
      .header('x-halfstep-queue-ms', served.queuedMs.toFixed(3))
      .header('x-halfstep-inference-ms', served.runMs.toFixed(3))
      .header('x-halfstep-batch-size', String(served.batchSize))
      .header('x-halfstep-batch-requests', String(served.batchRequests))
      .header('server-timing', `queue;dur=${served.queuedMs.toFixed(2)}, inference;dur=${served.runMs.toFixed(2)}, total;dur=${total.toFixed(2)}`)
      .send(body.body);
  });

  app.post('/v1/noise', { schema: { body: noiseSchema } }, async (request, reply) => {
    const b = request.body as { tier?: string; steps?: number; n: number; seed: number };
    const m = pick(b);
    const noise = new Rng(b.seed).normals(b.n * m.dim);
    return reply
      .type('application/octet-stream')
      .header('x-halfstep-shape', JSON.stringify([b.n, ...m.info.dataShape]))
      .send(Buffer.from(noise.buffer, noise.byteOffset, noise.byteLength));
  });

  app.get('/v1/models', async () => ({
    version: VERSION,
    models: models.models.map((m) => ({
      id: m.id,
      tier: m.tier,
      aliases: models.aliasesOf(m.tier),
      steps: m.steps,
      kind: m.info.kind,
      data_shape: m.info.dataShape,
      range: m.info.range,
      dataset: m.info.dataset,
      parameterization: m.info.parameterization,
      recipe_hash: m.info.recipeHash,
      exported_by: m.info.version,
      formats: FORMATS.filter((f) => f !== 'png' || pngAvailable(m.info.dataShape)),
      onnx_url: `/v1/models/${encodeURIComponent(m.id)}/model.onnx`,
      browser_onnx_url: `/v1/models/${encodeURIComponent(m.id)}/browser.onnx`,
      onnx_file: modelFileName(m),
    })),
    tiers: Object.fromEntries([...models.models.map((m) => [m.tier, m.id]), ...Object.entries(models.aliases)]),
    limits: { max_n: o.maxN, max_batch_size: o.maxBatchSize, max_wait_ms: o.maxWaitMs, max_queue: o.maxQueue, timeout_ms: o.timeoutMs, batching: o.batching, body_limit_bytes: o.bodyLimit },
    browser_runtime: ortWeb.files.size > 0 ? '/ort/ort.webgpu.min.mjs' : null,
  }));

  const modelFile = async (request: FastifyRequest, reply: FastifyReply, browser: boolean) => {
    const id = (request.params as { id: string }).id;
    const m = models.byId(id);
    if (!m) return reply.code(404).send({ error: 'not_found', field: 'id', message: `no model "${id}"; models: ${models.models.map((x) => x.id).join(', ')}` });
    const bytes = await readFile(m.found.file);
    return reply.type('application/octet-stream').send(browser ? Buffer.from(float32Variant(bytes)) : bytes);
  };
  app.get('/v1/models/:id/model.onnx', (request, reply) => modelFile(request, reply, false));
  app.get('/v1/models/:id/browser.onnx', (request, reply) => modelFile(request, reply, true));

  app.get('/healthz', async (_request, reply) => {
    const draining = scheduler.isDraining;
    return reply.code(draining ? 503 : 200).send({ status: draining ? 'draining' : 'ok', tiers: models.models.map((m) => m.tier), queue_depth: scheduler.depth(), batches_in_flight: scheduler.inFlight() });
  });

  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(pageHtml()));
  app.get('/favicon.ico', async (_request, reply) => reply.code(204).send());

  const ortWeb = onnxruntimeWebFiles();
  app.get('/ort/:file', async (request, reply) => {
    const file = (request.params as { file: string }).file;
    const path = ortWeb.files.get(file);
    if (!path) return reply.code(404).send({ error: 'not_found', field: 'file', message: ortWeb.files.size ? `no onnxruntime-web file "${file}"` : 'onnxruntime-web is not installed on this server' });
    return reply
      .type(file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=3600')
      .send(await readFile(path));
  });

  const close = () => {
    closing ??= (async () => {
      await Promise.all([scheduler.drain(), app.close()]);
      app.server.closeAllConnections();
      await models.close();
    })();
    return closing;
  };
  return { app, models, scheduler, close };
}

/** The files of onnxruntime-web's dist/ the page may load (its ES modules and WebAssembly), by name. */
function onnxruntimeWebFiles(): { files: Map<string, string> } {
  const files = new Map<string, string>();
  try {
    const dist = dirname(req.resolve('onnxruntime-web'));
    for (const f of readdirSync(dist)) if (/^ort[\w.-]*\.(mjs|wasm)$/.test(f)) files.set(f, join(dist, f));
  } catch {
    // not installed: the page runs nothing in the browser and says so
  }
  return { files };
}

/** Every error as JSON: {error, message, field?}; a field is named wherever one is at fault. */
function errorReply(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (err.validation && err.validation.length > 0) {
    const { field, message } = describeValidation(err.validation[0]!, request.body);
    reply.code(400).send({ error: 'invalid_request', field, message });
    return;
  }
  if (err instanceof ServeError) {
    if (err instanceof QueueFullError) reply.header('retry-after', String(err.retryAfterSeconds));
    const code = err.status === 400 ? 'invalid_request' : err.status === 503 ? (err instanceof QueueFullError ? 'queue_full' : 'shutting_down') : err.status === 504 ? 'timeout' : err.status === 501 ? 'not_implemented' : 'error';
    reply.code(err.status).send({ error: code, ...(err.field ? { field: err.field } : {}), message: err.message });
    return;
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      reply.code(400).send({ error: 'body_too_large', field: 'body', message: `the request body is larger than ${reply.server.initialConfig.bodyLimit} bytes` });
      return;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      reply.code(400).send({ error: 'unsupported_media_type', field: 'content-type', message: `send the body as application/json; got ${request.headers['content-type'] ?? 'no content type'}` });
      return;
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      reply.code(400).send({ error: 'invalid_request', field: 'body', message: 'the body is empty; send a JSON object' });
      return;
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    // malformed JSON and other framework-level request errors
    const message = err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'the body is not valid JSON' : err.message;
    reply.code(err.statusCode).send({ error: 'invalid_request', field: 'body', message });
    return;
  }
  reply.code(500).send({ error: 'internal', message: err.message });
}

interface AjvError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

function describeValidation(e: AjvError, body: unknown): { field: string; message: string } {
  const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const value = path && body && typeof body === 'object' ? (body as Record<string, unknown>)[path.split('.')[0]!] : undefined;
  const got = value === undefined ? '' : `; got ${JSON.stringify(value)}`;
  switch (e.keyword) {
    case 'required':
      return { field: String(e.params.missingProperty), message: `"${String(e.params.missingProperty)}" is required` };
    case 'additionalProperties':
      return { field: String(e.params.additionalProperty), message: `unknown field "${String(e.params.additionalProperty)}"` };
    case 'enum':
      return { field: path, message: `"${path}" must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${got}` };
    case 'type':
      return path ? { field: path, message: `"${path}" must be of type ${String(e.params.type)}${got}` } : { field: 'body', message: 'the body must be a JSON object' };
    case 'minimum':
    case 'maximum':
      return { field: path, message: `"${path}" must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(e.params.limit)}${got}` };
    default:
      return { field: path || 'body', message: `${path ? `"${path}" ` : 'the body '}${e.message ?? 'is invalid'}${got}` };
  }
}

interface Metrics {
  registry: Registry;
  requests: Counter<'tier' | 'code'>;
  latency: Histogram<'tier' | 'code'>;
  queueWait: Histogram<'tier'>;
  inference: Histogram<'tier'>;
  batchSize: Histogram<'tier'>;
  batchRequests: Histogram<'tier'>;
  queueDepth: Gauge<'tier'>;
  inFlight: Gauge;
}

const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

function createMetrics(models: ModelSet, o: ServeOptions, live: { depth: (tier: string) => number; inFlight: () => number }): Metrics {
  const registry = new Registry();
  const sizes: number[] = [];
  for (let s = 1; s < o.maxBatchSize; s *= 2) sizes.push(s);
  sizes.push(o.maxBatchSize);
  const m: Metrics = {
    registry,
    requests: new Counter({ name: 'halfstep_requests_total', help: 'POST /v1/generate requests answered, by tier and HTTP status ("none": no valid tier)', labelNames: ['tier', 'code'], registers: [registry] }),
    latency: new Histogram({ name: 'halfstep_request_duration_seconds', help: 'POST /v1/generate time from request to response, by tier and HTTP status', labelNames: ['tier', 'code'], buckets: SECONDS, registers: [registry] }),
    queueWait: new Histogram({ name: 'halfstep_queue_wait_seconds', help: 'time a request waited for its batch to start, by tier', labelNames: ['tier'], buckets: SECONDS, registers: [registry] }),
    inference: new Histogram({ name: 'halfstep_batch_duration_seconds', help: 'time one batch took in onnxruntime, by tier', labelNames: ['tier'], buckets: SECONDS, registers: [registry] }),
    batchSize: new Histogram({ name: 'halfstep_batch_size', help: 'samples per batch, by tier', labelNames: ['tier'], buckets: sizes, registers: [registry] }),
    batchRequests: new Histogram({ name: 'halfstep_batch_requests', help: 'requests merged into one batch, by tier', labelNames: ['tier'], buckets: sizes, registers: [registry] }),
    queueDepth: new Gauge({
      name: 'halfstep_queue_depth',
      help: 'requests waiting for a batch, by tier',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        for (const x of models.models) this.set({ tier: x.tier }, live.depth(x.tier));
      },
    }),
    inFlight: new Gauge({
      name: 'halfstep_batches_in_flight',
      help: 'batches running now (over all tiers)',
      registers: [registry],
      collect() {
        this.set(live.inFlight());
      },
    }),
  };
  const info = new Gauge({ name: 'halfstep_model_info', help: 'the served models (value 1)', labelNames: ['tier', 'model', 'steps', 'kind'], registers: [registry] });
  for (const x of models.models) {
    info.set({ tier: x.tier, model: x.id, steps: String(x.steps), kind: x.info.kind }, 1);
    m.queueDepth.set({ tier: x.tier }, 0);
  }
  return m;
}
