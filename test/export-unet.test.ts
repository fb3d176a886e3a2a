import { beforeAll, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { outputChannels, PARAMETERIZATIONS, type Parameterization } from '../src/diffusion.js';
import { loadForExport } from '../src/export/export.js';
import { denoiserModel, exportInfo, samplerModel, type ExportInfo } from '../src/export/graphs.js';
import { ExportedModel, readOnnxInfo, sampleExported } from '../src/export/onnxfile.js';
import { denoiserParity, samplerParity, PARITY_TOLERANCE } from '../src/export/parity.js';
import { unetNetwork, type UnetConfig } from '../src/model/unet.js';
import { samePads } from '../src/model/unet-onnx.js';
import { denoiser, type Network } from '../src/model/network.js';
import type { ParamSet } from '../src/model/params.js';
import { OnnxGraphBuilder } from '../src/onnx/graph.js';
import { onnx } from '../src/onnx/proto.js';
import { Rng } from '../src/rng.js';
import { sample } from '../src/sampler.js';
import { readState } from '../src/state.js';
import { cli, tmp } from './helpers.js';

/** The largest parity error any test here saw (printed at the end of the tiny run's parity test). */
let worstSeen = 0;
const seen = (...r: { maxAbs: number }[]) => r.forEach((x) => (worstSeen = Math.max(worstSeen, x.maxAbs)));

/** A Python that can `import onnx` (Debian's python3-onnx is for /usr/bin/python3; `python3` may be another one). */
function pythonWithOnnx(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0) return py;
  }
  return null;
}

interface NodeView {
  name: string;
  opType: string;
  input: string[];
  attrs: Map<string, number | number[] | string>;
}

/** A decoded model's graph with plain nodes, initializer shapes and int64 initializer values. */
function decodeGraph(bytes: Uint8Array) {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph!;
  const nodes: NodeView[] = (g.node ?? []).map((n) => ({
    name: n.name ?? '',
    opType: n.opType ?? '',
    input: n.input ?? [],
    attrs: new Map(
      (n.attribute ?? []).map((a) => [a.name ?? '', a.ints && a.ints.length ? a.ints.map(Number) : a.s && a.s.length ? new TextDecoder().decode(a.s) : a.type === onnx.AttributeProto.AttributeType.FLOAT ? a.f ?? 0 : Number(a.i)]),
    ),
  }));
  const inits = new Map((g.initializer ?? []).map((t) => [t.name ?? '', (t.dims ?? []).map(Number)]));
  const ints = new Map(
    (g.initializer ?? []).filter((t) => t.dataType === 7).map((t) => [t.name ?? '', Array.from(new BigInt64Array(new Uint8Array(t.rawData!).slice().buffer)).map(Number)]),
  );
  return { model: m, inputs: g.input ?? [], outputs: g.output ?? [], nodes, inits, initCount: (g.initializer ?? []).length, ints };
}

function dimsOf(v: { type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown; dimParam?: string | null }[] | null } | null } | null } | null }): (number | string)[] {
  return (v.type!.tensorType!.shape!.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue)));
}

const tiny: UnetConfig = {
  type: 'unet',
  channels: 8,
  channel_mults: [1, 2],
  num_res_blocks: 1,
  attention_resolutions: [4],
  dropout: 0.1,
  groups: 4,
  emb_dim: 8,
  heads: 2,
};

/** A tiny UNet with random weights (the zero-initialised layers too, noise of std 0.05 on all), so every layer matters. */
function randomUnet(p: Parameterization, shape: [number, number, number], seed: number, cfg: UnetConfig = tiny): { net: Network; ps: ParamSet; info: ExportInfo } {
  const net = unetNetwork(cfg, shape, outputChannels(p, shape[2]));
  const ps = net.init(new Rng(seed));
  const rng = new Rng(seed + 100);
  for (const q of ps.list) q.variable.assign(tf.add(q.variable, tf.mul(tf.tensor(rng.normals(q.variable.size), q.variable.shape), 0.05)));
  const info: ExportInfo = { modelType: 'unet', parameterization: p, steps: 2, stage: 'student', round: 1, dataShape: shape, range: [-1, 1], dataset: 'random', recipeHash: '0123456789abcdef' };
  return { net, ps, info };
}

