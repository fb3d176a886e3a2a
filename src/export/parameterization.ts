/**
 * The parameterizations in ONNX: x̂ and ε̂ from a network's raw output, the ONNX twins of
 * src/diffusion.ts predictX/epsFromX and src/model/network.ts alphaSigmaFromLogsnr (same formulas,
 * same float32 operation order).
 */
import type { Parameterization } from '../diffusion.js';
import { ExportError } from '../errors.js';
import type { Network } from '../model/network.js';
import type { ParamSet } from '../model/params.js';
import type { OnnxGraphBuilder } from '../onnx/graph.js';
import { sigmoidOnnx } from '../onnx/layers.js';

/**
 * α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)), reshaped to [B, 1, …] for data of rank `rank` (batch
 * axis included). sigmoid is src/onnx/layers.ts sigmoidOnnx: onnxruntime's Sigmoid op returns 0 below
 * −18, which would make α = 0 at λ = −20 (u = 1, the first sampling step) and σ = 0 at λ = 20.
 */
export function alphaSigmaOnnx(g: OnnxGraphBuilder, logsnr: string, rank: number): { alpha: string; sigma: string } {
  return g.layer('alpha_sigma', () => {
    const shape = g.int64([-1, ...Array<number>(rank - 1).fill(1)]);
    return {
      alpha: g.op('Reshape', [g.op('Sqrt', [sigmoidOnnx(g, logsnr)]), shape]),
      sigma: g.op('Reshape', [g.op('Sqrt', [sigmoidOnnx(g, g.op('Neg', [logsnr]))]), shape]),
    };
  });
}

/** x = (z − σ·ε) / α */
export function xFromEpsOnnx(g: OnnxGraphBuilder, z: string, eps: string, alpha: string, sigma: string): string {
  return g.op('Div', [g.op('Sub', [z, g.op('Mul', [sigma, eps])]), alpha]);
}

/** ε = (z − α·x) / σ */
export function epsFromXOnnx(g: OnnxGraphBuilder, z: string, x: string, alpha: string, sigma: string): string {
  return g.op('Div', [g.op('Sub', [z, g.op('Mul', [alpha, x])]), sigma]);
}

/**
 * x̂ from the raw network output.
 *  x:    x̂ = out
 *  eps:  x̂ = (z − σ·ε̃) / α
 *  v:    x̂ = α·z − σ·ṽ
 *  both: out = [x̃, ε̃] along the last axis;  x̂ = σ²·x̃ + α²·(z − σ·ε̃)/α
 */
export function predictXOnnx(g: OnnxGraphBuilder, p: Parameterization, out: string, z: string, alpha: string, sigma: string): string {
  return g.layer(`predict_x_${p}`, () => {
    switch (p) {
      case 'x':
        return out;
      case 'eps':
        return xFromEpsOnnx(g, z, out, alpha, sigma);
      case 'v':
        return g.op('Sub', [g.op('Mul', [alpha, z]), g.op('Mul', [sigma, out])]);
      case 'both': {
        const [xt, et] = g.opN('Split', [out], 2, { axis: -1 }) as [string, string];
        const sq = (v: string) => g.op('Mul', [v, v]);
        return g.op('Add', [g.op('Mul', [sq(sigma), xt]), g.op('Mul', [sq(alpha), xFromEpsOnnx(g, z, et, alpha, sigma)])]);
      }
    }
  });
}

/** The network's exportOnnx, or an ExportError naming the model type that lacks it. */
export function exporterOf(net: Network, modelType: string): NonNullable<Network['exportOnnx']> {
  if (!net.exportOnnx) {
    throw new ExportError(`model type "${modelType}" cannot be exported to ONNX: its network does not implement exportOnnx (see Network in src/model/network.ts)`);
  }
  return net.exportOnnx.bind(net);
}

/**
 * x̂ (not clipped) of `net` under parameterization `p` for z and λ, with the α, σ it used.
 * `logsnr` is [B] or [1]; `rank` is the rank of z with the batch axis.
 */
export function denoiseOnnx(
  g: OnnxGraphBuilder,
  net: Network,
  modelType: string,
  ps: ParamSet,
  p: Parameterization,
  z: string,
  logsnr: string,
  rank: number,
): { x0: string; alpha: string; sigma: string } {
  const raw = exporterOf(net, modelType)(g, ps, z, logsnr);
  const { alpha, sigma } = alphaSigmaOnnx(g, logsnr, rank);
  return { x0: predictXOnnx(g, p, raw, z, alpha, sigma), alpha, sigma };
}
