// The WGSL GroupNorm kernels (src/kernels/webgpu/groupnorm.ts) against GroupNorm(+SiLU) composed of
// tfjs ops and its tf.grads gradients on the stock cpu backend. Needs a WebGPU adapter (a GPU, or
// Mesa's lavapipe for Dawn on a machine without one); the file is skipped where there is none.
import { beforeAll, describe, expect, test, vi } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { BackendUnavailableError } from '../src/errors.js';
import { fusedGroupNormAvailable, GROUP_NORM, GROUP_NORM_GRAD } from '../src/kernels/groupnorm.js';
import { isHalfstepKernel } from '../src/kernels/registry.js';
import { registerWebgpuGroupNorm } from '../src/kernels/webgpu/groupnorm.js';
import { groupNormAct } from '../src/model/unet-layers.js';
import { ParamSet } from '../src/model/params.js';
import { Rng } from '../src/rng.js';
import { relErr, stockCpuBackend } from './helpers.js';

// Dawn wants a runtime directory for its Vulkan loader.
process.env.XDG_RUNTIME_DIR ??= '/tmp';

let unavailable: string | null = null;
try {
  await initBackend('webgpu');
} catch (e) {
  if (!(e instanceof BackendUnavailableError)) throw e;
  unavailable = e.message;
  console.warn(`test/webgpu-groupnorm.test.ts skipped: no WebGPU here (${e.message})`);
}

interface Case {
  shape: [number, number, number, number];
  groups: number;
  silu: boolean;
  eps: number;
}

const cases: Case[] = [];
for (const silu of [true, false]) {
  cases.push({ shape: [2, 4, 4, 8], groups: 2, silu, eps: 1e-5 });
  cases.push({ shape: [3, 5, 7, 6], groups: 3, silu, eps: 1e-5 }); // odd sizes
  cases.push({ shape: [2, 8, 8, 16], groups: 8, silu, eps: 1e-5 });
  // more values per group (288) and rows per channel (288) than a workgroup has invocations
  cases.push({ shape: [2, 12, 12, 4], groups: 2, silu, eps: 1e-3 });
}

const NAMES = ['y', 'mean', 'rstd', 'dx', 'dgamma', 'dbeta'] as const;
type Outputs = Record<(typeof NAMES)[number], Float32Array>;

interface Inputs {
  x: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  r: Float32Array;
}

function inputsFor(c: Case, seed: number): Inputs {
  const rng = new Rng(seed);
  const size = c.shape.reduce((a, b) => a * b, 1);
  const C = c.shape[3];
  // x with an offset and a scale per channel: a one-pass variance would lose digits here
  const x = rng.normals(size).map((v, i) => 3 + (1 + (i % C) * 0.25) * v);
  return { x, gamma: rng.normals(C).map((v) => 1 + 0.5 * v), beta: rng.normals(C).map((v) => 0.5 * v), r: rng.normals(size) };
}

/** GroupNorm(+SiLU) from tfjs ops, as in model/unet-layers.ts's groupNorm. */
function reference(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, c: Case) {
  const [B, H, W, C] = c.shape;
  const xr = tf.reshape(x, [B, H * W, c.groups, C / c.groups]);
  const { mean, variance } = tf.moments(xr, [1, 3], true);
  const rstd = tf.rsqrt(tf.add(variance, c.eps));
  const a = tf.add(tf.mul(tf.reshape(tf.mul(tf.sub(xr, mean), rstd), [B, H, W, C]), gamma), beta);
  const y = c.silu ? tf.mul(a, tf.sigmoid(a)) : a;
  return { y, mean: tf.reshape(mean, [B, c.groups]), rstd: tf.reshape(rstd, [B, c.groups]) };
}