describe('UNet graphs with random weights', () => {
  for (const p of PARAMETERIZATIONS) {
    for (const shape of [
      [8, 8, 1],
      [8, 12, 3],
    ] as [number, number, number][]) {
      test(`${p}, ${shape.join('×')}: the denoiser graph and a 2-step unrolled sampler equal tfjs to 1e-4`, async () => {
        await initBackend('cpu');
        const { net, ps, info } = randomUnet(p, shape, 7);
        const d = denoiserParity(new ExportedModel(`${p}-denoiser`, denoiserModel(net, ps, info)), net, ps, info);
        const s = samplerParity(new ExportedModel(`${p}-sampler`, samplerModel(net, ps, info, 2)), net, ps, info, 2);
        seen(d, s);
        expect(d.maxAbs, JSON.stringify(d)).toBeLessThanOrEqual(PARITY_TOLERANCE);
        expect(s.maxAbs, JSON.stringify(s)).toBeLessThanOrEqual(PARITY_TOLERANCE);
        ps.dispose();
      });
    }
  }
});

describe('UNet graph structure', () => {
  test("'same' pads are tfjs's: the extra row/column at the end at stride 2", () => {
    for (const size of [3, 4, 7, 8, 12, 14, 28]) {
      for (const k of [1, 3]) {
        for (const stride of [1, 2]) {
          const c = tf.backend_util.computeConv2DInfo([1, size, size + 2, 1], [k, k, 1, 1], stride, 1, 'same');
          expect(samePads(size, k, stride), `${size} k${k} s${stride}`).toEqual([c.padInfo.top, c.padInfo.bottom]);
          expect(samePads(size + 2, k, stride)).toEqual([c.padInfo.left, c.padInfo.right]);
        }
      }
    }
    expect(samePads(8, 3, 2)).toEqual([0, 1]);
    expect(samePads(8, 3, 1)).toEqual([1, 1]);
  });

  test('opset 17 ops only; NCHW inside (one transpose in, one out), OIHW filters written as data, no explicit batch', async () => {
    await initBackend('cpu');
    const { net, ps, info } = randomUnet('v', [8, 8, 1], 3);
    const { model, inputs, outputs, nodes, inits, initCount, ints } = decodeGraph(samplerModel(net, ps, info, 2));
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
    const ops = new Set(nodes.map((n) => n.opType));
    expect(ops.has('GroupNormalization')).toBe(false);
    for (const op of ['Conv', 'InstanceNormalization', 'Resize', 'Softmax', 'Concat', 'MatMul']) expect(ops.has(op), op).toBe(true);
    // each weight once, however many steps use it; filters OIHW, GroupNorm scales [C, 1, 1]
    expect(initCount).toBe(inits.size);
    expect(inits.get('in.w')).toEqual([8, 1, 3, 3]);
    expect(inits.get('down0.down.w')).toEqual([8, 8, 3, 3]);
    expect(inits.get('up1.res0.skip.w')).toEqual([16, 32, 1, 1]);
    expect(inits.get('out.conv.w')).toEqual([1, 8, 3, 3]);
    expect(inits.get('down0.res0.norm1.g')).toEqual([8, 1, 1]);
    expect(inits.get('mid.attn.qkv.w')).toEqual([16, 48]);
    // nothing transposes or reshapes a weight: those ops read activations only
    for (const n of nodes.filter((n) => n.opType === 'Transpose' || n.opType === 'Reshape')) expect(inits.has(n.input[0]!), n.name).toBe(false);
    // per step one NHWC → NCHW transpose (of the input) and one back (of the network's output)
    expect(nodes.filter((n) => n.opType === 'Transpose' && JSON.stringify(n.attrs.get('perm')) === '[0,3,1,2]')).toHaveLength(2);
    expect(nodes.filter((n) => n.opType === 'Transpose' && n.input[0] === 'noise')).toHaveLength(1);
    // the stride-2 conv pads at the end only; the others on both sides
    const convs = nodes.filter((n) => n.opType === 'Conv' && n.input[1] === 'down0.down.w');
    expect(convs).toHaveLength(2);
    expect(convs[0]!.attrs.get('strides')).toEqual([2, 2]);
    expect(convs[0]!.attrs.get('pads')).toEqual([0, 0, 1, 1]);
    expect(nodes.find((n) => n.opType === 'Conv' && n.input[1] === 'in.w')!.attrs.get('pads')).toEqual([1, 1, 1, 1]);
    const resize = nodes.find((n) => n.opType === 'Resize')!;
    expect(['mode', 'coordinate_transformation_mode', 'nearest_mode'].map((k) => resize.attrs.get(k))).toEqual(['nearest', 'asymmetric', 'floor']);
    expect(nodes.find((n) => n.opType === 'InstanceNormalization')!.attrs.get('epsilon')).toBeCloseTo(1e-5, 10);
    // shapes written into the graph never hold a batch size: Reshape targets copy (0) or infer (−1) it
    for (const n of nodes.filter((n) => n.opType === 'Reshape')) expect([0, -1], n.name).toContain(ints.get(n.input[1]!)![0]);
    expect(dimsOf(inputs[0]!)).toEqual(['batch', 8, 8, 1]);
    expect(dimsOf(outputs[0]!)).toEqual(['batch', 8, 8, 1]);
    ps.dispose();
  });

  test('a parameter asked for in two layouts is an error', async () => {
    await initBackend('cpu');
    const { ps } = randomUnet('x', [8, 8, 1], 1);
    const g = new OnnxGraphBuilder('g');
    g.paramAs(ps, 'in.w', { perm: [3, 2, 0, 1] });
    expect(g.paramAs(ps, 'in.w', { perm: [3, 2, 0, 1] })).toBe('in.w');
    expect(() => g.param(ps, 'in.w')).toThrow(/parameter "in\.w" is used in two layouts/);
    expect(() => g.paramAs(ps, 'in.b', { dims: [3, 1, 1] })).toThrow(/cannot be reshaped to \[3, 1, 1\]/);
    ps.dispose();
  });

  test("MNIST's shape (28×28×1, three levels, attention at 7×7, 8 groups): parity at batch 1 and 7", async () => {
    await initBackend('cpu');
    const cfg: UnetConfig = { ...tiny, channels: 8, channel_mults: [1, 2, 2], attention_resolutions: [7], groups: 8, heads: 1, emb_dim: 16 };
    const { net, ps, info } = randomUnet('v', [28, 28, 1], 11, cfg);
    const d = denoiserParity(new ExportedModel('mnist-denoiser', denoiserModel(net, ps, info)), net, ps, info);
    const s = samplerParity(new ExportedModel('mnist-sampler', samplerModel(net, ps, info, 2)), net, ps, info, 2);
    seen(d, s);
    expect(d.maxAbs, JSON.stringify(d)).toBeLessThanOrEqual(PARITY_TOLERANCE);
    expect(s.maxAbs, JSON.stringify(s)).toBeLessThanOrEqual(PARITY_TOLERANCE);
    ps.dispose();
  });
});

