/** `halfstep sample CHECKPOINT` or `halfstep sample --onnx FILE`: draw samples from a checkpoint or an exported ONNX model. */
import { writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { Option, type Command } from 'commander';
import { tf } from '../tf.js';
import { initBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import { createNetwork } from '../model/index.js';
import { denoiser } from '../model/network.js';
import { Rng } from '../rng.js';
import { sample } from '../sampler.js';
import { loadInto, readState } from '../state.js';
import { render, scatterSpec } from '../eval/charts.js';
import { imageGrid } from '../eval/grid.js';
import { backendOption, type CliContext } from './common.js';
import type { BackendName } from '../recipe.js';
import { encodeNpy } from '../data/npy.js';
import { ExportedModel, sampleExported } from '../export/onnxfile.js';

export interface SampleOptions {
  steps?: number;
  n: number;
  seed: number;
  out: string;
  backend?: BackendName;
  onnx?: string;
}

export function registerSampleCommand(program: Command, ctx: CliContext): void {
  program
    .command('sample')
    .argument('[checkpoint]', 'a teacher.ckpt or student-N.ckpt')
    .description('draw samples with DDIM from a checkpoint (or an exported ONNX model); writes .png, .npy or .json by the --out extension')
    .option('--onnx <file>', 'sample from an ONNX file of `halfstep export` through onnxruntime-node instead of a checkpoint')
    .addOption(new Option('--steps <n>', "sampling steps (default: the model's own)").argParser(Number))
    .addOption(new Option('--n <count>', 'number of samples').argParser(Number).default(1000))
    .addOption(new Option('--seed <seed>', 'noise seed').argParser(Number).default(0))
    .requiredOption('-o, --out <file>', 'output file (.png, .npy or .json)')
    .addOption(backendOption())
    .action(async (ckpt: string | undefined, o: SampleOptions) => {
      if (!Number.isInteger(o.n) || o.n < 1) throw new UsageError(`--n expects a positive integer; got ${o.n}`);
      if (o.steps !== undefined && (!Number.isInteger(o.steps) || o.steps < 1)) throw new UsageError(`--steps expects a positive integer; got ${o.steps}`);
      const ext = extname(o.out).toLowerCase();
      if (!['.png', '.npy', '.json'].includes(ext)) throw new UsageError(`--out: unsupported extension "${ext}"; expected .png, .npy or .json`);
      if ((ckpt === undefined) === (o.onnx === undefined)) throw new UsageError('give either a checkpoint or --onnx FILE');
      let drawn: { values: Float32Array; steps: number; shape: number[]; range: [number, number]; source: string; ms: number };
      if (o.onnx !== undefined) {
        // tfjs only runs the DDIM arithmetic around a denoiser graph; the network runs in onnxruntime
        await initBackend(o.backend ?? 'cpu');
        const m = new ExportedModel(o.onnx);
        const D = m.info.dataShape.reduce((a, b) => a * b, 1);
        const noise = new Rng(o.seed).normals(o.n * D);
        const t0 = performance.now();
        const r = sampleExported(m, noise, o.steps);
        drawn = { values: r.samples, steps: r.steps, shape: m.info.dataShape, range: m.info.range, source: `${o.onnx} (${m.info.kind} graph)`, ms: performance.now() - t0 };
      } else {
        const { meta, tensors } = readState(ckpt!);
        await initBackend(o.backend ?? meta.recipe.backend);
        const net = createNetwork(meta.recipe.model, meta.dataset.shape);
        const params = net.init(new Rng(0));
        loadInto(params, meta.stage === 'teacher' ? 'ema' : 'params', tensors, ckpt!);
        const steps = o.steps ?? meta.steps;
        const D = meta.dataset.shape.reduce((a, b) => a * b, 1);
        const noise = tf.tensor(new Rng(o.seed).normals(o.n * D), [o.n, ...meta.dataset.shape]);
        const t0 = performance.now();
        const s = sample(denoiser(net, params, meta.recipe.model.parameterization), noise, steps, meta.dataset.range);
        const values = (await s.data()) as Float32Array;
        drawn = { values, steps, shape: meta.dataset.shape, range: meta.dataset.range, source: ckpt!, ms: performance.now() - t0 };
      }
      const { values, steps, shape, range, ms } = drawn;
      const D = shape.reduce((a, b) => a * b, 1);
      switch (ext) {
        case '.png': {
          if (shape.length === 3) {
            writeFileSync(o.out, imageGrid(values, o.n, shape, range));
            break;
          }
          if (shape.length !== 1 || shape[0]! < 2) throw new UsageError('PNG output of vector samples needs at least 2 dimensions');
          const png = (await render(scatterSpec(values, D, `${drawn.source}: ${steps} steps`, range, '#4c78a8', o.n))).png;
          if (!png) throw new UsageError('PNG scatter plots need the npm package sharp, which could not be loaded here; write .npy or .json instead');
          writeFileSync(o.out, png);
          break;
        }
        case '.npy':
          writeFileSync(o.out, encodeNpy(values, [o.n, ...shape]));
          break;
        case '.json':
          writeFileSync(o.out, JSON.stringify({ shape: [o.n, ...shape], steps, data: Array.from(values) }));
          break;
      }
      ctx.io.out(`${o.out}: ${o.n} samples, ${steps} steps, ${(ms / o.n).toFixed(3)} ms/sample\n`);
    });
}
