/**
 * The UNet (src/model/unet.ts) as an ONNX graph: the ONNX twins of src/model/unet-layers.ts and the
 * same walk over the level plan as `apply` (inference: dropout emits nothing).
 *
 * Layout: tfjs runs the UNet in NHWC with HWIO filters; ONNX Conv, InstanceNormalization and Resize
 * are NCHW. The input is transposed NHWC → NCHW once, the output back once; filters are written
 * OIHW and per-channel scales and biases as [C, 1, 1] (GraphBuilder.paramAs rearranges the data, so
 * the graph holds no weight transposes). Opset 17 (no GroupNormalization, which is opset 18).
 *
 *   conv         Conv with explicit pads: TensorFlow's 'same' (at stride 2 the extra row/column at
 *                the end, e.g. [0, 0, 1, 1] for 3×3 on even sizes), as tfjs computes it
 *   GroupNorm    Reshape [B, G, −1] → InstanceNormalization (scale 1, bias 0, ε 1e-5) → Reshape
 *                [B, C, H, W] → Mul γ, Add β (per channel)
 *   SiLU         x·sigmoid(x) with sigmoid = 1/(1 + exp(−x)) (src/onnx/layers.ts)
 *   attention    MatMul/Split/Reshape/Transpose/Softmax over the H·W positions, q·kᵀ then ×1/√d
 *   upsample 2×  Resize nearest, asymmetric, floor, scales [1, 1, 2, 2] (each pixel → a 2×2 block)
 *   skips        Concat on axis 1 ([h, skip], as tfjs's concat on the channel axis)
 *   time emb.    [B or 1, C] → Reshape [−1, C, 1, 1]: the batch is never written into the graph (the
 *                unrolled sampler passes λ as [1] and broadcasts it)
 * Every Reshape copies the batch axis (0) or infers it (−1), so one graph serves any batch size.
 */
import type { OnnxGraphBuilder } from '../onnx/graph.js';
import { denseOnnx, siluOnnx, timeEmbeddingOnnx } from '../onnx/layers.js';
import type { ParamSet } from './params.js';
import type { Plan as UnetPlan, UnetConfig } from './unet.js';

/** An NCHW feature map: the value's name and its static C, H, W (the batch stays symbolic). */
export interface FeatureMap {
  v: string;
  c: number;
  h: number;
  w: number;
}

/** TensorFlow's 'same' padding along one axis: [before, after], the odd one at the end (tfjs's computeConv2DInfo). */
export function samePads(size: number, k: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

/** y = conv(x, W) + b, 'same' padding; W `${name}.w` written OIHW. The twin of unet-layers.ts `conv`. */
export function convOnnx(g: OnnxGraphBuilder, ps: ParamSet, name: string, x: FeatureMap, stride: 1 | 2 = 1): FeatureMap {
  const shape = ps.get(`${name}.w`).shape as [number, number, number, number];
  const [k, kw, , cout] = shape;
  const [top, bottom] = samePads(x.h, k, stride);
  const [left, right] = samePads(x.w, kw, stride);
  const v = g.layer(name, () =>
    g.op('Conv', [x.v, g.paramAs(ps, `${name}.w`, { perm: [3, 2, 0, 1] }), g.param(ps, `${name}.b`)], {
      kernel_shape: [k, kw],
      strides: [stride, stride],
      dilations: [1, 1],
      pads: [top, left, bottom, right],
    }),
  );
  return { v, c: cout, h: Math.ceil(x.h / stride), w: Math.ceil(x.w / stride) };
}

/** GroupNorm (then SiLU if `act`) over (H·W, C/groups) per example and group. The twin of unet-layers.ts `groupNormAct`. */
export function groupNormOnnx(g: OnnxGraphBuilder, ps: ParamSet, name: string, x: FeatureMap, groups: number, act: boolean, eps = 1e-5): FeatureMap {
  const v = g.layer(name, () => {
    const grouped = g.op('Reshape', [x.v, g.int64([0, groups, -1])]);
    const ones = g.constant(new Float32Array(groups).fill(1), [groups], 'ones');
    const zeros = g.constant(new Float32Array(groups), [groups], 'zeros');
    const normed = g.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: eps });
    const back = g.op('Reshape', [normed, g.int64([0, x.c, x.h, x.w])]);
    const perChannel = { dims: [x.c, 1, 1] };
    const y = g.op('Add', [g.op('Mul', [back, g.paramAs(ps, `${name}.g`, perChannel)]), g.paramAs(ps, `${name}.b`, perChannel)]);
    return act ? siluOnnx(g, y) : y;
  });
  return { ...x, v };
}

/**
 * Residual multi-head self-attention over the H·W positions: x + proj(softmax(q·kᵀ/√d)·v), q, k, v
 * from GroupNorm(x), d = C/heads. The twin of unet-layers.ts `attention` (the projections as
 * MatMul on [B, L, C]; the scale applied after q·kᵀ, as there).
 */
