import { beforeAll, describe, expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { Rng } from '../src/rng.js';
import { unetNetwork, type UnetConfig } from '../src/model/unet.js';
import { upsample2x } from '../src/model/unet-layers.js';
import { createNetwork } from '../src/model/index.js';
import type { Network } from '../src/model/network.js';
import type { ParamSet } from '../src/model/params.js';
import { Adam } from '../src/optim.js';
import { parseRecipe, type Recipe } from '../src/recipe.js';
import { RecipeError } from '../src/errors.js';
import { IMAGE_SAMPLE_CHUNK, timedSample } from '../src/eval/evaluate.js';
import { sample } from '../src/sampler.js';
import { denoiser } from '../src/model/network.js';
import type { Job } from '../src/stage.js';
import type { TrainedModel } from '../src/train.js';
import { relErr, stockCpuBackend } from './helpers.js';

const tiny: UnetConfig = {
  type: 'unet',
  channels: 8,
  channel_mults: [1, 2],
  num_res_blocks: 1,
  attention_resolutions: [4],
  dropout: 0,
  groups: 4,
  emb_dim: 8,
  heads: 2,
};

/** Replace every weight by small random values, so that the zero-initialised layers take part. */
function randomize(ps: ParamSet, seed: number): void {
  const rng = new Rng(seed);
  for (const p of ps.list) p.variable.assign(tf.tensor(rng.normals(p.variable.size).map((v) => 0.3 * v), p.variable.shape));
}

function inputs(net: Network, batch: number, seed: number): { z: tf.Tensor; l: tf.Tensor } {
  const rng = new Rng(seed);
  const shape = [batch, ...net.dataShape];
  return { z: tf.tensor(rng.normals(shape.reduce((a, b) => a * b, 1)), shape), l: tf.tensor1d(Array.from({ length: batch }, () => 8 * rng.normal())) };
}

/** Output and the gradient of Σ out² with respect to every parameter (in ParamSet order). */
function outputAndGrads(net: Network, ps: ParamSet, z: tf.Tensor, l: tf.Tensor): Float32Array[] {
  return tf.tidy(() => {
    const y = net.apply(ps, z, l, false).dataSync() as Float32Array;
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(net.apply(ps, z, l, false))) as tf.Scalar, ps.list.map((p) => p.variable));
    value.dispose();
    return [y, ...ps.list.map((p) => grads[p.variable.name]!.dataSync() as Float32Array)];
  });
}

// Reference: the whole UNet on the stock tfjs cpu backend (plain kernels, GroupNorm composed of tfjs ops).
const refNet = unetNetwork(tiny, [8, 8, 2], 2);
let reference: Float32Array[];
beforeAll(async () => {
  await stockCpuBackend();
  expect((tf.getKernel('Conv2D', 'cpu') as { halfstep?: boolean }).halfstep).toBeUndefined();
  const ps = refNet.init(new Rng(1));
  randomize(ps, 2);
  const { z, l } = inputs(refNet, 3, 3);
  reference = outputAndGrads(refNet, ps, z, l);
  tf.dispose([z, l]);
  ps.dispose();
  await initBackend('wasm');
});

