/**
 * Building blocks of the image denoiser (NHWC tensors; pure tfjs-core ops): convolutions, GroupNorm,
 * multi-head self-attention, deterministic dropout and 2× resampling. Parameter names follow
 * layers.ts: `${name}.w` / `${name}.b` for convolutions, `${name}.g` / `${name}.b` for GroupNorm.
 */
import { tf } from '../tf.js';
import { glorotUniform, ones, zeros, type ParamSet } from './params.js';
import { dense, denseParams, silu } from './layers.js';
import type { Rng } from '../rng.js';
import { fusedGroupNormAvailable, GROUP_NORM, GROUP_NORM_GRAD, type GroupNormAttrs } from '../kernels/groupnorm.js';

type T = tf.Tensor;

/**
 * A k×k convolution's parameters: `${name}.w` [k, k, in, out] (HWIO, tfjs's filter layout) and
 * `${name}.b` [out]. Glorot-uniform with fan_in = k²·in, fan_out = k²·out (Ho et al. 2020's
 * variance_scaling(1, 'fan_avg', 'uniform')), or zeros.
 */
export function convParams(ps: ParamSet, rng: Rng, name: string, k: number, cin: number, cout: number, init: 'glorot' | 'zero' = 'glorot'): void {
  const shape = [k, k, cin, cout];
  ps.add(`${name}.w`, init === 'zero' ? zeros(shape) : glorotUniform(rng, shape, k * k * cin, k * k * cout));
  ps.add(`${name}.b`, zeros([cout]));
}

/**
 * y = conv(x, W) + b with 'same' padding (TensorFlow's: for stride 2 the extra row/column is at the
 * end), as one fused op (tfjs's FusedConv2D: the bias add allocates no second activation). 1×1 runs
 * as a matmul.
 */
export function conv(ps: ParamSet, name: string, x: T, stride: 1 | 2 = 1): T {
  const w = ps.get(`${name}.w`);
  const [k, , cin, cout] = w.shape as [number, number, number, number];
  const [B, H, W] = x.shape as [number, number, number, number];
  if (k === 1 && stride === 1) {
    const y = tf.matMul(tf.reshape(x, [B * H * W, cin]), tf.reshape(w, [cin, cout]));
    return tf.reshape(tf.add(y, ps.get(`${name}.b`)), [B, H, W, cout]);
  }
  return tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: stride, pad: 'same', bias: ps.get(`${name}.b`) });
}

/** GroupNorm's parameters: scale `${name}.g` = 1 and shift `${name}.b` = 0, per channel. */
export function groupNormParams(ps: ParamSet, name: string, channels: number): void {
  ps.add(`${name}.g`, ones([channels]));
  ps.add(`${name}.b`, zeros([channels]));
}

/**
 * GroupNorm (Wu & He 2018): the C channels are split into `groups` groups; each example's group is
 * normalised over (H, W, C/groups) to zero mean and unit variance, then scaled and shifted per channel.
 */
export function groupNorm(ps: ParamSet, name: string, x: T, groups: number, eps = 1e-5): T {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const xr = tf.reshape(x, [B, H * W, groups, C / groups]);
  const { mean, variance } = tf.moments(xr, [1, 3], true);
  const xn = tf.reshape(tf.mul(tf.sub(xr, mean), tf.rsqrt(tf.add(variance, eps))), [B, H, W, C]);
  return tf.add(tf.mul(xn, ps.get(`${name}.g`)), ps.get(`${name}.b`));
}

/**
 * GroupNorm, then SiLU if `act`. Where the fused kernels exist (cpu and wasm with onnxruntime, see
 * kernels/groupnorm.ts) this is one op with its own gradient that keeps only x and the per-group
 * statistics for the backward pass; elsewhere it is `groupNorm` and `silu` composed.
 */
export function groupNormAct(ps: ParamSet, name: string, x: T, groups: number, act: boolean, eps = 1e-5): T {
  const gamma = ps.get(`${name}.g`);
  const beta = ps.get(`${name}.b`);
  if (x.dtype === 'float32' && x.rank === 4 && fusedGroupNormAvailable()) return fusedGroupNorm(x, gamma, beta, { groups, eps, silu: act });
  const y = groupNorm(ps, name, x, groups, eps);
  return act ? silu(y) : y;
}

