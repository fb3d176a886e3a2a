/**
 * halfstep's benchmark against PyTorch, side by side in one command:
 *
 *   npm run bench -- --device cpu|gpu [--json FILE] [--workloads mlp,unet] [--python PATH] [--quick]
 *
 * For each workload (halfstep's own MLP and UNet denoisers), halfstep initialises the network, writes
 * the initial weights and a few fixed batches to a temp folder, and bench/torch_ref.py builds the
 * identical network in PyTorch from them. Both train on the same batches with the same loss
 * (v-parameterization, SNR+1 weights), global-norm clipping, Adam and EMA; the losses of the first
 * steps must agree before any time is taken. Then both time training steps and DDIM sampling at 1, 4
 * and 64 steps. Ratio = halfstep time / PyTorch time (lower is better; 1 = parity).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { encodeNpy } from '../src/data/npy.js';
import { createNetwork } from '../src/model/index.js';
import { denoiser } from '../src/model/network.js';
import { Adam, cloneParams } from '../src/optim.js';
import { ParamSet } from '../src/model/params.js';
import { parseRecipe, type Recipe } from '../src/recipe.js';
import { Rng } from '../src/rng.js';
import { sample } from '../src/sampler.js';
import { lossWeight, noise as noiseOf, predictX, scheduleTensors, weightedXLoss } from '../src/diffusion.js';
import { logsnr } from '../src/schedule.js';

type Device = 'cpu' | 'gpu';

interface Workload {
  name: string;
  network: 'mlp' | 'unet';
  dataShape: number[];
  model: string;
  batch: number;
  sampleBatch: number;
}

/** The workloads: the MLP at a size where compute matters (784-d vectors, as a flattened MNIST digit) and the UNet of recipes/mnist.yaml. */
function workloads(device: Device, quick: boolean): Workload[] {
  return [
    { name: 'mlp', network: 'mlp', dataShape: [784], model: 'type: mlp\n  mlp: { hidden: 512, blocks: 2, emb_dim: 64 }', batch: 256, sampleBatch: 256 },
    {
      name: 'unet',
      network: 'unet',
      dataShape: [28, 28, 1],
      model: 'type: unet\n  unet: { channels: 32, channel_mults: [1, 2, 2], num_res_blocks: 1, attention_resolutions: [7], groups: 8, emb_dim: 64 }',
      batch: device === 'gpu' ? 128 : quick ? 16 : 64,
      sampleBatch: device === 'gpu' ? 256 : quick ? 16 : 64,
    },
  ];
}

export interface BenchRow {
  workload: string;
  /** ms per training step, or ms per batch of samples. */
  halfstep: number;
  torch: number;
  ratio: number;
  unit: string;
  detail: string;
}

function args(): { device: Device; json: string | null; only: string[] | null; python: string | null; quick: boolean; backend: string | null } {
  const a = process.argv.slice(2);
  const get = (k: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? (a[i + 1] ?? null) : null;
  };
  const device = (get('--device') ?? 'cpu') as Device;
  if (device !== 'cpu' && device !== 'gpu') throw new Error(`--device expects cpu or gpu; got ${device}`);
  return { device, json: get('--json'), only: get('--workloads')?.split(',') ?? null, python: get('--python'), quick: a.includes('--quick'), backend: get('--backend') };
}