describe('UNet', () => {
  test('output shape: [B, H, W, outChannels], square or not', () => {
    for (const [shape, out] of [
      [[8, 8, 1], 1],
      [[8, 12, 3], 6],
    ] as const) {
      const net = unetNetwork(tiny, [...shape], out);
      const ps = net.init(new Rng(0));
      const { z, l } = inputs(net, 2, 1);
      const y = net.apply(ps, z, l, false);
      expect(y.shape).toEqual([2, shape[0], shape[1], out]);
      tf.dispose([z, l, y]);
      ps.dispose();
    }
  });

  test('the parameter count of a small config, by hand', () => {
    // channels 4, one level, one block, no attention, emb 8 (time MLP width 16), data 4×4×1:
    // temb 8·16+16 + 16·16+16 = 416; in 9·1·4+4 = 40; a 4→4 block = 2·8 (norms) + 2·(9·16+4) + 16·4+4 = 380,
    // down 380 + mid 2·380; up: two 8→4 blocks (8+4 channels in: skip concatenated) = 16+8 + (9·32+4) + (9·16+4) + 68 + 1×1 skip 36 = 568 each;
    // out norm 8 + conv 9·4+1 = 45.
    const net = unetNetwork({ ...tiny, channels: 4, channel_mults: [1], attention_resolutions: [], groups: 2 }, [4, 4, 1], 1);
    const ps = net.init(new Rng(0));
    expect(ps.count()).toBe(416 + 40 + 380 + 760 + 2 * 568 + 45);
    ps.dispose();
  });

  test('the parameter count follows the keys; heads and groups change none', () => {
    const count = (cfg: Partial<UnetConfig>) => {
      const ps = unetNetwork({ ...tiny, attention_resolutions: [8], ...cfg }, [16, 16, 1], 1).init(new Rng(0));
      const n = ps.count();
      ps.dispose();
      return n;
    };
    const base = count({});
    expect(count({ channels: 16 })).toBeGreaterThan(base);
    expect(count({ num_res_blocks: 2 })).toBeGreaterThan(base);
    expect(count({ channel_mults: [1, 2, 2], attention_resolutions: [4] })).toBeGreaterThan(base);
    expect(count({ attention_resolutions: [] })).toBeLessThan(base);
    expect(count({ attention_resolutions: [16, 8] })).toBeGreaterThan(base);
    expect(count({ emb_dim: 32 })).toBeGreaterThan(base);
    expect(count({ heads: 4 })).toBe(base);
    expect(count({ groups: 2 })).toBe(base);
    expect(count({ dropout: 0.3 })).toBe(base);
  });

  test('zero-initialised output conv and second conv of every block: a fresh network outputs 0', () => {
    const net = unetNetwork(tiny, [8, 8, 1], 1);
    const ps = net.init(new Rng(4));
    const zeroed = ps.list.filter((p) => /(conv2|out\.conv|attn\d*\.proj|mid\.attn\.proj)\.w$/.test(p.name));
    expect(zeroed.length).toBeGreaterThan(4);
    for (const p of zeroed) expect(tf.max(tf.abs(p.variable)).dataSync()[0], p.name).toBe(0);
    expect(tf.max(tf.abs(ps.get('down0.res0.conv1.w'))).dataSync()[0]).toBeGreaterThan(0);
    const { z, l } = inputs(net, 2, 5);
    expect(Array.from(net.apply(ps, z, l, false).dataSync()).every((v) => v === 0)).toBe(true);
    ps.dispose();
  });

  test('initialisation is deterministic: same seed, same weights; another seed, other weights', () => {
    const net = unetNetwork(tiny, [8, 8, 1], 1);
    const [a, b, c] = [net.init(new Rng(7)), net.init(new Rng(7)), net.init(new Rng(8))];
    expect(a.list.map((p) => p.name)).toEqual(c.list.map((p) => p.name));
    let differs = false;
    a.list.forEach((p, i) => {
      expect(Array.from(p.variable.dataSync()), p.name).toEqual(Array.from(b.list[i]!.variable.dataSync()));
      if (Array.from(p.variable.dataSync()).some((v, k) => v !== c.list[i]!.variable.dataSync()[k])) differs = true;
    });
    expect(differs).toBe(true);
    [a, b, c].forEach((p) => p.dispose());
  });

  test('wasm with halfstep kernels: output and all parameter gradients agree with the stock cpu backend to 1e-4', () => {
    expect(tf.getBackend()).toBe('wasm');
    const ps = refNet.init(new Rng(1));
    randomize(ps, 2);
    const { z, l } = inputs(refNet, 3, 3);
    const ours = outputAndGrads(refNet, ps, z, l);
    expect(relErr(ours[0]!, reference[0]!), 'output').toBeLessThan(1e-4);
    ps.list.forEach((p, i) => expect(relErr(ours[i + 1]!, reference[i + 1]!), p.name).toBeLessThan(1e-4));
    tf.dispose([z, l]);
    ps.dispose();
  });

  test('dropout: masks come from the Rng given to apply (same state, same output), off when not training', () => {
    const net = unetNetwork({ ...tiny, dropout: 0.5 }, [8, 8, 1], 1);
    const ps = net.init(new Rng(0));
    randomize(ps, 9);
    const { z, l } = inputs(net, 2, 6);
    const run = (training: boolean, rng?: Rng) => Array.from(net.apply(ps, z, l, training, rng).dataSync());
    const a = run(true, new Rng(11));
    expect(run(true, new Rng(11))).toEqual(a);
    expect(run(true, new Rng(12))).not.toEqual(a);
    expect(run(false)).toEqual(run(false, new Rng(11)));
    expect(run(false)).not.toEqual(a);
    // resumed = uninterrupted: a generator restored from a saved state draws the same masks
    const r = new Rng(13);
    run(true, r);
    const saved = r.state();
    const next = run(true, r);
    expect(run(true, new Rng(saved))).toEqual(next);
    expect(() => run(true)).toThrow(/Rng/);
    tf.dispose([z, l]);
    ps.dispose();
  });

  test('training on wasm lowers the loss on a tiny batch and reaches every parameter', () => {
    const net = unetNetwork({ ...tiny, dropout: 0.1 }, [8, 8, 1], 1);
    const ps = net.init(new Rng(3));
    const init = ps.list.map((p) => p.variable.dataSync().slice());
    const rng = new Rng(4);
    const x = tf.tensor4d(Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i / 5)), [4, 8, 8, 1]);
    const { z, l } = inputs(net, 4, 8);
    const adam = new Adam(ps, { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    const vars = ps.list.map((p) => p.variable);
    const losses: number[] = [];
    for (let step = 0; step < 25; step++) {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.squaredDifference(net.apply(ps, z, l, true, rng), x)) as tf.Scalar, vars);
      losses.push(value.dataSync()[0]!);
      adam.apply(ps.list.map((p) => grads[p.variable.name]!), 3e-3);
      tf.dispose([value, ...Object.values(grads)]);
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(0.5 * losses[0]!);
    ps.list.forEach((p, i) => expect(Array.from(p.variable.dataSync()), `${p.name} never changed`).not.toEqual(Array.from(init[i]!)));
    adam.dispose?.();
    tf.dispose([x, z, l]);
    ps.dispose();
  });
});