const STUDENTS = [4, 2, 1];
const UNET_RECIPE = 'test/fixtures/tiny-unet.yaml';

describe('a tiny image run: UNet students exported, served and sampled', () => {
  const dir = tmp();
  const run = join(dir, 'run');
  const ckpt = (n: number) => join(run, 'checkpoints', `student-${n}.ckpt`);
  const file = (n: number, kind: string) => join(run, 'onnx', `student-${n}.${kind}.onnx`);

  beforeAll(async () => {
    const r = await cli(['run', UNET_RECIPE, '--out', run, '--set', `data.path=${join(dir, 'mnist8.arrow')}`, '--quiet']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  test('`run` exports every student: denoiser (x_t [batch, 8, 8, 1], logsnr [batch] → x0, eps) and unrolled sampler', () => {
    expect(readdirSync(join(run, 'onnx')).sort()).toEqual(STUDENTS.flatMap((n) => [`student-${n}.denoiser.onnx`, `student-${n}.sampler.onnx`]).sort());
    for (const n of STUDENTS) {
      const info = readOnnxInfo(readFileSync(file(n, 'denoiser')), file(n, 'denoiser'));
      expect(info).toMatchObject({ kind: 'denoiser', steps: n, dataShape: [8, 8, 1], parameterization: 'v' });
      expect(info.metadata['halfstep.model']).toBe('unet');
      const graph = decodeGraph(readFileSync(file(n, 'denoiser')));
      expect(graph.inputs.map((i) => [i.name, dimsOf(i)])).toEqual([
        ['x_t', ['batch', 8, 8, 1]],
        ['logsnr', ['batch']],
      ]);
      expect(graph.outputs.map((o) => [o.name, dimsOf(o)])).toEqual([
        ['x0', ['batch', 8, 8, 1]],
        ['eps', ['batch', 8, 8, 1]],
      ]);
      const s = decodeGraph(readFileSync(file(n, 'sampler')));
      expect(s.inputs.map((i) => [i.name, dimsOf(i)])).toEqual([['noise', ['batch', 8, 8, 1]]]);
      expect(s.outputs.map((o) => [o.name, dimsOf(o)])).toEqual([['sample', ['batch', 8, 8, 1]]]);
      expect(readOnnxInfo(readFileSync(file(n, 'sampler')), file(n, 'sampler')).samplerSteps).toBe(n);
    }
  });

  test('every graph equals tfjs to 1e-4 at batch 1 and 7; the unrolled sampler equals the DDIM loop on 64 samples', async () => {
    await initBackend('cpu');
    for (const n of STUDENTS) {
      const t = loadForExport(ckpt(n));
      const info = exportInfo(t.meta);
      const d = denoiserParity(new ExportedModel(file(n, 'denoiser')), t.net, t.params, info);
      const s = samplerParity(new ExportedModel(file(n, 'sampler')), t.net, t.params, info, n);
      seen(d, s);
      expect(d.maxAbs, `student-${n} denoiser ${JSON.stringify(d)}`).toBeLessThanOrEqual(PARITY_TOLERANCE);
      expect(s.maxAbs, `student-${n} sampler ${JSON.stringify(s)}`).toBeLessThanOrEqual(PARITY_TOLERANCE);

      // 64 samples three ways from the same noise: unrolled graph, denoiser graph + halfstep's sampler, tfjs
      const noise = new Rng(42).normals(64 * 64);
      const unrolled = sampleExported(new ExportedModel(file(n, 'sampler')), noise).samples;
      const stepped = sampleExported(new ExportedModel(file(n, 'denoiser')), noise);
      expect(stepped.steps).toBe(n);
      const ref = tf.tidy(() => sample(denoiser(t.net, t.params, 'v'), tf.tensor(noise, [64, 8, 8, 1]), n, t.meta.dataset.range).dataSync());
      const [lo, hi] = t.meta.dataset.range;
      let worst = 0;
      for (let i = 0; i < ref.length; i++) {
        worst = Math.max(worst, Math.abs(unrolled[i]! - ref[i]!), Math.abs(stepped.samples[i]! - ref[i]!));
        expect(unrolled[i]!).toBeGreaterThanOrEqual(lo);
        expect(unrolled[i]!).toBeLessThanOrEqual(hi);
      }
      seen({ maxAbs: worst });
      expect(worst).toBeLessThanOrEqual(PARITY_TOLERANCE);
      t.params.dispose();
    }
    console.log(`largest UNet parity error in test/export-unet.test.ts: ${worstSeen.toExponential(2)}`);
  });

  const py = pythonWithOnnx();
  if (!py) console.warn('skipping the onnx.checker test: no python3 can `import onnx` (apt-get install -y python3-onnx)');
  test.skipIf(!py)('onnx.checker.check_model(full_check=True) accepts every file', () => {
    const files = readdirSync(join(run, 'onnx')).map((f) => join(run, 'onnx', f));
    const script = 'import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n    print("ok", p)\n';
    const r = spawnSync(py!, ['-c', script, ...files], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(files.length);
  });

  test('`export --triton DIR`: one sampler model per tier, dims [ 8, 8, 1 ] without the batch axis', async () => {
    const repo = join(dir, 'triton');
    const r = await cli(['export', run, '--triton', repo, '--device', 'cpu']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(repo).sort()).toEqual(['sampler_1step', 'sampler_2step', 'sampler_4step']);
    for (const n of STUDENTS) {
      const onnxFile = join(repo, `sampler_${n}step`, '1', 'model.onnx');
      expect(readOnnxInfo(readFileSync(onnxFile), onnxFile)).toMatchObject({ kind: 'sampler', samplerSteps: n, dataShape: [8, 8, 1] });
      const cfg = readFileSync(join(repo, `sampler_${n}step`, 'config.pbtxt'), 'utf8');
      expect(cfg).toMatch(/name: "noise"\s+data_type: TYPE_FP32\s+dims: \[ 8, 8, 1 \]/);
      expect(cfg).toMatch(/name: "sample"\s+data_type: TYPE_FP32\s+dims: \[ 8, 8, 1 \]/);
      expect(cfg).toMatch(/kind: KIND_CPU/);
    }
    if (py) {
      const files = STUDENTS.map((n) => join(repo, `sampler_${n}step`, 'config.pbtxt'));
      const parsed = spawnSync(py, ['test/fixtures/triton_config.py', ...files], { encoding: 'utf8' });
      expect(parsed.stderr).toBe('');
      for (const c of JSON.parse(parsed.stdout) as { input: { dims: string[] }[] }[]) expect(c.input[0]!.dims).toEqual(['8', '8', '1']);
    }
  });

  test('`sample --onnx FILE --n 64 --out grid.png` draws an 8×8 grid of digits, from either graph', async () => {
    for (const kind of ['sampler', 'denoiser']) {
      const png = join(dir, `grid-${kind}.png`);
      const r = await cli(['sample', '--onnx', file(4, kind), '--n', '64', '--out', png]);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/64 samples, 4 steps/);
      const img = PNG.sync.read(readFileSync(png));
      // 8 columns × 8 rows of 8×8 images at 3× with 1-pixel gaps
      expect([img.width, img.height]).toEqual([8 * 25 + 1, 8 * 25 + 1]);
      const grey = new Set<number>();
      for (let i = 0; i < img.data.length; i += 4) grey.add(img.data[i]!);
      expect(grey.size).toBeGreaterThan(16);
    }
    // the same noise through the unrolled graph and through the checkpoint in tfjs gives the same samples
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    expect((await cli(['sample', '--onnx', file(2, 'sampler'), '--n', '16', '--out', a, '--seed', '3'])).code).toBe(0);
    expect((await cli(['sample', ckpt(2), '--n', '16', '--out', b, '--seed', '3', '--backend', 'cpu'])).code).toBe(0);
    const [ja, jb] = [a, b].map((f) => JSON.parse(readFileSync(f, 'utf8')) as { shape: number[]; data: number[] });
    expect(ja!.shape).toEqual([16, 8, 8, 1]);
    ja!.data.forEach((v, i) => expect(Math.abs(v - jb!.data[i]!)).toBeLessThanOrEqual(PARITY_TOLERANCE));
    expect(readState(ckpt(2)).meta.recipe.model.type).toBe('unet');
  });
});
