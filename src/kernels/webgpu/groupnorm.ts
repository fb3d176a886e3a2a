/**
 * GroupNorm (optionally followed by SiLU) on NHWC float32 tensors as WGSL programs on
 * tfjs-backend-webgpu: the kernels HalfstepGroupNorm and HalfstepGroupNormGrad with the contracts of
 * the cpu/wasm ones (kernels/groupnorm.ts), so that `groupNormAct` (model/unet-layers.ts) runs
 * GroupNorm + SiLU as 3 dispatches forward and 4 backward instead of ~40 tfjs ops.
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
 * Dispatches. Forward 3: mean and rstd, each one workgroup of 256 invocations per (n, g) that loops
 * over the group's values and sums them with a tree reduction in workgroup memory; then y, one
 * invocation per element. Backward 4: [m1, m2] per (n, g) into an internal [n, G, 2] tensor (one
 * workgroup per (n, g), two reductions at once); dx, one invocation per element; dγ and dβ, one
 * workgroup per channel looping over the n·h·w rows. ga is recomputed where needed (from x, the
 * statistics, γ, β and dy), so no full-size intermediate is written.
 *
 * The geometry (h, w, c, groups, ε, SiLU) is baked into the WGSL as constants and into the program
 * key; the batch size n comes from the output size or the shape uniform of x, so a pipeline serves
 * every batch size. Every program binds only the inputs its code reads (the pipelines' bind group
 * layouts are derived from the code).
 */
import { tf } from '../../tf.js';
import { GROUP_NORM, GROUP_NORM_GRAD, type GroupNormAttrs } from '../groupnorm.js';
import { replaceKernel } from '../registry.js';
import { FLAT_WORKGROUP, runWgsl, spread, webgpuBackend, type WgslSpec } from './program.js';

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
 * One workgroup per (n, g) (flat workgroup number `wg`, `live` false for the spare workgroups of a
 * 2-D dispatch; no early return, so that the barriers stay in uniform control flow), `body` run for
 * each of the group's values with `idx` (flat index into x) and `ch` (channel). WGSL.
 */
