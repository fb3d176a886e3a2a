/**
 * GroupNorm (optionally followed by SiLU) on NHWC float32 tensors as WGSL programs on
 * tfjs-backend-webgpu: the kernels HalfstepGroupNorm and HalfstepGroupNormGrad with the contracts of
 * the cpu/wasm ones (kernels/groupnorm.ts), so that `groupNormAct` (model/unet-layers.ts) runs
 * GroupNorm + SiLU as 1 dispatch forward and 2 backward instead of ~40 tfjs ops.
 *
 *   HalfstepGroupNorm      (x, gamma, beta)                 → (y, mean, rstd)
 *   HalfstepGroupNormGrad  (x, gamma, beta, mean, rstd, dy) → (dx, dgamma, dbeta)
 *
 * Formulas, per example n and group g over its N = H·W·C/G values:
 *   μ = Σx / N, rstd = 1/√(Σ(x − μ)²/N + ε) (two passes, not E[x²] − μ²), x̂ = (x − μ)·rstd,
 *   a = γ·x̂ + β, y = a·σ(a) (SiLU) or a.
 *   Backward with ga = dy·σ(a)·(1 + a·(1 − σ(a))) (SiLU) or dy:
 *   dβ = Σ ga, dγ = Σ ga·x̂ (both per channel over n, h, w),
 *   m1 = Σ_group γ·ga / N, m2 = Σ_group γ·ga·x̂ / N, dx = rstd·(γ·ga − m1 − x̂·m2).
 *
 * Dispatches (raw ones, raw.ts, since they write several outputs; every dispatch costs the host far
 * more than these kernels cost the GPU). Forward, one workgroup of 256 invocations per (n, g): μ by a
 * loop over the group's values and a tree reduction in workgroup memory, Σ(x − μ)² the same way, then
 * y for the group's values; it writes y, mean and rstd. Backward: dx, one workgroup per (n, g) that
 * reduces m1 and m2 and then writes the group's dx; dγ and dβ, one workgroup per channel looping over
 * the n·h·w rows. ga is recomputed where needed (from x, the statistics, γ, β and dy), so no
 * full-size intermediate is written.
 *
 * The geometry (h, w, c, groups, ε, SiLU) is baked into the WGSL as constants and into the program
 * key; the batch size n is a uniform, so a pipeline serves every batch size. Every program binds only
 * the inputs its code reads (the pipelines' bind group layouts are derived from the code).
 */
import { tf } from '../../tf.js';
import { GROUP_NORM, GROUP_NORM_GRAD, type GroupNormAttrs } from '../groupnorm.js';
import { replaceKernel } from '../registry.js';
import { FLAT_WORKGROUP, spread, webgpuBackend } from './program.js';
import { rawDispatch, rawPipeline } from './raw.js';

type Info = tf.TensorInfo;

const WG = 256;

interface Geometry {
  h: number;
  w: number;
  c: number;
  groups: number;
  eps: number;
  silu: boolean;
}

function geometryOf(x: Info, a: GroupNormAttrs): Geometry {
  if (x.shape.length !== 4) throw new Error(`${GROUP_NORM} on webgpu: x must be NHWC (rank 4), got shape [${x.shape.join(', ')}]`);
  const [, h, w, c] = x.shape as [number, number, number, number];
  if (c % a.groups !== 0) throw new Error(`${GROUP_NORM} on webgpu: ${c} channels do not split into ${a.groups} groups`);
  return { h, w, c, groups: a.groups, eps: a.eps, silu: !!a.silu };
}

/** An f32 WGSL literal for `v` (exponent form, as exact as JS prints it). */
function f32Literal(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`GroupNorm on webgpu: eps must be finite, got ${v}`);
  return v.toExponential();
}

function keyOf(kind: string, k: Geometry): string {
  return `groupnorm_${kind}_${k.h}_${k.w}_${k.c}_${k.groups}_${f32Literal(k.eps)}_${k.silu ? 1 : 0}`;
}

/** Geometry constants and helpers shared by all programs (WGSL). */
function header(k: Geometry): string {
  const cg = k.c / k.groups;
  return `
    const H = ${k.h};
    const W = ${k.w};
    const C = ${k.c};
    const G = ${k.groups};
    const CG = ${cg};
    const HW = ${k.h * k.w};
    const COUNT = ${k.h * k.w * cg};
    const EPS : f32 = ${f32Literal(k.eps)};
    const WG = ${WG}u;

    // dL/da from dy: through SiLU a·σ(a), σ(a)·(1 + a·(1 − σ(a))), or the identity.
    fn actGrad(a : f32, dyv : f32) -> f32 {
      ${k.silu ? 'let s = 1.0 / (1.0 + exp(-a));\n      return dyv * s * (1.0 + a * (1.0 - s));' : 'return dyv;'}
    }`;
}

