import { beforeAll, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { outputChannels, PARAMETERIZATIONS } from '../src/diffusion.js';
import { ExportError, ParityError } from '../src/errors.js';
import { exportModels, loadForExport } from '../src/export/export.js';
import { denoiserModel, exportInfo, samplerModel, type ExportInfo } from '../src/export/graphs.js';
import { ExportedModel, readOnnxInfo, sampleExported } from '../src/export/onnxfile.js';
import { denoiserParity, samplerParity, PARITY_TOLERANCE } from '../src/export/parity.js';
import { mlpNetwork } from '../src/model/mlp.js';
import { denoiser, type Network } from '../src/model/network.js';
import { OnnxGraphBuilder } from '../src/onnx/graph.js';
import { onnx } from '../src/onnx/proto.js';
import { parseRecipe, recipeHash } from '../src/recipe.js';
import { Rng } from '../src/rng.js';
import { sample } from '../src/sampler.js';
import { readState, type CheckpointMeta } from '../src/state.js';
import { VERSION } from '../src/version.js';
import { cli, TINY, tinyArgs, tmp } from './helpers.js';

const STUDENTS = [4, 2, 1];

/** A Python that can `import onnx` (Debian's python3-onnx is for /usr/bin/python3; `python3` may be another one). */
function pythonWithOnnx(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0) return py;
  }
  return null;
}

function decode(file: string) {
  const m = onnx.ModelProto.decode(readFileSync(file));
  return Object.assign(m, { graph: m.graph as InstanceType<typeof onnx.GraphProto> });
}

function dimsOf(v: { type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown; dimParam?: string | null }[] | null } | null } | null } | null }): (number | string)[] {
  return (v.type!.tensorType!.shape!.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue)));
}

/** A top-level `key: value` of a config.pbtxt. */
function pbtxtField(text: string, key: string): string | null {
  const m = new RegExp(`^${key}: (.*)$`, 'm').exec(text);
  return m ? m[1]! : null;
}

/** A top-level `key [ … ]` or `key { … }` block of a config.pbtxt, brackets matched. */
function pbtxtBlock(text: string, key: string): string | null {
  const start = text.search(new RegExp(`^${key}\\s*[\\[{]`, 'm'));
  if (start < 0) return null;
  let depth = 0;
  for (let i = start + key.length; i < text.length; i++) {
    if ('[{'.includes(text[i]!)) depth++;
    if (']}'.includes(text[i]!) && --depth === 0) return text.slice(start, i + 1);
  }
  return null;
}

