/**
 * Global-norm clipping, Adam and the weight EMA on webgpu as a few WGSL dispatches per parameter,
 * writing the variables' buffers in place.
 *
 * As tfjs ops, clip + Adam + EMA cost ~20 dispatches per parameter tensor (1450 Multiplies alone in a
 * UNet step), and every dispatch costs the host ~0.3 ms on Dawn. Here: Σg² of 7 gradients per
 * dispatch into a norms buffer, one dispatch turning the norms into the clip scale, then per parameter
 * one dispatch updating m, v, θ and (if given) the EMA in place (several read_write buffers, so a raw
 * dispatch: raw.ts). Same formulas as the host path in optim.ts:
 *   s = maxNorm / max(‖g‖, maxNorm) (1 without clipping), m ← β1·m + (1−β1)·s·g,
 *   v ← β2·v + (1−β2)·(s·g)², θ ← θ − (lr/(1−β1^t))·m / (√(v/(1−β2^t)) + ε), e ← d·e + (1−d)·θ.
 */
import { tf } from '../../tf.js';
import { ownBuffer, runWgsl, spread, type Uniform } from './program.js';
import { rawDispatch, rawPipeline } from './raw.js';

const f32 = (...data: number[]): Uniform => ({ type: 'float32', data });
const i32 = (...data: number[]): Uniform => ({ type: 'int32', data });

/** Σg² of up to 7 gradients per dispatch (one workgroup each) into slots base.. of the norms buffer. */
const SUMSQ_BATCH = 7;
function sumSquaresCode(k: number): string {
  const ids = Array.from({ length: k }, (_, i) => i);
  return `
    @group(0) @binding(0) var<storage, read_write> N : array<f32>;
    ${ids.map((i) => `@group(0) @binding(${i + 1}) var<storage, read> G${i} : array<f32>;`).join('\n')}
    struct U { base : i32, n0 : i32, n1 : i32, n2 : i32, n3 : i32, n4 : i32, n5 : i32, n6 : i32 };
    @group(0) @binding(${k + 1}) var<uniform> u : U;
    var<workgroup> part : array<f32, 256>;
    @compute @workgroup_size(256)
    fn main(@builtin(local_invocation_index) li : u32, @builtin(workgroup_id) wid : vec3<u32>) {
      var s = 0.0;
      switch wid.x {
        ${ids.map((i) => `case ${i}u: { for (var j = i32(li); j < u.n${i}; j += 256) { let g = G${i}[j]; s = fma(g, g, s); } }`).join('\n        ')}
        default: {}
      }
      part[li] = s;
      workgroupBarrier();
      for (var w = 128u; w > 0u; w = w / 2u) {
        if (li < w) { part[li] += part[li + w]; }
        workgroupBarrier();
      }
      if (li == 0u) { N[u.base + i32(wid.x)] = part[0]; }
    }`;
}

/** [scale, norm] from the per-parameter sums of squares. */
const CLIP_SCALE = {
  key: 'optim_clipscale',
  inputs: ['N'],
  uniforms: 'count : i32, maxNorm : f32,',
  workgroupSize: [256, 1, 1] as [number, number, number],
  dispatch: [1, 1, 1] as [number, number, number],
  perElement: false,
  code: `
    var<workgroup> part : array<f32, 256>;
    fn main() {
      let li = i32(localIndex);
      var s = 0.0;
      for (var j = li; j < uniforms.count; j += 256) { s += N[j]; }
      part[li] = s;
      workgroupBarrier();
      for (var w = 128; w > 0; w = w / 2) {
        if (li < w) { part[li] += part[li + w]; }
        workgroupBarrier();
      }
      if (li == 0) {
        let norm = sqrt(part[0]);
        var scale = 1.0;
        if (uniforms.maxNorm > 0.0) { scale = uniforms.maxNorm / max(norm, uniforms.maxNorm); }
        result[0] = scale;
        result[1] = norm;
      }
    }`,
};

