/**
 * MLP denoiser for vector data [B, D]: a residual MLP conditioned on log-SNR through a sinusoidal
 * embedding, added (after a projection) inside every block.
 *   h = W_in·z;  t = MLP(emb(λ));  for each block: h ← h + W2·SiLU(W1·SiLU(h) + P_b·t);  out = W_out·SiLU(h)
 */
import { tf } from '../tf.js';
import type { Rng } from '../rng.js';
import { ParamSet } from './params.js';
import { dense, denseParams, silu, timeEmbedding, timeEmbeddingParams } from './layers.js';
import type { Network } from './network.js';
import { denseOnnx, siluOnnx, timeEmbeddingOnnx } from '../onnx/layers.js';

export interface MlpConfig {
  type: 'mlp';
  hidden: number;
  blocks: number;
  emb_dim: number;
}

export function mlpNetwork(cfg: MlpConfig, dataShape: number[], outChannels: number): Network {
  if (dataShape.length !== 1) throw new Error(`the mlp model takes vector data [D]; got data shape [${dataShape.join(', ')}]`);
  const d = dataShape[0]!;
  const H = cfg.hidden;
  return {
    dataShape,
    outChannels,
    init(rng: Rng): ParamSet {
      const ps = new ParamSet();
      timeEmbeddingParams(ps, rng, cfg.emb_dim, H);
      denseParams(ps, rng, 'in', d, H);
      for (let b = 0; b < cfg.blocks; b++) {
        denseParams(ps, rng, `block${b}.temb`, H, H);
        denseParams(ps, rng, `block${b}.fc1`, H, H);
        denseParams(ps, rng, `block${b}.fc2`, H, H, 'zero');
      }
      denseParams(ps, rng, 'out', H, outChannels, 'zero');
      return ps;
    },
    apply(ps: ParamSet, z: tf.Tensor, logsnr: tf.Tensor): tf.Tensor {
      return tf.tidy(() => {
        const t = timeEmbedding(ps, logsnr, cfg.emb_dim);
        let h = dense(ps, 'in', z);
        for (let b = 0; b < cfg.blocks; b++) {
          const a = tf.add(dense(ps, `block${b}.fc1`, silu(h)), dense(ps, `block${b}.temb`, t));
          h = tf.add(h, dense(ps, `block${b}.fc2`, silu(a)));
        }
        return dense(ps, 'out', silu(h));
      });
    },
    exportOnnx(g, ps, z, logsnr) {
      const t = timeEmbeddingOnnx(g, ps, logsnr, cfg.emb_dim);
      let h = denseOnnx(g, ps, 'in', z);
      for (let b = 0; b < cfg.blocks; b++) {
        const a = g.op('Add', [denseOnnx(g, ps, `block${b}.fc1`, siluOnnx(g, h)), denseOnnx(g, ps, `block${b}.temb`, t)]);
        h = g.op('Add', [h, denseOnnx(g, ps, `block${b}.fc2`, siluOnnx(g, a))]);
      }
      return denseOnnx(g, ps, 'out', siluOnnx(g, h));
    },
  };
}