/** A tree reduction over `arrays` (workgroup arrays of WG f32) after each invocation stored its value; the sums end in [0]. WGSL. */
function treeReduce(arrays: string[]): string {
  return `
      workgroupBarrier();
      for (var k = WG / 2u; k > 0u; k = k >> 1u) {
        if (localIndex < k) {
          ${arrays.map((a) => `${a}[localIndex] = ${a}[localIndex] + ${a}[localIndex + k];`).join('\n          ')}
        }
        workgroupBarrier();
      }`;
}

/**
 * One workgroup per (n, g): its flat workgroup number `wg`, `live` false for the spare workgroups of a
 * 2-D dispatch (no early return, so that the barriers stay in uniform control flow), and `base`, the
 * flat index of the group's first value. Needs NG (the number of groups) in scope. WGSL.
 */
const GROUP_IDS = `
      let wg = ${FLAT_WORKGROUP};
      let live = wg < NG;
      let nn = wg / G;
      let g = wg - nn * G;
      let base = nn * HW * C + g * CG;`;

/** `body` run for each of the group's values (after GROUP_IDS), with `idx` (flat index into x) and `ch` (channel). WGSL. */
function groupLoop(body: string): string {
  return `
      if (live) {
        for (var i = i32(localIndex); i < COUNT; i = i + i32(WG)) {
          let p = i / CG;
          let j = i - p * CG;
          let idx = base + p * C + j;
          let ch = g * CG + j;
          ${body}
        }
      }`;
}

/**
 * The binding declarations of a raw program: read_write buffers `outputs`, then read-only `inputs`
 * (only those the code reads: the layout is derived from the code), then the uniform `u.n` (the batch
 * size). WGSL.
 */
function bindings(outputs: string[], inputs: string[]): string {
  const names = [...outputs, ...inputs];
  return `${names.map((name, i) => `@group(0) @binding(${i}) var<storage, ${i < outputs.length ? 'read_write' : 'read'}> ${name} : array<f32>;`).join('\n    ')}
    struct U { n : i32 };
    @group(0) @binding(${names.length}) var<uniform> u : U;`;
}

/** The entry point, with the builtins under the names the helpers use. WGSL. */
const ENTRY = `@compute @workgroup_size(${WG})
    fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>, @builtin(num_workgroups) numWorkgroups : vec3<u32>)`;

interface RawProgram {
  key: string;
  code: string;
  outputs: string[];
  inputs: string[];
}

/**
 * Forward, one workgroup per (n, g): μ (sum, tree reduction), then Σ(x − μ)² the same way, then y for
 * the group's values; writes Y, MEAN and RSTD.
 */
function forwardProgram(k: Geometry): RawProgram {
  const outputs = ['Y', 'MEAN', 'RSTD'];
  const inputs = ['X', 'GAMMA', 'BETA'];
  const code = `${header(k)}
    ${bindings(outputs, inputs)}
    var<workgroup> part : array<f32, ${WG}>;
    ${ENTRY} {
      let NG = u.n * G;${GROUP_IDS}
      var s = 0.0;${groupLoop('s = s + X[idx];')}
      part[localIndex] = s;${treeReduce(['part'])}
      let mean = part[0] / f32(COUNT);
      workgroupBarrier(); // every invocation has read part[0] before it is overwritten
      var q = 0.0;${groupLoop('let d = X[idx] - mean;\n          q = q + d * d;')}
      part[localIndex] = q;${treeReduce(['part'])}
      let r = 1.0 / sqrt(part[0] / f32(COUNT) + EPS);
      if (localIndex == 0u && live) {
        MEAN[wg] = mean;
        RSTD[wg] = r;
      }${groupLoop(`let a = (X[idx] - mean) * r * GAMMA[ch] + BETA[ch];
          Y[idx] = ${k.silu ? 'a / (1.0 + exp(-a))' : 'a'};`)}
    }`;
  return { key: keyOf('fwd', k), code, outputs, inputs };
}

/** The inputs that `gaCode` reads (γ and β only through SiLU), plus γ if the program itself reads it. */
function gaInputs(k: Geometry, gamma: boolean): string[] {
  return k.silu ? ['X', 'GAMMA', 'BETA', 'MEAN', 'RSTD', 'DY'] : gamma ? ['X', 'GAMMA', 'MEAN', 'RSTD', 'DY'] : ['X', 'MEAN', 'RSTD', 'DY'];
}
/** WGSL computing `r` (rstd), `xh` (x̂) and `ga` at flat index `idx`, channel `ch`, statistics index `sg`. */
function gaCode(k: Geometry): string {
  return `let r = RSTD[sg];
          let xh = (X[idx] - MEAN[sg]) * r;
          let ga = actGrad(${k.silu ? 'xh * GAMMA[ch] + BETA[ch]' : '0.0'}, DY[idx]);`;
}