function perGroupLoop(body: string): string {
  return `
      let wg = ${FLAT_WORKGROUP};
      let live = wg < NG;
      let nn = wg / G;
      let g = wg - nn * G;
      let base = nn * HW * C + g * CG;
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

/** μ per (n, g): output [n, G]. */
function meanProgram(k: Geometry, n: number): WgslSpec {
  const code = `${header(k)}
    var<workgroup> part : array<f32, ${WG}>;
    fn main() {
      let NG = uniforms.size;
      var s = 0.0;${perGroupLoop('s = s + X[idx];')}
      part[localIndex] = s;${treeReduce(['part'])}
      if (localIndex == 0u && live) { result[wg] = part[0] / f32(COUNT); }
    }`;
  return { key: keyOf('mean', k), inputs: ['X'], outputShape: [n, k.groups], code, workgroupSize: [WG, 1, 1], dispatch: spread(n * k.groups), perElement: false };
}

/** rstd = 1/√(Σ(x − μ)²/N + ε) per (n, g): output [n, G]. */
function rstdProgram(k: Geometry, n: number): WgslSpec {
  const code = `${header(k)}
    var<workgroup> part : array<f32, ${WG}>;
    fn main() {
      let NG = uniforms.size;
      var s = 0.0;${perGroupLoop('let d = X[idx] - MEAN[wg];\n          s = s + d * d;')}
      part[localIndex] = s;${treeReduce(['part'])}
      if (localIndex == 0u && live) { result[wg] = 1.0 / sqrt(part[0] / f32(COUNT) + EPS); }
    }`;
  return { key: keyOf('rstd', k), inputs: ['X', 'MEAN'], outputShape: [n, k.groups], code, workgroupSize: [WG, 1, 1], dispatch: spread(n * k.groups), perElement: false };
}

/** y = act(γ·(x − μ)·rstd + β), one invocation per element: output [n, h, w, c]. */
function forwardProgram(k: Geometry, n: number): WgslSpec {
  const code = `${header(k)}
    fn main(index : i32) {
      if (index >= uniforms.size) { return; }
      let ch = index % C;
      let sg = (index / (HW * C)) * G + ch / CG;
      let a = (X[index] - MEAN[sg]) * RSTD[sg] * GAMMA[ch] + BETA[ch];
      result[index] = ${k.silu ? 'a / (1.0 + exp(-a))' : 'a'};
    }`;
  return { key: keyOf('fwd', k), inputs: ['X', 'GAMMA', 'BETA', 'MEAN', 'RSTD'], outputShape: [n, k.h, k.w, k.c], code };
}

/**
 * The inputs that `gaCode` reads (γ and β only through SiLU), plus γ if the program itself reads it:
 * a program may bind only the inputs its code reads.
 */
function gaInputs(k: Geometry, gamma: boolean): string[] {
  return k.silu ? ['X', 'GAMMA', 'BETA', 'MEAN', 'RSTD', 'DY'] : gamma ? ['X', 'GAMMA', 'MEAN', 'RSTD', 'DY'] : ['X', 'MEAN', 'RSTD', 'DY'];
}
/** WGSL computing `r` (rstd), `xh` (x̂) and `ga` at flat index `idx`, channel `ch`, statistics index `sg`. */
function gaCode(k: Geometry): string {
  return `let r = RSTD[sg];
          let xh = (X[idx] - MEAN[sg]) * r;
          let ga = actGrad(${k.silu ? 'xh * GAMMA[ch] + BETA[ch]' : '0.0'}, DY[idx]);`;
}

/** [m1, m2] = [Σ γ·ga, Σ γ·ga·x̂] / N per (n, g): output [n, G, 2]. */
function statsProgram(k: Geometry, n: number): WgslSpec {
  const code = `${header(k)}
    var<workgroup> part1 : array<f32, ${WG}>;
    var<workgroup> part2 : array<f32, ${WG}>;
    fn main() {
      let NG = uniforms.size / 2;
      var s1 = 0.0;
      var s2 = 0.0;${perGroupLoop(`let sg = wg;
          ${gaCode(k)}
          let gg = GAMMA[ch] * ga;
          s1 = s1 + gg;
          s2 = s2 + gg * xh;`)}
      part1[localIndex] = s1;
      part2[localIndex] = s2;${treeReduce(['part1', 'part2'])}
      if (localIndex == 0u && live) {
        result[2 * wg] = part1[0] / f32(COUNT);
        result[2 * wg + 1] = part2[0] / f32(COUNT);
      }
    }`;
  return { key: keyOf('stats', k), inputs: gaInputs(k, true), outputShape: [n, k.groups, 2], code, workgroupSize: [WG, 1, 1], dispatch: spread(n * k.groups), perElement: false };
}

/** dx = rstd·(γ·ga − m1 − x̂·m2), one invocation per element: output [n, h, w, c]. */
function dxProgram(k: Geometry, n: number): WgslSpec {
  const code = `${header(k)}
    fn main(index : i32) {
      if (index >= uniforms.size) { return; }
      let idx = index;
      let ch = index % C;
      let sg = (index / (HW * C)) * G + ch / CG;
      ${gaCode(k)}
      result[index] = r * (GAMMA[ch] * ga - STATS[2 * sg] - xh * STATS[2 * sg + 1]);
    }`;
  return { key: keyOf('dx', k), inputs: [...gaInputs(k, true), 'STATS'], outputShape: [n, k.h, k.w, k.c], code };
}

/** dγ = Σ ga·x̂ or dβ = Σ ga per channel over the n·h·w rows, one workgroup per channel: output [c]. */
function channelSumProgram(k: Geometry, which: 'dgamma' | 'dbeta'): WgslSpec {
  // dβ without SiLU is Σ dy: no statistics needed (and only bound inputs may be declared).
  const plain = which === 'dbeta' && !k.silu;
  const term = which === 'dgamma' ? 'ga * xh' : 'ga';
  const code = `${header(k)}
    var<workgroup> part : array<f32, ${WG}>;
    fn main() {
      let ch = ${FLAT_WORKGROUP};
      let live = ch < C;
      let rows = uniforms.dYShape.x * HW; // dYShape: the shape uniform of input DY (n, h, w, c)
      var s = 0.0;
      if (live) {
        for (var i = i32(localIndex); i < rows; i = i + i32(WG)) {
          let idx = i * C + ch;
          ${plain ? 's = s + DY[idx];' : `let sg = (i / HW) * G + ch / CG;
          ${gaCode(k)}
          s = s + ${term};`}
        }
      }
      part[localIndex] = s;${treeReduce(['part'])}
      if (localIndex == 0u && live) { result[ch] = part[0]; }
    }`;
  return { key: keyOf(plain ? 'dbeta_plain' : which, k), inputs: plain ? ['DY'] : gaInputs(k, false), outputShape: [k.c], code, workgroupSize: [WG, 1, 1], dispatch: spread(k.c), perElement: false };
}

/** Runs `spec` on the tensors its inputs name. */
function run(spec: WgslSpec, tensors: Record<string, Info>): Info {
  return runWgsl(spec, spec.inputs.map((name) => tensors[name]!));
}

function dispose(...ts: Info[]): void {
  const b = webgpuBackend() as unknown as { disposeData(id: object): void };
  for (const t of ts) b.disposeData(t.dataId);
}

export function groupNormForwardWgsl(x: Info, gamma: Info, beta: Info, attrs: GroupNormAttrs): Info[] {
  const k = geometryOf(x, attrs);
  const n = x.shape[0]!;
  const mean = run(meanProgram(k, n), { X: x });
  const rstd = run(rstdProgram(k, n), { X: x, MEAN: mean });
  const y = run(forwardProgram(k, n), { X: x, GAMMA: gamma, BETA: beta, MEAN: mean, RSTD: rstd });
  return [y, mean, rstd];
}

export function groupNormBackwardWgsl(x: Info, gamma: Info, beta: Info, mean: Info, rstd: Info, dy: Info, attrs: GroupNormAttrs): Info[] {
  const k = geometryOf(x, attrs);
  const n = x.shape[0]!;
  const ts = { X: x, GAMMA: gamma, BETA: beta, MEAN: mean, RSTD: rstd, DY: dy };
  const stats = run(statsProgram(k, n), ts);
  const dx = run(dxProgram(k, n), { ...ts, STATS: stats });
  dispose(stats);
  const dgamma = run(channelSumProgram(k, 'dgamma'), ts);
  const dbeta = run(channelSumProgram(k, 'dbeta'), ts);
  return [dx, dgamma, dbeta];
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
