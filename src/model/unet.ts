/**
 * UNet denoiser for images [B, H, W, C] (Ronneberger et al. 2015, in the form of Ho et al. 2020's
 * DDPM and Nichol & Dhariwal 2021): residual blocks with GroupNorm and SiLU, the log-SNR embedding
 * added (after a projection) inside every block, stride-2 convolutions down and nearest-neighbour
 * 2× + conv up, skip connections from every down-path block to the up path, and optional
 * self-attention at chosen resolutions.
 *
 *   t = W₂·SiLU(W₁·emb(λ))                                     (width 4·channels)
 *   block(x, t) = skip(x) + conv₂(drop(SiLU(GN(conv₁(SiLU(GN(x))) + P·SiLU(t)))))   (conv₂ zero-initialised)
 *   down: per level, num_res_blocks blocks (+ attention), then conv stride 2 (not after the last level)
 *   middle: block, attention (if the lowest resolution is listed), block
 *   up: per level, num_res_blocks + 1 blocks on [h, skip] (+ attention), then upsample + conv
 *   out: conv(SiLU(GN(h)))                                     (zero-initialised)
 */
import { tf } from '../tf.js';
import type { Rng } from '../rng.js';
import { RecipeError } from '../errors.js';
import { ParamSet } from './params.js';
import { dense, denseParams, timeEmbedding, timeEmbeddingParams } from './layers.js';
import { attention, attentionParams, conv, convParams, dropout, groupNormAct, groupNormParams, upsample2x } from './unet-layers.js';
import type { Network } from './network.js';
import { unetOnnx } from './unet-onnx.js';

export interface UnetConfig {
  type: 'unet';
  channels: number;
  channel_mults: number[];
  num_res_blocks: number;
  attention_resolutions: number[];
  dropout: number;
  groups: number;
  emb_dim: number;
  heads: number;
}

/** The feature-map heights of the levels, top to bottom (e.g. 28, 14, 7). */
export function unetResolutions(cfg: Pick<UnetConfig, 'channel_mults'>, height: number): number[] {
  return cfg.channel_mults.map((_, i) => height / 2 ** i);
}

/** Checks a UNet config against the data shape; throws a RecipeError naming the key. */
export function checkUnet(cfg: UnetConfig, dataShape: number[]): void {
  if (dataShape.length !== 3) {
    throw new RecipeError('model.type', `unet takes image data of shape [H, W, C]; the dataset's examples have shape [${dataShape.join(', ')}] (use model.type: mlp for vectors)`);
  }
  const [H, W] = dataShape as [number, number, number];
  const levels = cfg.channel_mults.length;
  if (levels === 0) throw new RecipeError('model.unet.channel_mults', 'expected at least one multiplier, e.g. [1, 2, 2]');
  const f = 2 ** (levels - 1);
  if (H % f !== 0 || W % f !== 0) {
    throw new RecipeError(
      'model.unet.channel_mults',
      `${levels} levels halve the resolution ${levels - 1} times, so H and W must be divisible by ${f}; the data is ${H}×${W} (use fewer multipliers or resize the images)`,
    );
  }
  const res = unetResolutions(cfg, H);
  for (const r of cfg.attention_resolutions) {
    if (!res.includes(r)) throw new RecipeError('model.unet.attention_resolutions', `${r} is not a resolution of this UNet; on ${H}×${W} data with ${levels} levels they are ${res.join(', ')}`);
  }
  if (cfg.emb_dim % 2 !== 0) throw new RecipeError('model.unet.emb_dim', `expected an even number; got ${cfg.emb_dim}`);
  for (const m of cfg.channel_mults) {
    const c = cfg.channels * m;
    if (c % cfg.groups !== 0) throw new RecipeError('model.unet.groups', `must divide the width of every level; channels·mult = ${cfg.channels}·${m} = ${c} is not divisible by ${cfg.groups}`);
    if (cfg.attention_resolutions.length > 0 && c % cfg.heads !== 0) throw new RecipeError('model.unet.heads', `must divide the width of every level; ${c} is not divisible by ${cfg.heads}`);
  }
}

/** One residual block's parameters (the second conv is zero-initialised, so a fresh block is the identity on its skip path). */
function resBlockParams(ps: ParamSet, rng: Rng, name: string, cin: number, cout: number, temb: number): void {
  groupNormParams(ps, `${name}.norm1`, cin);
  convParams(ps, rng, `${name}.conv1`, 3, cin, cout);
  denseParams(ps, rng, `${name}.temb`, temb, cout);
  groupNormParams(ps, `${name}.norm2`, cout);
  convParams(ps, rng, `${name}.conv2`, 3, cout, cout, 'zero');
  if (cin !== cout) convParams(ps, rng, `${name}.skip`, 1, cin, cout);
}

interface Ctx {
  ps: ParamSet;
  cfg: UnetConfig;
  /** SiLU of the time embedding [B, 4·channels]. */
  t: tf.Tensor;
  rng: Rng | null;
}

function resBlock(c: Ctx, name: string, x: tf.Tensor): tf.Tensor {
  const { ps, cfg } = c;
  const B = x.shape[0]!;
  let h = conv(ps, `${name}.conv1`, groupNormAct(ps, `${name}.norm1`, x, cfg.groups, true));
  const cout = h.shape[3]!;
  h = tf.add(h, tf.reshape(dense(ps, `${name}.temb`, c.t), [B, 1, 1, cout]));
  h = groupNormAct(ps, `${name}.norm2`, h, cfg.groups, true);
  if (c.rng) h = dropout(h, cfg.dropout, c.rng);
  h = conv(ps, `${name}.conv2`, h);
  const skip = x.shape[3] === cout ? x : conv(ps, `${name}.skip`, x);
  return tf.add(skip, h);
}