/** dx, one workgroup per (n, g): m1 = Σ γ·ga / N and m2 = Σ γ·ga·x̂ / N, then dx = rstd·(γ·ga − m1 − x̂·m2). */
function dxProgram(k: Geometry): RawProgram {
  const outputs = ['DX'];
  const inputs = gaInputs(k, true);
  const code = `${header(k)}
    ${bindings(outputs, inputs)}
    var<workgroup> part1 : array<f32, ${WG}>;
    var<workgroup> part2 : array<f32, ${WG}>;
    ${ENTRY} {
      let NG = u.n * G;${GROUP_IDS}
      var s1 = 0.0;
      var s2 = 0.0;${groupLoop(`let sg = wg;
          ${gaCode(k)}
          let gg = GAMMA[ch] * ga;
          s1 = s1 + gg;
          s2 = s2 + gg * xh;`)}
      part1[localIndex] = s1;
      part2[localIndex] = s2;${treeReduce(['part1', 'part2'])}
      let m1 = part1[0] / f32(COUNT);
      let m2 = part2[0] / f32(COUNT);${groupLoop(`let sg = wg;
          ${gaCode(k)}
          DX[idx] = r * (GAMMA[ch] * ga - m1 - xh * m2);`)}
    }`;
  return { key: keyOf('dx', k), code, outputs, inputs };
}

/** dγ = Σ ga·x̂ and dβ = Σ ga per channel over the n·h·w rows, one workgroup per channel. */
function channelSumsProgram(k: Geometry): RawProgram {
  const outputs = ['DGAMMA', 'DBETA'];
  const inputs = gaInputs(k, false);
  const code = `${header(k)}
    ${bindings(outputs, inputs)}
    var<workgroup> part1 : array<f32, ${WG}>;
    var<workgroup> part2 : array<f32, ${WG}>;
    ${ENTRY} {
      let ch = ${FLAT_WORKGROUP};
      let live = ch < C;
      let rows = u.n * HW;
      var s1 = 0.0;
      var s2 = 0.0;
      if (live) {
        for (var i = i32(localIndex); i < rows; i = i + i32(WG)) {
          let idx = i * C + ch;
          let sg = (i / HW) * G + ch / CG;
          ${gaCode(k)}
          s1 = s1 + ga * xh;
          s2 = s2 + ga;
        }
      }
      part1[localIndex] = s1;
      part2[localIndex] = s2;${treeReduce(['part1', 'part2'])}
      if (localIndex == 0u && live) {
        DGAMMA[ch] = part1[0];
        DBETA[ch] = part2[0];
      }
    }`;
  return { key: keyOf('dgamma_dbeta', k), code, outputs, inputs };
}

/** Runs `p` over `workgroups` on the tensors its inputs name, into new float32 tensors of `shapes` (one per output). */
function run(p: RawProgram, n: number, workgroups: number, tensors: Record<string, Info>, shapes: number[][]): Info[] {
  const b = webgpuBackend() as unknown as { makeTensorInfo(shape: number[], dtype: 'float32'): Info };
  const outs = shapes.map((shape) => b.makeTensorInfo(shape, 'float32'));
  rawDispatch(rawPipeline(p.key, p.code), [...outs, ...p.inputs.map((name) => tensors[name]!)], [{ type: 'int32', data: [n] }], spread(workgroups), outs);
  return outs;
}

export function groupNormForwardWgsl(x: Info, gamma: Info, beta: Info, attrs: GroupNormAttrs): Info[] {
  const k = geometryOf(x, attrs);
  const n = x.shape[0]!;
  return run(forwardProgram(k), n, n * k.groups, { X: x, GAMMA: gamma, BETA: beta }, [x.shape, [n, k.groups], [n, k.groups]]);
}

export function groupNormBackwardWgsl(x: Info, gamma: Info, beta: Info, mean: Info, rstd: Info, dy: Info, attrs: GroupNormAttrs): Info[] {
  const k = geometryOf(x, attrs);
  const n = x.shape[0]!;
  const ts = { X: x, GAMMA: gamma, BETA: beta, MEAN: mean, RSTD: rstd, DY: dy };
  const [dx] = run(dxProgram(k), n, n * k.groups, ts, [x.shape]);
  const [dgamma, dbeta] = run(channelSumsProgram(k), n, k.c, ts, [[k.c], [k.c]]);
  return [dx!, dgamma!, dbeta!];
}

function float32(...ts: Info[]): boolean {
  return ts.every((t) => t.dtype === 'float32');
}

/** Registers HalfstepGroupNorm and HalfstepGroupNormGrad on 'webgpu' (idempotent). */
export function registerWebgpuGroupNorm(): void {
  replaceKernel('webgpu', GROUP_NORM, ({ inputs, attrs }) => {
    const { x, gamma, beta } = inputs as { x: Info; gamma: Info; beta: Info };
    if (!float32(x, gamma, beta)) return null;
    return groupNormForwardWgsl(x, gamma, beta, attrs as unknown as GroupNormAttrs);
  });
  replaceKernel('webgpu', GROUP_NORM_GRAD, ({ inputs, attrs }) => {
    const { x, gamma, beta, mean, rstd, dy } = inputs as Record<'x' | 'gamma' | 'beta' | 'mean' | 'rstd' | 'dy', Info>;
    if (!float32(x, gamma, beta, mean, rstd, dy)) return null;
    return groupNormBackwardWgsl(x, gamma, beta, mean, rstd, dy, attrs as unknown as GroupNormAttrs);
  });
}