/** A Python with torch: --python, then python3 on PATH, then Debian's /usr/bin/python3. */
function findPython(given: string | null): string {
  for (const p of given ? [given] : ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(p, ['-c', 'import torch, numpy'], { stdio: 'ignore' });
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error(
    'no Python with torch and numpy found. On Debian: `apt-get install -y python3-torch libopenblas0-pthread` (then /usr/bin/python3 has them); or pass --python PATH',
  );
}

async function runWorkload(w: Workload, device: Device, quick: boolean, python: string): Promise<BenchRow[]> {
  const recipe: Recipe = parseRecipe(`name: bench\ndata: { path: none.arrow, generate: {} }\nmodel:\n  ${w.model}\n  parameterization: v\n`);
  const net = createNetwork(recipe.model, w.dataShape);
  const params = net.init(new Rng(1));
  const dir = mkdtempSync(join(tmpdir(), `halfstep-bench-${w.name}-`));
  const manifestParams: { name: string; file: string; kind: string }[] = [];
  for (const p of params.list) {
    const file = `p_${manifestParams.length}.npy`;
    writeFileSync(join(dir, file), encodeNpy((await p.variable.data()) as Float32Array, p.variable.shape));
    manifestParams.push({ name: p.name, file, kind: p.variable.rank === 4 ? 'conv' : 'dense' });
  }
  // fixed batches: data-like x in [-1, 1], noise, and log-SNRs of u ~ U[0, 1]
  const rng = new Rng(7);
  const D = w.dataShape.reduce((a, b) => a * b, 1);
  const K = 3;
  const batches = [];
  const tensors: { x: tf.Tensor; eps: tf.Tensor; l: Float32Array }[] = [];
  for (let k = 0; k < K; k++) {
    const x = rng.normals(w.batch * D).map((v) => Math.tanh(v));
    const eps = rng.normals(w.batch * D);
    const l = Float32Array.from({ length: w.batch }, () => logsnr(rng.uniform()));
    const shape = [w.batch, ...w.dataShape];
    writeFileSync(join(dir, `x${k}.npy`), encodeNpy(x, shape));
    writeFileSync(join(dir, `eps${k}.npy`), encodeNpy(eps, shape));
    writeFileSync(join(dir, `l${k}.npy`), encodeNpy(l, [w.batch]));
    batches.push({ x: `x${k}.npy`, eps: `eps${k}.npy`, logsnr: `l${k}.npy` });
    tensors.push({ x: tf.tensor(x, shape), eps: tf.tensor(eps, shape), l });
  }
  const checkSteps = 3;
  const warmup = quick ? 1 : 3;
  // Training is timed in `timeBlocks` blocks of `timeSteps` steps on each side, and the fastest block
  // counts (as timeit does): the machines are shared, and a burst of load on the host during one side's
  // run would otherwise decide the ratio.
  const timeSteps = quick ? 3 : device === 'gpu' ? 20 : w.network === 'unet' ? 4 : 15;
  const timeBlocks = quick ? 1 : 3;
  const sampleSteps = [1, 4, 64];
  const lr = 1e-4;
  writeFileSync(
    join(dir, 'manifest.json'),
    JSON.stringify({
      network: w.network,
      config: w.network === 'mlp' ? recipe.model.mlp : recipe.model.unet,
      params: manifestParams,
      batches,
      lr,
      clip: 1,
      check_steps: checkSteps,
      warmup,
      time_steps: timeSteps,
      time_blocks: timeBlocks,
      device,
      data_shape: w.dataShape,
      range: [-1, 1],
      sample_batch: w.sampleBatch,
      sample_steps: quick ? [1, 4] : sampleSteps,
      sample_repeats: 1,
    }),
  );

  // halfstep: the same step as src/train.ts (v-parameterization, snr_plus_one), through the same
  // Adam/clipping/EMA code the training loop uses.
  const ema = cloneParams(params, ParamSet);
  const adam = new Adam(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
  const vars = params.list.map((p) => p.variable);
  const rank = w.dataShape.length + 1;
  const step = async (k: number): Promise<number> => {
    const b = tensors[k % K]!;
    const s = scheduleTensors(b.l, rank);
    const wT = tf.tensor1d(Array.from(b.l, (v) => lossWeight('snr_plus_one', v)));
    const z = noiseOf(b.x, b.eps, s.alpha, s.sigma);
    const { value, grads } = tf.variableGrads(() => weightedXLoss(b.x, predictX('v', net.apply(params, z, s.logsnr, true), z, s.alpha, s.sigma), wT), vars);
    const loss = (await value.data())[0]!;
    adam.step(
      params.list.map((p) => grads[p.variable.name]!),
      lr,
      1,
      { params: ema, decay: 0.999 },
    );
    tf.dispose([value, ...Object.values(grads), s.logsnr, s.alpha, s.sigma, wT, z]);
    return loss;
  };
  const ours: number[] = [];
  for (let i = 0; i < checkSteps; i++) ours.push(await step(i));

  const py = JSON.parse(execFileSync(python, [join(process.cwd(), 'bench', 'torch_ref.py'), dir], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n').pop()!) as {
    losses: number[];
    ms_per_step: number;
    sample_ms: Record<string, number>;
    device: string;
    torch: string;
    threads: number;
  };
  const worst = Math.max(...ours.map((v, i) => Math.abs(v - py.losses[i]!) / Math.abs(py.losses[i]!)));
  const agree = `losses of the first ${checkSteps} steps: halfstep ${ours.map((v) => v.toPrecision(6)).join(', ')}; torch ${py.losses.map((v) => v.toPrecision(6)).join(', ')} (worst relative difference ${worst.toExponential(1)})`;
  if (!(worst < 2e-3)) throw new Error(`${w.name}: halfstep and PyTorch do not compute the same step: ${agree}`);

  for (let i = 0; i < warmup; i++) await step(checkSteps + i);
  let ms = Infinity;
  for (let b = 0; b < timeBlocks; b++) {
    const t0 = performance.now();
    for (let i = 0; i < timeSteps; i++) await step(i);
    ms = Math.min(ms, (performance.now() - t0) / timeSteps);
  }
  const rows: BenchRow[] = [{ workload: `${w.name}-train (batch ${w.batch})`, halfstep: ms, torch: py.ms_per_step, ratio: ms / py.ms_per_step, unit: 'ms/step', detail: agree }];

  const den = denoiser(net, params, 'v');
  const noise = tf.tensor(new Rng(3).normals(w.sampleBatch * D), [w.sampleBatch, ...w.dataShape]);
  for (const n of quick ? [1, 4] : sampleSteps) {
    const run = async () => {
      const s = sample(den, noise, n, [-1, 1]);
      await s.data();
      s.dispose();
    };
    await run();
    const t1 = performance.now();
    await run();
    const sms = performance.now() - t1;
    const tms = py.sample_ms[String(n)]!;
    rows.push({ workload: `${w.name}-sample-${n}step (batch ${w.sampleBatch})`, halfstep: sms, torch: tms, ratio: sms / tms, unit: 'ms/batch', detail: `${((w.sampleBatch * 1000) / sms).toFixed(1)} vs ${((w.sampleBatch * 1000) / tms).toFixed(1)} samples/s` });
  }
  tf.dispose([noise, ...tensors.flatMap((t) => [t.x, t.eps])]);
  params.dispose();
  ema.dispose();
  adam.dispose();
  return rows.map((r) => ({ ...r, detail: `${r.detail}; torch ${py.torch} on ${py.device}${py.device === 'cpu' ? ` (${py.threads} threads)` : ''}` }));
}

async function main(): Promise<void> {
  const a = args();
  const backend = await initBackend((a.backend ?? (a.device === 'gpu' ? 'webgpu' : 'wasm')) as 'wasm');
  const python = findPython(a.python);
  const rows: BenchRow[] = [];
  for (const w of workloads(a.device, a.quick)) {
    if (a.only && !a.only.includes(w.name)) continue;
    process.stderr.write(`[bench] ${w.name} on ${backend} vs PyTorch (${a.device})…\n`);
    rows.push(...(await runWorkload(w, a.device, a.quick, python)));
  }
  const table = [
    `| workload | halfstep (${backend}) | PyTorch | ratio | unit |`,
    '| --- | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.workload} | ${r.halfstep.toFixed(2)} | ${r.torch.toFixed(2)} | ${r.ratio.toFixed(2)} | ${r.unit} |`),
  ].join('\n');
  console.log(table);
  for (const r of rows.filter((x) => x.unit === 'ms/step')) console.log(`\n${r.workload}: ${r.detail}`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ device: a.device, backend, created: new Date().toISOString(), rows }, null, 2));
}

main().catch((e) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