async function read(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

describe.skipIf(unavailable !== null)('GroupNorm(+SiLU) in WGSL on webgpu agrees with tfjs ops on the stock cpu backend', () => {
  const refs: Outputs[] = [];
  const inputs = cases.map((c, i) => inputsFor(c, 100 + i));

  beforeAll(async () => {
    await stockCpuBackend();
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false; // no tfjs-node banner
    expect(tf.getKernel(GROUP_NORM, 'cpu')).toBeUndefined();
    for (const [i, c] of cases.entries()) {
      const { x, gamma, beta, r } = inputs[i]!;
      const xt = tf.tensor(x, c.shape);
      const gt = tf.tensor(gamma);
      const bt = tf.tensor(beta);
      const rt = tf.tensor(r, c.shape);
      const f = reference(xt, gt, bt, c);
      const [dx, dgamma, dbeta] = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(reference(a, g, b, c).y, rt)))([xt, gt, bt]);
      refs.push({ y: await read(f.y), mean: await read(f.mean), rstd: await read(f.rstd), dx: await read(dx!), dgamma: await read(dgamma!), dbeta: await read(dbeta!) });
      tf.dispose([xt, gt, bt, rt, f.y, f.mean, f.rstd, dx!, dgamma!, dbeta!]);
    }
    await tf.setBackend('webgpu');
    registerWebgpuGroupNorm();
  });

  test('the kernels are registered on webgpu and replace nothing twice', () => {
    expect(tf.getBackend()).toBe('webgpu');
    expect(isHalfstepKernel(GROUP_NORM, 'webgpu')).toBe(true);
    expect(isHalfstepKernel(GROUP_NORM_GRAD, 'webgpu')).toBe(true);
    registerWebgpuGroupNorm(); // idempotent
    expect(fusedGroupNormAvailable()).toBe(true);
  });

  for (const [i, c] of cases.entries()) {
    test(`x [${c.shape.join(', ')}], ${c.groups} groups, silu ${c.silu}, eps ${c.eps}: y, mean, rstd, dx, dgamma, dbeta`, async () => {
      const { x, gamma, beta, r } = inputs[i]!;
      const xt = tf.tensor(x, c.shape);
      const gt = tf.tensor(gamma);
      const bt = tf.tensor(beta);
      const dy = tf.tensor(r, c.shape);
      const attrs = { groups: c.groups, eps: c.eps, silu: c.silu };
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const dataBefore = backend.numDataIds();
      const run = (name: string, ins: Record<string, tf.Tensor>) => tf.engine().runKernel(name, ins, attrs) as unknown as tf.Tensor[];
      const [y, mean, rstd] = run(GROUP_NORM, { x: xt, gamma: gt, beta: bt });
      const [dx, dgamma, dbeta] = run(GROUP_NORM_GRAD, { x: xt, gamma: gt, beta: bt, mean: mean!, rstd: rstd!, dy });
      const outs = [y!, mean!, rstd!, dx!, dgamma!, dbeta!];
      expect(outs.map((t) => t.shape)).toEqual([c.shape, [c.shape[0], c.groups], [c.shape[0], c.groups], c.shape, [c.shape[3]], [c.shape[3]]]);
      const errs: Record<string, number> = {};
      for (const [j, name] of NAMES.entries()) errs[name] = relErr(await read(outs[j]!), refs[i]![name]);
      console.log(`webgpu GroupNorm [${c.shape}] g${c.groups} silu=${c.silu}: ${NAMES.map((n) => `${n} ${errs[n]!.toExponential(2)}`).join(', ')}`);
      for (const name of NAMES) expect(errs[name], name).toBeLessThan(1e-4);
      // the kernels' intermediate ([n, G, 2] statistics) is freed: only the six outputs remain
      expect(backend.numDataIds()).toBe(dataBefore + 6);
      tf.dispose([...outs, xt, gt, bt, dy]);
    });
  }

  test('groupNormAct uses the kernels on webgpu, and its gradients (through tf.customGrad) match', async () => {
    const i = cases.findIndex((c) => c.shape[1] === 5 && c.silu);
    const c = cases[i]!;
    const { x, gamma, beta, r } = inputs[i]!;
    const ps = new ParamSet();
    ps.add('gn.g', tf.tensor(gamma));
    ps.add('gn.b', tf.tensor(beta));
    const xv = tf.variable(tf.tensor(x, c.shape));
    const rt = tf.tensor(r, c.shape);
    const spy = vi.spyOn(tf.engine(), 'runKernel');
    try {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(groupNormAct(ps, 'gn', xv, c.groups, c.silu, c.eps), rt)) as tf.Scalar, [xv, ps.get('gn.g'), ps.get('gn.b')]);
      const kernelsRun = spy.mock.calls.map((call) => call[0]);
      expect(kernelsRun).toContain(GROUP_NORM);
      expect(kernelsRun).toContain(GROUP_NORM_GRAD);
      const got = { dx: await read(grads[xv.name]!), dgamma: await read(grads[ps.get('gn.g').name]!), dbeta: await read(grads[ps.get('gn.b').name]!) };
      for (const name of ['dx', 'dgamma', 'dbeta'] as const) expect(relErr(got[name], refs[i]![name]), name).toBeLessThan(1e-4);
      tf.dispose([value, ...Object.values(grads)]);
    } finally {
      spy.mockRestore();
    }
    tf.dispose([xv, rt]);
    ps.dispose();
  });
});