/** m, v and θ (and the EMA e, if `ema`) of one parameter in one pass (several read_write buffers: a raw dispatch). */
const adamCode = (ema: boolean) => `
  @group(0) @binding(0) var<storage, read_write> P : array<f32>;
  @group(0) @binding(1) var<storage, read_write> M : array<f32>;
  @group(0) @binding(2) var<storage, read_write> V : array<f32>;
  @group(0) @binding(3) var<storage, read> G : array<f32>;
  @group(0) @binding(4) var<storage, read> S : array<f32>;
  ${ema ? '@group(0) @binding(5) var<storage, read_write> E : array<f32>;' : ''}
  struct U { b1 : f32, b2 : f32, lrc : f32, c2 : f32, eps : f32, n : i32, d : f32 };
  @group(0) @binding(${ema ? 6 : 5}) var<uniform> u : U;
  @compute @workgroup_size(256)
  fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nw : vec3<u32>) {
    let i = i32(gid.x + gid.y * nw.x * 256u);
    if (i >= u.n) { return; }
    let g = S[0] * G[i];
    let m = u.b1 * M[i] + (1.0 - u.b1) * g;
    let v = u.b2 * V[i] + (1.0 - u.b2) * g * g;
    M[i] = m;
    V[i] = v;
    let p = P[i] - (u.lrc * m) / (sqrt(v / u.c2) + u.eps);
    P[i] = p;
    ${ema ? 'E[i] = u.d * E[i] + (1.0 - u.d) * p;' : 'let unused = u.d;'}
  }`;

export interface AdamStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** The update's number, from 1 (bias correction). */
  t: number;
  /** Clip the gradients to this global norm first; 0 = no clipping. */
  maxNorm: number;
}

/**
 * One clipped Adam update of `params` in place. Returns a [scale, norm] tensor (the caller may read
 * the norm later, or dispose it).
 */
export function adamStepWgsl(params: tf.Variable[], m: tf.Variable[], v: tf.Variable[], grads: tf.Tensor[], o: AdamStep, ema?: { vars: tf.Variable[]; decay: number }): tf.Tensor {
  const norms = tf.zeros([params.length]);
  for (let base = 0; base < grads.length; base += SUMSQ_BATCH) {
    const batch = grads.slice(base, base + SUMSQ_BATCH);
    const sizes = Array.from({ length: SUMSQ_BATCH }, (_, i) => batch[i]?.size ?? 0);
    rawDispatch(rawPipeline(`optim_sumsq_${batch.length}`, sumSquaresCode(batch.length)), [norms, ...batch], [i32(base), ...sizes.map((n) => i32(n))], [batch.length, 1, 1], [norms]);
  }
  const scaleInfo = runWgsl({ ...CLIP_SCALE, outputShape: [2] }, [norms], [i32(params.length), f32(o.maxNorm)]);
  const scale = tf.engine().makeTensorFromTensorInfo(scaleInfo);
  norms.dispose();
  const c1 = 1 - o.beta1 ** o.t;
  const c2 = 1 - o.beta2 ** o.t;
  const pipeline = rawPipeline(ema ? 'optim_adam_ema' : 'optim_adam', adamCode(!!ema));
  params.forEach((p, i) => {
    const e = ema?.vars[i];
    for (const t of [p, m[i]!, v[i]!, ...(e ? [e] : [])]) ownBuffer(t);
    const uniforms = [f32(o.beta1), f32(o.beta2), f32(o.lr / c1), f32(c2), f32(o.eps), i32(p.size), f32(ema?.decay ?? 0)];
    rawDispatch(pipeline, [p, m[i]!, v[i]!, grads[i]!, scale, ...(e ? [e] : [])], uniforms, spread(Math.ceil(p.size / 256)), [p, m[i]!, v[i]!, ...(e ? [e] : [])]);
  });
  return scale;
}
