/** The one interface every denoiser network implements, and the bridge from a network to a sampler's `denoise`. */
import { tf } from '../tf.js';
import type { Rng } from '../rng.js';
import type { ParamSet } from './params.js';
import { predictX, type Parameterization } from '../diffusion.js';
import type { Denoise } from '../sampler.js';
import type { OnnxGraphBuilder } from '../onnx/graph.js';

export interface Network {
  /** Shape of one example, e.g. [2] or [28, 28, 1]. */
  readonly dataShape: number[];
  /** Channels of the raw output (twice the data channels for the "both" parameterization). */
  readonly outChannels: number;
  /** A fresh, deterministically initialised parameter set. */
  init(rng: Rng): ParamSet;
  /** The raw network output for z [B, …] at log-SNR λ [B]. `training` turns on dropout. */
  apply(ps: ParamSet, z: tf.Tensor, logsnr: tf.Tensor, training: boolean, rng?: Rng): tf.Tensor;
  /**
   * Optional: emit the same raw output as `apply` (inference, no dropout) into an ONNX graph, reading
   * the values named `z` [B, …] and `logsnr` ([B], or [1] to broadcast over the batch); returns the
   * name of the output value. Weights go in through `g.param(ps, name)`. Needed by `halfstep export`.
   * Image data arrives as tfjs lays it out, [B, H, W, C]; ONNX Conv, InstanceNormalization and Resize
   * are NCHW, so transpose once after the input and once before the output (and filters HWIO → OIHW).
   */
  exportOnnx?(g: OnnxGraphBuilder, ps: ParamSet, z: string, logsnr: string): string;
}

/** α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)) as tensors shaped [B, 1, …] for data of rank `rank`. */
export function alphaSigmaFromLogsnr(logsnr: tf.Tensor, rank: number): { alpha: tf.Tensor; sigma: tf.Tensor } {
  const shape = [-1, ...Array<number>(rank - 1).fill(1)];
  return {
    alpha: tf.reshape(tf.sqrt(tf.sigmoid(logsnr)), shape),
    sigma: tf.reshape(tf.sqrt(tf.sigmoid(tf.neg(logsnr))), shape),
  };
}

/** x̂(z, λ) of a network with given weights under a parameterization: the function samplers take. */
export function denoiser(net: Network, ps: ParamSet, param: Parameterization): Denoise {
  return (z, logsnr) =>
    tf.tidy(() => {
      const { alpha, sigma } = alphaSigmaFromLogsnr(logsnr, z.rank);
      return predictX(param, net.apply(ps, z, logsnr, false), z, alpha, sigma);
    });
}
