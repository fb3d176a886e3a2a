// Times one UNet training step (forward, backward, Adam) on random data, optionally with a per-kernel profile.
//   node scripts/build.mjs scripts/bench-unet.ts
//   node dist/scripts/bench-unet.js [--backend wasm] [--size 28] [--batch 64] [--channels 32] [--mults 1,2]
//        [--blocks 2] [--attn 14] [--steps 5] [--profile] [--kernels filter,conv,matmul,...]
// HALFSTEP_NATIVE_KERNELS=0 gives the stock tfjs kernels; with it, --kernels registers only the named
// halfstep kernel groups on top of them (an ablation): filter (Conv2DBackpropFilter), conv (Conv2D,
// FusedConv2D, Conv2DBackpropInput), matmul, identity, groupnorm, sum, split (Concat, SplitV).
import { parseArgs } from 'node:util';
import { initBackend, kernelNote } from '../src/backend.js';
import { tf } from '../src/tf.js';
import { unetNetwork } from '../src/model/unet.js';
import { Rng } from '../src/rng.js';
import { Adam } from '../src/optim.js';
import { predictX, scheduleTensors, weightedXLoss } from '../src/diffusion.js';
import { registerOrtConv2D, registerOrtConv2DBackpropFilter, registerOrtConv2DBackpropInput, registerOrtFusedConv2D } from '../src/kernels/conv.js';
import { registerOrtMatMul } from '../src/kernels/matmul.js';
import { registerSharedIdentity } from '../src/kernels/identity.js';
import { registerOrtGroupNorm } from '../src/kernels/groupnorm.js';
import { registerOrtSum } from '../src/kernels/reduce.js';
import { registerOrtConcat, registerOrtSplitV } from '../src/kernels/split.js';

const { values: o } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    size: { type: 'string', default: '28' },
    batch: { type: 'string', default: '64' },
    channels: { type: 'string', default: '32' },
    mults: { type: 'string', default: '1,2' },
    blocks: { type: 'string', default: '2' },
    attn: { type: 'string', default: '14' },
    heads: { type: 'string', default: '1' },
    dropout: { type: 'string', default: '0' },
    steps: { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
    kernels: { type: 'string', default: '' },
  },
});
const backend = o.backend as 'wasm' | 'cpu';
await initBackend(backend);
const groups: Record<string, () => void> = {
  filter: () => registerOrtConv2DBackpropFilter(backend),
  conv: () => (registerOrtConv2D(backend), registerOrtFusedConv2D(backend), registerOrtConv2DBackpropInput(backend)),
  matmul: () => registerOrtMatMul(backend),
  identity: () => backend === 'wasm' && registerSharedIdentity(backend),
  groupnorm: () => registerOrtGroupNorm(backend),
  sum: () => registerOrtSum(backend),
  split: () => (registerOrtConcat(backend), registerOrtSplitV(backend)),
};
for (const k of o.kernels.split(',').filter(Boolean)) {
  if (!groups[k]) throw new Error(`--kernels: unknown group ${k}; known: ${Object.keys(groups).join(', ')}`);
  groups[k]!();
}
const S = Number(o.size);
const B = Number(o.batch);
const cfg = {
  type: 'unet' as const,
  channels: Number(o.channels),
  channel_mults: o.mults.split(',').map(Number),
  num_res_blocks: Number(o.blocks),
  attention_resolutions: o.attn ? o.attn.split(',').map(Number) : [],
  dropout: Number(o.dropout),
  groups: 8,
  emb_dim: 64,
  heads: Number(o.heads),
};
const net = unetNetwork(cfg, [S, S, 1], 1);
const ps = net.init(new Rng(1));
console.log(`backend ${backend} (${o.kernels ? `stock + halfstep ${o.kernels}` : kernelNote()}); ${S}×${S}×1, batch ${B}, ${JSON.stringify(cfg)}; ${ps.count()} parameters`);

// Per-kernel wall time: wrap every kernel of the backend (kernels on cpu and wasm are synchronous).
const kernelMs = new Map<string, { ms: number; calls: number }>();
if (o.profile) {
  for (const k of tf.getKernelsForBackend(backend)) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const t0 = performance.now();
        const out = inner(args);
        // BENCH_SHAPES=1: one row per kernel and input shapes
        const key = process.env.BENCH_SHAPES ? `${k.kernelName} ${Object.values(args.inputs).filter((t) => t).map((t) => `[${(t as tf.TensorInfo).shape.join(',')}]`).join(' ')} ${JSON.stringify(args.attrs ?? {}).slice(0, 60)}` : k.kernelName;
        const e = kernelMs.get(key) ?? { ms: 0, calls: 0 };
        e.ms += performance.now() - t0;
        e.calls += 1;
        kernelMs.set(key, e);
        return out;
      },
    });
  }
}

const rng = new Rng(2);
const x = tf.tensor(rng.normals(B * S * S), [B, S, S, 1]);
const ls = Float32Array.from({ length: B }, () => 6 * rng.normal());
const s = scheduleTensors(ls, 4);
const z = tf.add(tf.mul(s.alpha, x), tf.mul(s.sigma, tf.tensor(rng.normals(B * S * S), [B, S, S, 1])));
const w = tf.ones([B]);
const adam = new Adam(ps, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
const vars = ps.list.map((p) => p.variable);
const step = () => {
  const { value, grads } = tf.variableGrads(() => weightedXLoss(x, predictX('v', net.apply(ps, z, s.logsnr, true, rng), z, s.alpha, s.sigma), w), vars);
  adam.apply(ps.list.map((p) => grads[p.variable.name]!), 1e-4);
  const loss = value.dataSync()[0]!;
  tf.dispose([value, ...Object.values(grads)]);
  return loss;
};
try {
  let t0 = performance.now();
  step();
  console.log(`first step (builds the onnxruntime sessions): ${(performance.now() - t0).toFixed(0)} ms`);
  kernelMs.clear();
  const n = Number(o.steps);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const faults = process.resourceUsage().minorPageFault;
    t0 = performance.now();
    step();
    times.push(performance.now() - t0);
    if (process.env.BENCH_FAULTS) console.log(`  step ${i}: ${times[i]!.toFixed(0)} ms, ${process.resourceUsage().minorPageFault - faults} minor page faults, rss ${(process.memoryUsage().rss / 1e9).toFixed(2)} GB`);
  }
  times.sort((a, b) => a - b);
  console.log(`ms/step over ${n} steps: median ${times[n >> 1]!.toFixed(0)}, min ${times[0]!.toFixed(0)}, max ${times[n - 1]!.toFixed(0)}`);
  if (o.profile) {
    const rows = [...kernelMs.entries()].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((a, [, e]) => a + e.ms, 0);
    console.log(`kernel time per step: ${(total / n).toFixed(0)} ms`);
    for (const [k, e] of rows.slice(0, Number(process.env.BENCH_ROWS ?? 25))) console.log(`  ${k.padEnd(28)} ${(e.ms / n).toFixed(1).padStart(8)} ms ${String(e.calls / n).padStart(5)} calls`);
  }
} catch (e) {
  console.log(`the training step failed: ${(e as Error).message.split("\n")[0]}`);
  if (process.env.BENCH_STACK) console.log((e as Error).stack);
}
