/**
 * Latency of exported students on the CPU: the unrolled 1-step and 4-step sampler graphs in
 * onnxruntime-node, next to the same samples drawn through tfjs (wasm backend) with halfstep's DDIM loop.
 *
 *   node scripts/build.mjs bench/onnx-latency.ts && node dist/bench/onnx-latency.js [RUN_DIR | --unet] [--threads N]
 *
 * With a run folder (vectors or images), its student-1 and student-4 checkpoints are used; with
 * --unet, a UNet of recipes/mnist.yaml's size on 28×28×1 digits (channels 32, channel_mults [1, 2, 2],
 * one block per level, attention at 7×7) with random weights; otherwise an MLP of
 * recipes/quickstart.yaml's size with random weights (latency does not depend on their values). Each
 * cell is the median of timed calls after warm-up, in ms per sample (fewer calls where one takes
 * over 100 ms); |Δ| is the largest difference between the two runtimes' samples from the same noise.
 * The export's parity check holds onnxruntime to 1e-4 of tfjs's cpu backend; tfjs-wasm's own sin and
 * atan are an ulp off for some inputs (see src/export/parity.ts), so |Δ| against wasm can be larger.
 * HALFSTEP_NATIVE_KERNELS=0 times tfjs-wasm with its stock kernels instead of MatMul via onnxruntime.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/tf.js';
import { initBackend, kernelNote } from '../src/backend.js';
import { loadForExport } from '../src/export/export.js';
import { exportInfo, samplerModel, type ExportInfo } from '../src/export/graphs.js';
import { ExportedModel } from '../src/export/onnxfile.js';
import { createNetwork } from '../src/model/index.js';
import { denoiser, type Network } from '../src/model/network.js';
import type { ParamSet } from '../src/model/params.js';
import { parseRecipe, recipeHash } from '../src/recipe.js';
import { Rng } from '../src/rng.js';
import { sample } from '../src/sampler.js';

const STEPS = [1, 4];
const BATCHES = [1, 64];

interface Model {
  net: Network;
  params: ParamSet;
  info: ExportInfo;
  what: string;
}

/** A random-weight network of `file`'s model on examples of `shape`, as the 1- and 4-step students. */
function randomModels(file: string, shape: number[], range: [number, number]): Map<number, Model> {
  const out = new Map<number, Model>();
  const recipe = parseRecipe(readFileSync(file, 'utf8'), file);
  const net = createNetwork(recipe.model, shape);
  const params = net.init(new Rng(0));
  // the output layers start at zero; give every weight some noise so the samples are not all alike
  const rng = new Rng(1);
  for (const p of params.list) p.variable.assign(tf.add(p.variable, tf.mul(tf.tensor(rng.normals(p.variable.size), p.variable.shape), 0.05)));
  const size = recipe.model.type === 'mlp' ? JSON.stringify(recipe.model.mlp) : JSON.stringify(recipe.model.unet);
  for (const n of STEPS) {
    const info: ExportInfo = { modelType: recipe.model.type, parameterization: recipe.model.parameterization, steps: n, stage: 'student', round: 0, dataShape: shape, range, dataset: 'random', recipeHash: recipeHash(recipe) };
    out.set(n, { net, params, info, what: `${file}-size ${recipe.model.type} (${size}) on [${shape.join(', ')}], random weights` });
  }
  return out;
}

function models(run: string | undefined, unet: boolean): Map<number, Model> {
  if (unet) return randomModels('recipes/mnist.yaml', [28, 28, 1], [-1, 1]);
  const out = new Map<number, Model>();
  if (run) {
    for (const n of STEPS) {
      const ckpt = join(run, 'checkpoints', `student-${n}.ckpt`);
      if (!existsSync(ckpt)) throw new Error(`${ckpt} not found: the run needs 1-step and 4-step students`);
      const t = loadForExport(ckpt);
      out.set(n, { net: t.net, params: t.params, info: exportInfo(t.meta), what: ckpt });
    }
    return out;
  }
  return randomModels('recipes/quickstart.yaml', [2], [-2, 2]);
}

/**
 * Median wall time of `f` in ms over at least `minReps` calls and 0.3 s, after `warmup` calls; a call
 * of over 100 ms (a UNet at batch 64) gets one warm-up call and 5 timed ones.
 */
function timeIt(f: () => void, warmup = 5, minReps = 20): number {
  const t0 = performance.now();
  f();
  if (performance.now() - t0 > 100) [warmup, minReps] = [1, 5];
  for (let i = 1; i < warmup; i++) f();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < 300) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--threads');
  const threads = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 0;
  const ui = args.indexOf('--unet');
  const unet = ui >= 0 && args.splice(ui, 1).length > 0;
  const run = args[0];
  await initBackend('wasm');
  const ms = models(run, unet);
  const rows: string[] = [];
  for (const n of STEPS) {
    const m = ms.get(n)!;
    const ort = new ExportedModel(`sampler_${n}step`, samplerModel(m.net, m.params, m.info, n), { threads });
    const den = denoiser(m.net, m.params, m.info.parameterization);
    const D = m.info.dataShape.reduce((a, b) => a * b, 1);
    for (const B of BATCHES) {
      const noise = new Rng(B).normals(B * D);
      const z = tf.tensor(noise, [B, ...m.info.dataShape]);
      const drawTf = () => {
        const s = sample(den, z, n, m.info.range);
        s.dataSync();
        s.dispose();
      };
      const tOrt = timeIt(() => ort.sample(noise));
      const tTf = timeIt(drawTf);
      const a = ort.sample(noise);
      const b = tf.tidy(() => sample(den, z, n, m.info.range).dataSync());
      let d = 0;
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
      z.dispose();
      rows.push(`| ${n} | ${B} | ${(tOrt / B).toFixed(4)} | ${(tTf / B).toFixed(4)} | ${(tTf / tOrt).toFixed(1)}× | ${d.toExponential(1)} |`);
    }
  }
  console.log(`model: ${ms.get(1)!.what}`);
  console.log(`onnxruntime-node: unrolled sampler graph, ${threads || 'default (one per physical core)'} intra-op threads; tfjs: wasm backend (${kernelNote()}), halfstep's DDIM loop`);
  console.log('| steps | batch | onnxruntime ms/sample | tfjs-wasm ms/sample | speed-up | max |Δ| |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(r);
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? String(e));
  process.exitCode = 1;
});