export function attentionOnnx(g: OnnxGraphBuilder, ps: ParamSet, name: string, x: FeatureMap, groups: number, heads: number): FeatureMap {
  const { c: C, h: H, w: W } = x;
  const L = H * W;
  const d = C / heads;
  const n = groupNormOnnx(g, ps, `${name}.norm`, x, groups, false);
  const rows = g.layer(name, () => g.op('Transpose', [g.op('Reshape', [n.v, g.int64([0, C, L])])], { perm: [0, 2, 1] })); // [B, L, C]
  const qkv = denseOnnx(g, ps, `${name}.qkv`, rows); // [B, L, 3C]
  const o = g.layer(name, () => {
    const [q, k, val] = g.opN('Split', [qkv], 3, { axis: 2 }) as [string, string, string];
    const byHead = g.int64([0, L, heads, d]);
    const heads4 = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, byHead])], { perm });
    const scores = g.op('Mul', [g.op('MatMul', [heads4(q, [0, 2, 1, 3]), heads4(k, [0, 2, 3, 1])]), g.constant(1 / Math.sqrt(d))]); // [B, heads, L, L]
    const weights = g.op('Softmax', [scores], { axis: -1 });
    const o4 = g.op('Transpose', [g.op('MatMul', [weights, heads4(val, [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] }); // [B, L, heads, d]
    return g.op('Reshape', [o4, g.int64([0, L, C])]); // [B, L, C]
  });
  const proj = denseOnnx(g, ps, `${name}.proj`, o);
  const v = g.layer(name, () => g.op('Add', [x.v, g.op('Reshape', [g.op('Transpose', [proj], { perm: [0, 2, 1] }), g.int64([0, C, H, W])])]));
  return { ...x, v };
}

/** Nearest-neighbour 2× up-sampling (each pixel a 2×2 block). The twin of unet-layers.ts `upsample2x`. */
export function upsample2xOnnx(g: OnnxGraphBuilder, x: FeatureMap): FeatureMap {
  const v = g.op('Resize', [x.v, '', g.constant([1, 1, 2, 2], [4], 'scales')], {
    mode: 'nearest',
    coordinate_transformation_mode: 'asymmetric',
    nearest_mode: 'floor',
  });
  return { ...x, v, h: 2 * x.h, w: 2 * x.w };
}

/** The channel concatenation [a, b] (a's channels first). */
export function concatOnnx(g: OnnxGraphBuilder, a: FeatureMap, b: FeatureMap): FeatureMap {
  return { v: g.op('Concat', [a.v, b.v], { axis: 1 }), c: a.c + b.c, h: a.h, w: a.w };
}

/** One residual block: skip(x) + conv₂(SiLU(GN(conv₁(SiLU(GN(x))) + P·t))). `t` is SiLU of the time embedding, [B or 1, T]. */
function resBlockOnnx(g: OnnxGraphBuilder, ps: ParamSet, cfg: UnetConfig, name: string, x: FeatureMap, t: string): FeatureMap {
  let h = convOnnx(g, ps, `${name}.conv1`, groupNormOnnx(g, ps, `${name}.norm1`, x, cfg.groups, true));
  const temb = denseOnnx(g, ps, `${name}.temb`, t);
  h = { ...h, v: g.layer(name, () => g.op('Add', [h.v, g.op('Reshape', [temb, g.int64([-1, h.c, 1, 1])])])) };
  h = convOnnx(g, ps, `${name}.conv2`, groupNormOnnx(g, ps, `${name}.norm2`, h, cfg.groups, true));
  const skip = x.c === h.c ? x : convOnnx(g, ps, `${name}.skip`, x);
  return { ...h, v: g.layer(name, () => g.op('Add', [skip.v, h.v])) };
}

/**
 * The UNet's raw output [B, H, W, outChannels] for z [B, H, W, C] (NHWC, as tfjs) and λ [B] or [1];
 * emits the same blocks in the same order as unet.ts `apply`.
 */
export function unetOnnx(g: OnnxGraphBuilder, ps: ParamSet, cfg: UnetConfig, p: UnetPlan, dataShape: number[], z: string, logsnr: string): string {
  const [H, W, C] = dataShape as [number, number, number];
  const t = timeEmbeddingOnnx(g, ps, logsnr, cfg.emb_dim);
  const x: FeatureMap = { v: g.op('Transpose', [z], { perm: [0, 3, 1, 2] }), c: C, h: H, w: W };
  let h = convOnnx(g, ps, 'in', x);
  const skips = [h];
  p.down.forEach((lv, i) => {
    lv.blocks.forEach((b, j) => {
      h = resBlockOnnx(g, ps, cfg, `down${i}.res${j}`, h, t);
      if (b.attn) h = attentionOnnx(g, ps, `down${i}.attn${j}`, h, cfg.groups, cfg.heads);
      skips.push(h);
    });
    if (lv.downsample) {
      h = convOnnx(g, ps, `down${i}.down`, h, 2);
      skips.push(h);
    }
  });
  h = resBlockOnnx(g, ps, cfg, 'mid.res0', h, t);
  if (p.mid.attn) h = attentionOnnx(g, ps, 'mid.attn', h, cfg.groups, cfg.heads);
  h = resBlockOnnx(g, ps, cfg, 'mid.res1', h, t);
  for (const lv of p.up) {
    lv.blocks.forEach((b, j) => {
      h = resBlockOnnx(g, ps, cfg, `up${lv.level}.res${j}`, concatOnnx(g, h, skips.pop()!), t);
      if (b.attn) h = attentionOnnx(g, ps, `up${lv.level}.attn${j}`, h, cfg.groups, cfg.heads);
    });
    if (lv.upsample) h = convOnnx(g, ps, `up${lv.level}.up`, upsample2xOnnx(g, h));
  }
  const out = convOnnx(g, ps, 'out.conv', groupNormOnnx(g, ps, 'out.norm', h, cfg.groups, true));
  return g.op('Transpose', [out.v], { perm: [0, 2, 3, 1] });
}