test('upsample2x equals nearest-neighbour resizing, and its gradient sums each 2×2 block', () => {
  const rng = new Rng(21);
  const x = tf.tensor4d(rng.normals(3 * 4 * 5 * 2), [3, 4, 5, 2]);
  const r = tf.tensor4d(rng.normals(3 * 8 * 10 * 2), [3, 8, 10, 2]);
  expect(Array.from(upsample2x(x).dataSync())).toEqual(Array.from(tf.image.resizeNearestNeighbor(x, [8, 10]).dataSync()));
  const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(upsample2x(a), r)))(x).dataSync();
  const R = r.dataSync();
  let err = 0;
  for (let b = 0; b < 3; b++)
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 5; j++)
        for (let c = 0; c < 2; c++) {
          let s = 0;
          for (const di of [0, 1]) for (const dj of [0, 1]) s += R[((b * 8 + 2 * i + di) * 10 + 2 * j + dj) * 2 + c]!;
          err = Math.max(err, Math.abs(s - g[((b * 4 + i) * 5 + j) * 2 + c]!));
        }
  expect(err).toBeLessThan(1e-5);
});

describe('UNet recipe keys and errors', () => {
  const recipe = (model: string): Recipe => parseRecipe(`name: t\ndata: {path: /nonexistent.arrow, generate: {}}\nmodel: ${model}\n`);
  const error = (f: () => unknown): RecipeError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(RecipeError);
      return e as RecipeError;
    }
    throw new Error('expected a RecipeError');
  };

  test('defaults, and createNetwork builds the UNet for image data', () => {
    const r = recipe('{type: unet}');
    expect(r.model.unet).toEqual({ channels: 32, channel_mults: [1, 2, 2], num_res_blocks: 2, attention_resolutions: [7], dropout: 0, groups: 8, emb_dim: 64, heads: 1 });
    const net = createNetwork(recipe('{type: unet, parameterization: both, unet: {channels: 8, channel_mults: [1, 2], attention_resolutions: [14], groups: 4}}').model, [28, 28, 1]);
    expect(net.outChannels).toBe(2);
    expect(net.dataShape).toEqual([28, 28, 1]);
  });

  test('unknown and mistyped keys name themselves', () => {
    expect(error(() => recipe('{type: unet, unet: {chanels: 8}}')).path).toBe('model.unet.chanels');
    expect(error(() => recipe('{type: unet, unet: {channel_mults: 2}}')).path).toBe('model.unet.channel_mults');
    expect(error(() => recipe('{type: unet, unet: {channel_mults: [1, 0]}}')).path).toBe('model.unet.channel_mults[1]');
    expect(error(() => recipe('{type: unet, unet: {dropout: 1.5}}')).path).toBe('model.unet.dropout');
    expect(error(() => recipe('{type: convnet}')).message).toMatch(/mlp, unet/);
  });

  test('createNetwork refuses data the UNet cannot take, naming the key and the numbers', () => {
    const m = (unet: string) => recipe(`{type: unet, unet: ${unet}}`).model;
    let e = error(() => createNetwork(m('{}'), [2]));
    expect(e.path).toBe('model.type');
    expect(e.message).toMatch(/\[H, W, C\].*\[2\]/);
    e = error(() => createNetwork(m('{channel_mults: [1, 2, 2, 2], attention_resolutions: []}'), [28, 28, 1]));
    expect(e.path).toBe('model.unet.channel_mults');
    expect(e.message).toMatch(/divisible by 8.*28×28/);
    e = error(() => createNetwork(m('{channel_mults: [1, 2]}'), [28, 28, 1]));
    expect(e.path).toBe('model.unet.attention_resolutions');
    expect(e.message).toMatch(/7 .*28, 14/);
    e = error(() => createNetwork(m('{groups: 3}'), [28, 28, 1]));
    expect(e.path).toBe('model.unet.groups');
    e = error(() => createNetwork(m('{emb_dim: 7}'), [28, 28, 1]));
    expect(e.path).toBe('model.unet.emb_dim');
    e = error(() => createNetwork(m('{heads: 3}'), [28, 28, 1]));
    expect(e.path).toBe('model.unet.heads');
    expect(error(() => createNetwork(recipe('{type: mlp}').model, [28, 28, 1])).path).toBe('model.type');
  });
});

test('evaluation samples images in chunks of IMAGE_SAMPLE_CHUNK and gets the samples of one whole batch', async () => {
  const net = unetNetwork(tiny, [8, 8, 2], 2);
  const ps = net.init(new Rng(5));
  randomize(ps, 6);
  const n = IMAGE_SAMPLE_CHUNK + 3;
  const noise = new Rng(7).normals(n * 8 * 8 * 2);
  const job = { net, dataset: { shape: [8, 8, 2], range: [-1, 1] }, recipe: { model: { parameterization: 'v' } } } as unknown as Job;
  const { samples } = await timedSample(job, { params: ps } as TrainedModel, noise, 2, 1);
  const whole = tf.tidy(() => sample(denoiser(net, ps, 'v'), tf.tensor(noise, [n, 8, 8, 2]), 2, [-1, 1]).dataSync() as Float32Array);
  expect(samples.length).toBe(whole.length);
  expect(relErr(samples, whole)).toBeLessThan(1e-5);
  ps.dispose();
});