describe('ONNX export of a tiny run', () => {
  const dir = tmp();
  const run = join(dir, 'run');
  const ckpt = (n: number) => join(run, 'checkpoints', `student-${n}.ckpt`);
  const file = (n: number, kind: string) => join(run, 'onnx', `student-${n}.${kind}.onnx`);

  beforeAll(async () => {
    const r = await cli(['run', ...tinyArgs(dir), '--quiet']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  test('`run` exports every student: a denoiser graph and the unrolled sampler, with metadata', () => {
    for (const n of STUDENTS) {
      const { meta } = readState(ckpt(n));
      for (const kind of ['denoiser', 'sampler'] as const) {
        const info = readOnnxInfo(readFileSync(file(n, kind)), file(n, kind));
        expect(info.kind).toBe(kind);
        expect(info.steps).toBe(n);
        expect(info.samplerSteps).toBe(kind === 'sampler' ? n : null);
        expect(info.parameterization).toBe('v');
        expect(info.dataShape).toEqual([2]);
        expect(info.range).toEqual(meta.dataset.range);
        expect(info.dataset).toBe(meta.dataset.name);
        expect(info.recipeHash).toBe(recipeHash(meta.recipe));
        expect(info.version).toBe(VERSION);
        expect(JSON.parse(info.metadata['halfstep.schedule']!)).toMatchObject({ type: 'cosine', logsnr_min: -20, logsnr_max: 20 });
        const m = decode(file(n, kind));
        expect(Number(m.irVersion)).toBe(8);
        expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
        const g = m.graph!;
        if (kind === 'denoiser') {
          expect(g.input.map((i) => [i.name, dimsOf(i)])).toEqual([
            ['x_t', ['batch', 2]],
            ['logsnr', ['batch']],
          ]);
          expect(g.output.map((o) => [o.name, dimsOf(o)])).toEqual([
            ['x0', ['batch', 2]],
            ['eps', ['batch', 2]],
          ]);
        } else {
          expect(g.input.map((i) => [i.name, dimsOf(i)])).toEqual([['noise', ['batch', 2]]]);
          expect(g.output.map((o) => [o.name, dimsOf(o)])).toEqual([['sample', ['batch', 2]]]);
          expect(JSON.parse(info.metadata['halfstep.time_grid']!)).toEqual(Array.from({ length: n + 1 }, (_, k) => (n - k) / n));
        }
      }
      // the unrolled graph holds each weight once, however many steps use it
      const inits = decode(file(n, 'sampler')).graph!.initializer.map((t) => t.name);
      expect(new Set(inits).size).toBe(inits.length);
      expect(inits.filter((x) => x === 'block0.fc1.w')).toHaveLength(1);
    }
  });

  test('every exported graph equals tfjs to 1e-4 (batch 1 and 7), and the unrolled sampler equals the DDIM loop', async () => {
    await initBackend('cpu');
    let worst = 0;
    for (const n of STUDENTS) {
      const t = loadForExport(ckpt(n));
      const info = exportInfo(t.meta);
      const d = denoiserParity(new ExportedModel(file(n, 'denoiser')), t.net, t.params, info);
      const s = samplerParity(new ExportedModel(file(n, 'sampler')), t.net, t.params, info, n);
      expect(d.maxAbs, `student-${n} denoiser ${JSON.stringify(d)}`).toBeLessThanOrEqual(PARITY_TOLERANCE);
      expect(s.maxAbs, `student-${n} sampler ${JSON.stringify(s)}`).toBeLessThanOrEqual(PARITY_TOLERANCE);
      worst = Math.max(worst, d.maxAbs, s.maxAbs);

      // 64 samples three ways from the same noise: unrolled graph, denoiser graph + halfstep's sampler, tfjs
      const noise = new Rng(42).normals(64 * 2);
      const unrolled = sampleExported(new ExportedModel(file(n, 'sampler')), noise).samples;
      const stepped = sampleExported(new ExportedModel(file(n, 'denoiser')), noise);
      expect(stepped.steps).toBe(n);
      const ref = tf.tidy(() => sample(denoiser(t.net, t.params, 'v'), tf.tensor(noise, [64, 2]), n, t.meta.dataset.range).dataSync());
      const [lo, hi] = t.meta.dataset.range;
      for (let i = 0; i < ref.length; i++) {
        expect(Math.abs(unrolled[i]! - ref[i]!)).toBeLessThanOrEqual(PARITY_TOLERANCE);
        expect(Math.abs(stepped.samples[i]! - ref[i]!)).toBeLessThanOrEqual(PARITY_TOLERANCE);
        expect(unrolled[i]!).toBeGreaterThanOrEqual(lo);
        expect(unrolled[i]!).toBeLessThanOrEqual(hi);
      }
    }
    console.log(`largest parity error over the tiny run's students: ${worst.toExponential(2)}`);
  });

  const py = pythonWithOnnx();
  if (!py) console.warn('skipping the onnx.checker test: no python3 can `import onnx` (apt-get install -y python3-onnx)');
  test.skipIf(!py)('onnx.checker.check_model(full_check=True) accepts every file', () => {
    const files = readdirSync(join(run, 'onnx')).map((f) => join(run, 'onnx', f));
    expect(files).toHaveLength(6);
    const script = 'import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n    print("ok", p)\n';
    const r = spawnSync(py!, ['-c', script, ...files], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(files.length);
  });

  test('`export --steps N --out DIR` writes that student only; unknown steps name the ones there are', async () => {
    const out = join(dir, 'only2');
    const r = await cli(['export', run, '--steps', '2', '--out', out]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['student-2.denoiser.onnx', 'student-2.sampler.onnx']);
    expect(r.out).toMatch(/student-2 +denoiser +max \|onnxruntime − tfjs\| \d\.\d\de-\d+/);
    const none = await cli(['export', run, '--steps', '3', '--out', out]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/no 3-step student; it has 4, 2, 1/);
    const one = await cli(['export', ckpt(4), '--out', join(dir, 'one'), '--unrolled-max-steps', '2']);
    expect(one.code).toBe(0);
    expect(readdirSync(join(dir, 'one'))).toEqual(['student-4.denoiser.onnx']);
    const nothing = await cli(['export', run]);
    expect(nothing.code).toBe(2);
    expect(nothing.err).toMatch(/nothing to write: give --out DIR, --triton DIR, or both/);
  });

  test('`export --triton DIR` writes a model repository: one sampler model per tier, batching dims, dynamic batching', async () => {
    const repo = join(dir, 'triton');
    const r = await cli(['export', run, '--triton', repo, '--max-batch-size', '32', '--instances', '2']);
    expect(r.code).toBe(0);
    expect(readdirSync(repo).sort()).toEqual(['sampler_1step', 'sampler_2step', 'sampler_4step']);
    for (const n of STUDENTS) {
      const model = join(repo, `sampler_${n}step`);
      const onnxFile = join(model, '1', 'model.onnx');
      expect(readOnnxInfo(readFileSync(onnxFile), onnxFile)).toMatchObject({ kind: 'sampler', samplerSteps: n });
      const cfg = readFileSync(join(model, 'config.pbtxt'), 'utf8');
      expect(pbtxtField(cfg, 'name')).toBe(`"sampler_${n}step"`);
      expect(pbtxtField(cfg, 'platform')).toBe('"onnxruntime_onnx"');
      expect(pbtxtField(cfg, 'max_batch_size')).toBe('32');
      // dims exclude the batch axis, which the ONNX file leaves symbolic
      const g = decode(onnxFile).graph!;
      expect(dimsOf(g.input[0]!)).toEqual(['batch', 2]);
      const input = pbtxtBlock(cfg, 'input')!;
      expect(input).toMatch(/name: "noise"/);
      expect(input).toMatch(/data_type: TYPE_FP32/);
      expect(input).toMatch(/dims: \[ 2 \]/);
      const output = pbtxtBlock(cfg, 'output')!;
      expect(output).toMatch(/name: "sample"/);
      expect(output).toMatch(/dims: \[ 2 \]/);
      expect(pbtxtBlock(cfg, 'dynamic_batching')).toMatch(/max_queue_delay_microseconds: \d+/);
      const group = pbtxtBlock(cfg, 'instance_group')!;
      expect(group).toMatch(/count: 2/);
      expect(group).toMatch(/kind: KIND_GPU/);
      expect(pbtxtBlock(cfg, 'optimization')).toBeNull();
      // brackets balance: a cheap check that the text format is well formed
      expect(cfg.split('{').length).toBe(cfg.split('}').length);
      expect(cfg.split('[').length).toBe(cfg.split(']').length);
    }
    const trt = await cli(['export', run, '--steps', '1', '--triton', join(dir, 'trt'), '--tensorrt']);
    expect(trt.code).toBe(0);
    const opt = pbtxtBlock(readFileSync(join(dir, 'trt', 'sampler_1step', 'config.pbtxt'), 'utf8'), 'optimization')!;
    expect(opt).toMatch(/gpu_execution_accelerator: \[\s*\{\s*name: "tensorrt"/);
    expect(opt).toMatch(/key: "precision_mode" value: "FP16"/);
    await cli(['export', run, '--steps', '1', '--triton', join(dir, 'trt32'), '--tensorrt', 'fp32']);
    expect(readFileSync(join(dir, 'trt32', 'sampler_1step', 'config.pbtxt'), 'utf8')).toMatch(/value: "FP32"/);
    const cpu = await cli(['export', run, '--steps', '1', '--triton', join(dir, 'cpu'), '--device', 'cpu']);
    expect(cpu.code).toBe(0);
    expect(readFileSync(join(dir, 'cpu', 'sampler_1step', 'config.pbtxt'), 'utf8')).toMatch(/kind: KIND_CPU/);
    const bad = await cli(['export', run, '--triton', join(dir, 'bad'), '--tensorrt', '--device', 'cpu']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--tensorrt needs GPU instances/);
  });

  test.skipIf(!py)('every config.pbtxt parses as Triton\'s ModelConfig (protobuf text format) with the values asked for', async () => {
    const repo = join(dir, 'triton-parsed');
    expect((await cli(['export', run, '--triton', repo, '--tensorrt', 'fp32', '--max-batch-size', '16'])).code).toBe(0);
    const files = STUDENTS.map((n) => join(repo, `sampler_${n}step`, 'config.pbtxt'));
    const r = spawnSync(py!, ['test/fixtures/triton_config.py', ...files], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const configs = JSON.parse(r.stdout) as Record<string, unknown>[];
    STUDENTS.forEach((n, i) =>
      expect(configs[i]).toEqual({
        name: `sampler_${n}step`,
        platform: 'onnxruntime_onnx',
        max_batch_size: 16,
        input: [{ name: 'noise', data_type: 'TYPE_FP32', dims: ['2'] }],
        output: [{ name: 'sample', data_type: 'TYPE_FP32', dims: ['2'] }],
        dynamic_batching: { max_queue_delay_microseconds: '100' },
        instance_group: [{ kind: 'KIND_GPU', count: 1 }],
        optimization: {
          execution_accelerators: {
            gpu_execution_accelerator: [{ name: 'tensorrt', parameters: { precision_mode: 'FP32', max_workspace_size_bytes: '1073741824', trt_engine_cache_enable: '1' } }],
          },
        },
      }),
    );
    // the parser is strict: a field Triton does not know is an error
    const bad = join(dir, 'bad.pbtxt');
    writeFileSync(bad, `${readFileSync(files[0]!, 'utf8')}max_batch: 3\n`);
    const rb = spawnSync(py!, ['test/fixtures/triton_config.py', bad], { encoding: 'utf8' });
    expect(rb.status).not.toBe(0);
    expect(rb.stderr).toMatch(/has no field named "max_batch"/);
  });

  test('`sample --onnx` runs a denoiser graph with halfstep\'s sampler, or an unrolled graph as is', async () => {
    const png = join(dir, 'grid.png');
    const a = await cli(['sample', '--onnx', file(2, 'denoiser'), '--n', '64', '--out', png]);
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/64 samples, 2 steps/);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    const json = join(dir, 'u.json');
    const b = await cli(['sample', '--onnx', file(4, 'sampler'), '--n', '64', '--out', json, '--seed', '5']);
    expect(b.code).toBe(0);
    const got = JSON.parse(readFileSync(json, 'utf8')) as { shape: number[]; steps: number; data: number[] };
    expect(got.shape).toEqual([64, 2]);
    expect(got.steps).toBe(4);
    // the same noise through the denoiser graph and halfstep's loop gives the same samples
    const npy = join(dir, 'd.npy');
    expect((await cli(['sample', '--onnx', file(4, 'denoiser'), '--n', '64', '--out', npy, '--seed', '5'])).code).toBe(0);
    const raw = readFileSync(npy);
    const start = raw.byteOffset + 10 + raw.readUInt16LE(8);
    const d = new Float32Array(raw.buffer.slice(start, raw.byteOffset + raw.length));
    expect(d).toHaveLength(128);
    got.data.forEach((v, i) => expect(Math.abs(v - d[i]!)).toBeLessThanOrEqual(PARITY_TOLERANCE));
    // and the checkpoint itself, sampled by tfjs, agrees too
    const fromCkpt = join(dir, 'c.json');
    expect((await cli(['sample', ckpt(4), '--n', '64', '--out', fromCkpt, '--seed', '5', '--backend', 'cpu'])).code).toBe(0);
    (JSON.parse(readFileSync(fromCkpt, 'utf8')) as { data: number[] }).data.forEach((v, i) => expect(Math.abs(v - got.data[i]!)).toBeLessThanOrEqual(PARITY_TOLERANCE));

    const steps = await cli(['sample', '--onnx', file(4, 'sampler'), '--steps', '2', '--out', json]);
    expect(steps.code).toBe(2);
    expect(steps.err).toMatch(/unrolled 4-step sampler; it cannot sample with 2 steps/);
    const both = await cli(['sample', ckpt(4), '--onnx', file(4, 'sampler'), '--out', json]);
    expect(both.err).toMatch(/give either a checkpoint or --onnx FILE/);
    const notOnnx = join(dir, 'x.onnx');
    writeFileSync(notOnnx, 'hello');
    const r = await cli(['sample', '--onnx', notOnnx, '--out', json]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/x\.onnx: (not an ONNX model|metadata_props lacks "halfstep\.kind")/);
    expect(r.err).not.toMatch(/    at /);
  });

  test('the recipe switch: export.onnx=false writes nothing, unrolled_max_steps limits the sampler graphs', async () => {
    rmSync(join(run, 'onnx'), { recursive: true });
    expect((await cli(['run', ...tinyArgs(dir, ['--set', 'export.onnx=false']), '--quiet'])).code).toBe(0);
    expect(existsSync(join(run, 'onnx'))).toBe(false);
    expect((await cli(['run', ...tinyArgs(dir, ['--set', 'export.unrolled_max_steps=2']), '--quiet'])).code).toBe(0);
    expect(readdirSync(join(run, 'onnx')).sort()).toEqual([
      'student-1.denoiser.onnx',
      'student-1.sampler.onnx',
      'student-2.denoiser.onnx',
      'student-2.sampler.onnx',
      'student-4.denoiser.onnx',
    ]);
  });
});

/** A small MLP with random weights (the zero-initialised layers too), so every layer matters. */
function randomMlp(p: (typeof PARAMETERIZATIONS)[number], seed: number): { net: Network; ps: ReturnType<Network['init']>; info: ExportInfo } {
  const net = mlpNetwork({ type: 'mlp', hidden: 64, blocks: 2, emb_dim: 16 }, [3], outputChannels(p, 3));
  const ps = net.init(new Rng(seed));
  const rng = new Rng(seed + 100);
  for (const q of ps.list) q.variable.assign(tf.add(q.variable, tf.mul(tf.tensor(rng.normals(q.variable.size), q.variable.shape), 0.15)));
  const info: ExportInfo = { modelType: 'mlp', parameterization: p, steps: 3, stage: 'student', round: 1, dataShape: [3], range: [-2, 2], dataset: 'random', recipeHash: '0123456789abcdef' };
  return { net, ps, info };
}

describe('graphs for every parameterization', () => {
  for (const p of PARAMETERIZATIONS) {
    test(`${p}: the denoiser graph (x0 and eps) and a 3-step unrolled sampler equal tfjs to 1e-4`, async () => {
      await initBackend('cpu');
      const { net, ps, info } = randomMlp(p, 7);
      const d = denoiserParity(new ExportedModel(`${p}-denoiser`, denoiserModel(net, ps, info)), net, ps, info);
      const s = samplerParity(new ExportedModel(`${p}-sampler`, samplerModel(net, ps, info, 3)), net, ps, info, 3);
      expect(d.maxAbs, JSON.stringify(d)).toBeLessThanOrEqual(PARITY_TOLERANCE);
      expect(s.maxAbs, JSON.stringify(s)).toBeLessThanOrEqual(PARITY_TOLERANCE);
      // the outputs are not trivially equal: x0 varies with λ and is not the input
      const m = new ExportedModel('d', denoiserModel(net, ps, info));
      const xt = new Float32Array([0.3, -0.2, 0.1, 0.3, -0.2, 0.1]);
      const r = m.denoiseRaw(xt, new Float32Array([-3, 3]));
      expect(Math.abs(r.x0[0]! - r.x0[3]!)).toBeGreaterThan(1e-3);
    });
  }
});

describe('export errors', () => {
  test('an op with no ONNX mapping names the op and the layer', () => {
    const g = new OnnxGraphBuilder('unet');
    const x = g.input('x', ['batch', 8, 4, 4]);
    const err = (() => {
      try {
        g.layer('down0', () => g.layer('norm', () => g.op('GroupNormalization', [x])));
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ExportError);
    expect(err!.message).toMatch(/op "GroupNormalization" has no ONNX mapping \(layer "down0\/norm" of graph "unet"; opset 17\): GroupNormalization is opset 18/);
    expect(() => g.layer('up1.conv', () => g.op('Conv2D', [x]))).toThrow(/op "Conv2D" has no ONNX mapping \(layer "up1\.conv"/);
    expect(() => g.op('Add', [x])).toThrow(/op "Add" takes 2 inputs; got 1 \(layer "\(graph\)"/);
    expect(() => g.op('Relu', ['nowhere'])).toThrow(/reads "nowhere", which no earlier node, input or initializer defines/);
  });

  test('a network without exportOnnx is an error naming its model type', () => {
    const { net, ps, info } = randomMlp('x', 1);
    const bare: Network = { dataShape: net.dataShape, outChannels: net.outChannels, init: net.init, apply: net.apply };
    expect(() => denoiserModel(bare, ps, { ...info, modelType: 'unet' })).toThrow(/model type "unet" cannot be exported to ONNX: its network does not implement exportOnnx/);
  });

  test('a parity failure stops the export, names the output and the element, and writes nothing', async () => {
    await initBackend('cpu');
    const { net, ps } = randomMlp('x', 3);
    // a graph that is off by 0.1%: what an exportOnnx with a wrong constant would write
    const wrong: Network = { ...net, exportOnnx: (g, p, z, l) => g.op('Mul', [net.exportOnnx!(g, p, z, l), g.constant(1.001)]) };
    const recipe = parseRecipe(readFileSync(TINY, 'utf8'), TINY, ['model.parameterization=x']);
    const meta = { recipe, stage: 'distill', steps: 3, round: 1, dataset: { name: 'random', shape: [3], range: [-2, 2] } } as unknown as CheckpointMeta;
    const out = join(tmp(), 'onnx');
    const err = await exportModels([{ net: wrong, params: ps, meta, label: 'student-3' }], { outDir: out, unrolledMaxSteps: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParityError);
    const pe = err as ParityError;
    expect(pe.message).toMatch(/^student-3 denoiser graph: parity check failed: max \|onnxruntime − tfjs\| = \d\.\d+e-\d > 0\.0001 at output "(x0|eps)", batch size (1|7), index \[\d, [012]\] \(onnxruntime -?\d.*, tfjs -?\d.*\); nothing was written/);
    expect(pe.worst.maxAbs).toBeGreaterThan(1e-4);
    expect(pe.worst.index).toHaveLength(2);
    expect(Math.abs(pe.worst.onnx - pe.worst.reference)).toBeCloseTo(pe.worst.maxAbs, 6);
    expect(readdirSync(out)).toEqual([]);
    // and the same network, exported correctly, passes
    const ok = await exportModels([{ net, params: ps, meta, label: 'student-3' }], { outDir: out, unrolledMaxSteps: 8 });
    expect(ok.map((g) => g.kind)).toEqual(['denoiser', 'sampler']);
    expect(readdirSync(out).sort()).toEqual(['student-3.denoiser.onnx', 'student-3.sampler.onnx']);
  });
});
