/**
 * Which kernels dominate a training step (and, with --steps N, where the host's time goes)? Runs a few UNet (or MLP) training steps under tf.profile on
 * the chosen backend and prints the kernels by total time, with counts.
 *
 *   node scripts/build.mjs bench/profile.ts && node dist/bench/profile.js [--backend wasm|webgpu] [--net unet|mlp]  [--batch N] [--steps N [--orders sync,after-adam,lagged]] [--no-profile]
 */
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { createNetwork } from '../src/model/index.js';
import { parseRecipe } from '../src/recipe.js';
import { Rng } from '../src/rng.js';
import { Adam } from '../src/optim.js';
import { lossWeight, noise as noiseOf, predictX, scheduleTensors, weightedXLoss } from '../src/diffusion.js';
import { logsnr } from '../src/schedule.js';

const a = process.argv.slice(2);
const get = (k: string, d: string) => (a.includes(k) ? a[a.indexOf(k) + 1]! : d);
const backend = await initBackend(get('--backend', 'wasm') as 'wasm');
const netName = get('--net', 'unet');
const batch = Number(get('--batch', netName === 'unet' ? '64' : '256'));
const shape = netName === 'unet' ? [28, 28, 1] : [784];
const model =
  netName === 'unet'
    ? 'type: unet\n  unet: { channels: 32, channel_mults: [1, 2, 2], num_res_blocks: 1, attention_resolutions: [7], groups: 8, emb_dim: 64 }'
    : 'type: mlp\n  mlp: { hidden: 512, blocks: 2, emb_dim: 64 }';
const recipe = parseRecipe(`name: p\ndata: { path: none.arrow, generate: {} }\nmodel:\n  ${model}\n  parameterization: v\n`);
const net = createNetwork(recipe.model, shape);
const params = net.init(new Rng(1));
const adam = new Adam(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
const rng = new Rng(2);
const D = shape.reduce((x, y) => x * y, 1);
const x = tf.tensor(rng.normals(batch * D).map(Math.tanh), [batch, ...shape]);
const eps = tf.tensor(rng.normals(batch * D), [batch, ...shape]);
const l = Float32Array.from({ length: batch }, () => logsnr(rng.uniform()));
const s = scheduleTensors(l, shape.length + 1);
const w = tf.tensor1d(Array.from(l, (v) => lossWeight('snr_plus_one', v)));
const z = noiseOf(x, eps, s.alpha, s.sigma);
const vars = params.list.map((p) => p.variable);
const step = async () => {
  const { value, grads } = tf.variableGrads(() => weightedXLoss(x, predictX('v', net.apply(params, z, s.logsnr, true), z, s.alpha, s.sigma), w), vars);
  await value.data();
  adam.step(params.list.map((p) => grads[p.variable.name]!), 1e-4, 1);
  tf.dispose([value, ...Object.values(grads)]);
};
await step();
const t0 = performance.now();
await step();
const wall = performance.now() - t0;

// --steps N: where the host's time goes in N steady steps, for three orders of the loss read.
//  sync: read the loss before the optimizer (the training loop's order); after-adam: issue the
//  optimizer, then wait for the loss; lagged: wait for a step's loss only after issuing the next step.
const timedSteps = Number(get('--steps', '0'));
if (timedSteps > 0) {
  const grad = () => tf.variableGrads(() => weightedXLoss(x, predictX('v', net.apply(params, z, s.logsnr, true), z, s.alpha, s.sigma), w), vars);
  const update = (grads: tf.NamedTensorMap) => {
    adam.step(params.list.map((p) => grads[p.variable.name]!), 1e-4, 1);
    tf.dispose(Object.values(grads));
  };
  const phases = { issue: 0, wait: 0, optimizer: 0 };
  const clock = (k: keyof typeof phases, t: number) => {
    const now = performance.now();
    phases[k] += now - t;
    return now;
  };
  // Issues the step, starts reading its loss and issues the optimizer, without waiting for the GPU.
  const issueWithoutWaiting = () => {
    let t = performance.now();
    const { value, grads } = grad();
    const p = value.data();
    t = clock('issue', t);
    update(grads);
    t = clock('optimizer', t);
    return { value, p, t };
  };
  const orders = {
    sync: async () => {
      let t = performance.now();
      const { value, grads } = grad();
      t = clock('issue', t);
      await value.data();
      t = clock('wait', t);
      update(grads);
      clock('optimizer', t);
      value.dispose();
    },
    'after-adam': async () => {
      const { value, p, t } = issueWithoutWaiting();
      await p;
      clock('wait', t);
      value.dispose();
    },
  };
  let pending: { value: tf.Scalar; p: Promise<unknown> } | null = null;
  const lagged = async () => {
    const { value, p, t } = issueWithoutWaiting();
    if (pending) {
      await pending.p;
      pending.value.dispose();
    }
    clock('wait', t);
    pending = { value, p };
  };
  const wanted = get('--orders', 'sync,after-adam,lagged').split(',');
  for (const [name, run] of [...Object.entries(orders), ['lagged', lagged] as const].filter(([n]) => wanted.includes(n))) {
    await run();
    Object.assign(phases, { issue: 0, wait: 0, optimizer: 0 });
    const t1 = performance.now();
    for (let i = 0; i < timedSteps; i++) await run();
    if (pending) await (pending as { p: Promise<unknown> }).p;
    const ms = (performance.now() - t1) / timedSteps;
    const f = (v: number) => (v / timedSteps).toFixed(1);
    console.log(`order ${name}: ${ms.toFixed(1)} ms/step (host: issue forward+backward ${f(phases.issue)}, optimizer ${f(phases.optimizer)}, waiting for the loss ${f(phases.wait)})`);
  }
}
if (!a.includes('--no-profile')) {
  const info = await tf.profile(step);
  const by = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : ((k.kernelTimeMs as { error?: string }).error ? NaN : 0);
    const e = by.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n += 1;
    by.set(k.name, e);
  }
  const total = [...by.values()].reduce((t, e) => t + (Number.isFinite(e.ms) ? e.ms : 0), 0);
  console.log(`${netName} batch ${batch} on ${backend}: one step ${wall.toFixed(1)} ms wall; ${info.kernels.length} kernel calls; kernel time ${total.toFixed(1)} ms`);
  console.log('| kernel | calls | ms | share |\n| --- | ---: | ---: | ---: |');
  for (const [name, e] of [...by].sort((p, q) => q[1].ms - p[1].ms).slice(0, 25)) console.log(`| ${name} | ${e.n} | ${e.ms.toFixed(2)} | ${((100 * e.ms) / total).toFixed(1)}% |`);
}