function fusedGroupNorm(x: T, gamma: T, beta: T, attrs: GroupNormAttrs): T {
  const run = (name: string, inputs: Record<string, T>) => tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as unknown as T[];
  const op = tf.customGrad(((x: T, gamma: T, beta: T, save: tf.GradSaveFunc) => {
    const [y, mean, rstd] = run(GROUP_NORM, { x, gamma, beta });
    save([x, gamma, beta, mean!, rstd!]);
    return {
      value: y!,
      gradFunc: (dy: T, saved: T[]) => {
        const [sx, sg, sb, sm, sr] = saved;
        return run(GROUP_NORM_GRAD, { x: sx!, gamma: sg!, beta: sb!, mean: sm!, rstd: sr!, dy });
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, gamma, beta);
}

/** Parameters of a self-attention block over C channels: its GroupNorm, the q/k/v projection and the (zero) output projection. */
export function attentionParams(ps: ParamSet, rng: Rng, name: string, channels: number): void {
  groupNormParams(ps, `${name}.norm`, channels);
  denseParams(ps, rng, `${name}.qkv`, channels, 3 * channels);
  denseParams(ps, rng, `${name}.proj`, channels, channels, 'zero');
}

/**
 * Residual multi-head self-attention over the H·W positions (Vaswani et al. 2017; as placed in the
 * DDPM UNet): x + proj(softmax(q·kᵀ/√d)·v), with q, k, v projected from GroupNorm(x), d = C/heads.
 */
export function attention(ps: ParamSet, name: string, x: T, groups: number, heads: number): T {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const L = H * W;
  const d = C / heads;
  const h = tf.reshape(groupNormAct(ps, `${name}.norm`, x, groups, false), [B * L, C]);
  // q, k and v from column blocks of the one `qkv` weight: slicing the [C, 3C] weight, not the [B·L, 3C]
  // activation, keeps large strided slices (and their padding gradients) out of the step
  const w = ps.get(`${name}.qkv.w`);
  const b = ps.get(`${name}.qkv.b`);
  const project = (i: number) => {
    const y = tf.add(tf.matMul(h, tf.slice(w, [0, i * C], [C, C])), tf.slice(b, [i * C], [C]));
    return tf.reshape(tf.transpose(tf.reshape(y, [B, L, heads, d]), [0, 2, 1, 3]), [B * heads, L, d]);
  };
  const [q, k, v] = [project(0), project(1), project(2)];
  const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d)));
  const o = tf.reshape(tf.transpose(tf.reshape(tf.matMul(weights, v), [B, heads, L, d]), [0, 2, 1, 3]), [B * L, C]);
  return tf.add(x, tf.reshape(dense(ps, `${name}.proj`, o), [B, H, W, C]));
}

/**
 * Inverted dropout with a mask drawn from `rng`: one 32-bit seed per call, then a counter-based hash
 * per element (the murmur3 finaliser of seed + golden-ratio·index), so the mask is a pure function of
 * the Rng's state and a resumed run draws the same masks as an uninterrupted one. Kept elements are
 * scaled by 1/(1 − p).
 */
export function dropout(x: T, p: number, rng: Rng): T {
  if (p <= 0) return x;
  const n = x.size;
  const seed = rng.nextU32();
  const threshold = Math.min(4294967295, Math.floor(p * 4294967296));
  const keep = 1 / (1 - p);
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let h = (seed + Math.imul(i, 0x9e3779b9)) | 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    mask[i] = h >>> 0 >= threshold ? keep : 0;
  }
  return tf.mul(x, tf.tensor(mask, x.shape));
}

/**
 * Nearest-neighbour 2× up-sampling: each pixel becomes a 2×2 block, as a broadcast multiply
 * [B·H, 1, W, 1, C] × ones[1, 2, 1, 2, 1] whose gradient is a sum over the block. Not
 * tf.image.resizeNearestNeighbor: the stock cpu backend's ResizeNearestNeighborGrad (tfjs 4.22)
 * offsets dy by the input's batch stride, wrong for batch > 1; this form is also faster on wasm.
 */
export function upsample2x(x: T): T {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  return tf.reshape(tf.mul(tf.reshape(x, [B * H, 1, W, 1, C]), tf.ones([1, 2, 1, 2, 1])), [B, 2 * H, 2 * W, C]);
}