/** The level plan shared by init, apply and exportOnnx (unet-onnx.ts), so that all walk the same blocks in the same order. */
export interface Plan {
  down: { res: number; blocks: { cin: number; cout: number; attn: boolean }[]; downsample: boolean; width: number }[];
  mid: { width: number; attn: boolean };
  up: { level: number; res: number; blocks: { cin: number; cout: number; attn: boolean }[]; upsample: boolean; width: number }[];
  outWidth: number;
}

function plan(cfg: UnetConfig, height: number): Plan {
  const res = unetResolutions(cfg, height);
  const attnAt = (r: number) => cfg.attention_resolutions.includes(r);
  const last = cfg.channel_mults.length - 1;
  let cur = cfg.channels;
  const skips = [cur];
  const down: Plan['down'] = cfg.channel_mults.map((m, i) => {
    const blocks = [];
    for (let j = 0; j < cfg.num_res_blocks; j++) {
      blocks.push({ cin: cur, cout: cfg.channels * m, attn: attnAt(res[i]!) });
      cur = cfg.channels * m;
      skips.push(cur);
    }
    if (i !== last) skips.push(cur);
    return { res: res[i]!, blocks, downsample: i !== last, width: cur };
  });
  const mid = { width: cur, attn: attnAt(res[last]!) };
  const up: Plan['up'] = [];
  for (let i = last; i >= 0; i--) {
    const blocks = [];
    const m = cfg.channel_mults[i]!;
    for (let j = 0; j < cfg.num_res_blocks + 1; j++) {
      blocks.push({ cin: cur + skips.pop()!, cout: cfg.channels * m, attn: attnAt(res[i]!) });
      cur = cfg.channels * m;
    }
    up.push({ level: i, res: res[i]!, blocks, upsample: i !== 0, width: cur });
  }
  return { down, mid, up, outWidth: cur };
}

export function unetNetwork(cfg: UnetConfig, dataShape: number[], outChannels: number): Network {
  checkUnet(cfg, dataShape);
  const [H, , Cd] = dataShape as [number, number, number];
  const p = plan(cfg, H);
  const T = 4 * cfg.channels;
  return {
    dataShape,
    outChannels,
    init(rng: Rng): ParamSet {
      const ps = new ParamSet();
      timeEmbeddingParams(ps, rng, cfg.emb_dim, T);
      convParams(ps, rng, 'in', 3, Cd, cfg.channels);
      p.down.forEach((lv, i) => {
        lv.blocks.forEach((b, j) => {
          resBlockParams(ps, rng, `down${i}.res${j}`, b.cin, b.cout, T);
          if (b.attn) attentionParams(ps, rng, `down${i}.attn${j}`, b.cout);
        });
        if (lv.downsample) convParams(ps, rng, `down${i}.down`, 3, lv.width, lv.width);
      });
      resBlockParams(ps, rng, 'mid.res0', p.mid.width, p.mid.width, T);
      if (p.mid.attn) attentionParams(ps, rng, 'mid.attn', p.mid.width);
      resBlockParams(ps, rng, 'mid.res1', p.mid.width, p.mid.width, T);
      for (const lv of p.up) {
        lv.blocks.forEach((b, j) => {
          resBlockParams(ps, rng, `up${lv.level}.res${j}`, b.cin, b.cout, T);
          if (b.attn) attentionParams(ps, rng, `up${lv.level}.attn${j}`, b.cout);
        });
        if (lv.upsample) convParams(ps, rng, `up${lv.level}.up`, 3, lv.width, lv.width);
      }
      groupNormParams(ps, 'out.norm', p.outWidth);
      convParams(ps, rng, 'out.conv', 3, p.outWidth, outChannels, 'zero');
      return ps;
    },
    apply(ps: ParamSet, z: tf.Tensor, logsnr: tf.Tensor, training: boolean, rng?: Rng): tf.Tensor {
      const useDropout = training && cfg.dropout > 0;
      if (useDropout && !rng) throw new Error('unet: dropout is on (model.unet.dropout > 0) and training is true, but apply() was given no Rng to draw the masks from');
      return tf.tidy(() => {
        const t = timeEmbedding(ps, logsnr, cfg.emb_dim);
        const c: Ctx = { ps, cfg, t, rng: useDropout ? rng! : null };
        let h = conv(ps, 'in', z);
        const skips = [h];
        p.down.forEach((lv, i) => {
          lv.blocks.forEach((b, j) => {
            h = resBlock(c, `down${i}.res${j}`, h);
            if (b.attn) h = attention(ps, `down${i}.attn${j}`, h, cfg.groups, cfg.heads);
            skips.push(h);
          });
          if (lv.downsample) {
            h = conv(ps, `down${i}.down`, h, 2);
            skips.push(h);
          }
        });
        h = resBlock(c, 'mid.res0', h);
        if (p.mid.attn) h = attention(ps, 'mid.attn', h, cfg.groups, cfg.heads);
        h = resBlock(c, 'mid.res1', h);
        for (const lv of p.up) {
          lv.blocks.forEach((b, j) => {
            h = resBlock(c, `up${lv.level}.res${j}`, tf.concat([h, skips.pop()!], 3));
            if (b.attn) h = attention(ps, `up${lv.level}.attn${j}`, h, cfg.groups, cfg.heads);
          });
          if (lv.upsample) h = conv(ps, `up${lv.level}.up`, upsample2x(h));
        }
        return conv(ps, 'out.conv', groupNormAct(ps, 'out.norm', h, cfg.groups, true));
      });
    },
    exportOnnx(g, ps, z, logsnr) {
      return unetOnnx(g, ps, cfg, p, dataShape, z, logsnr);
    },
  };
}
