/**
 * ONNX twins of the building blocks in src/model/layers.ts, emitted through OnnxGraphBuilder. Each
 * one performs the same float32 operations in the same order as its tfjs twin (or, where noted, a
 * correctly rounded version of one), so that exported networks match tfjs to rounding (the parity
 * check in src/export/parity.ts holds them to it).
 */
import type { ParamSet } from '../model/params.js';
import { DOUBLE, FLOAT, type OnnxGraphBuilder } from './graph.js';

/**
 * sigmoid(x) = 1/(1 + exp(−x)), not the Sigmoid op: onnxruntime's Sigmoid (MLAS, 1.30) is a rational
 * approximation with absolute errors up to ~7e-8 (relative 1e-5 at x = −5, 100% below x = −16, 0
 * below −18); through a 256-wide MLP that alone moved x̂ by 1e-5. Exp is accurate to an ulp.
 */
export function sigmoidOnnx(g: OnnxGraphBuilder, x: string): string {
  const one = g.constant(1);
  return g.op('Div', [one, g.op('Add', [one, g.op('Exp', [g.op('Neg', [x])])])]);
}

/** SiLU(x) = x·sigmoid(x). */
export function siluOnnx(g: OnnxGraphBuilder, x: string): string {
  return g.op('Mul', [x, sigmoidOnnx(g, x)]);
}

/** y = x·W + b with the parameters `${name}.w` [in, out] and `${name}.b` [out]; emitted as layer `name`. */
export function denseOnnx(g: OnnxGraphBuilder, ps: ParamSet, name: string, x: string): string {
  return g.layer(name, () => g.op('Add', [g.op('MatMul', [x, g.param(ps, `${name}.w`)]), g.param(ps, `${name}.b`)]));
}

/**
 * The sinusoidal log-SNR embedding: c = arctan(exp(−clip(λ, ±20)/2)) / (π/2), then
 * [sin(c·1000·f_k), cos(c·1000·f_k)] with f_k = 10000^(−k/(d/2)). λ is [B] (or [1], broadcast); the
 * result is [B, d].
 *
 * exp, arctan, sin and cos are evaluated in float64 and rounded to float32, i.e. correctly rounded,
 * as tfjs's cpu backend (Math.*) and, nearly always, its wasm backend compute them. onnxruntime's
 * float32 Exp and Atan are off by one ulp for about a third of inputs, and the embedding multiplies
 * c by 1000 before sin/cos: one ulp of c (6e-8) becomes 6e-5 rad, which the network amplifies past
 * a 1e-4 parity tolerance. The other steps are the same float32 operations as the tfjs twin.
 */
export function logsnrEmbeddingOnnx(g: OnnxGraphBuilder, logsnr: string, dim: number): string {
  return g.layer('logsnr_embedding', () => {
    const half = dim / 2;
    const freqs = new Float32Array(half);
    for (let k = 0; k < half; k++) freqs[k] = Math.exp((-Math.log(10000) * k) / half);
    const clipped = g.op('Clip', [logsnr, g.constant(-20), g.constant(20)]);
    const e = inDouble(g, g.op('Mul', [clipped, g.constant(-0.5)]), (x) => g.op('Exp', [x]));
    const c = g.op('Div', [inDouble(g, e, (x) => atanPositive64(g, x)), g.constant(Math.PI / 2)]);
    const col = g.op('Reshape', [g.op('Mul', [c, g.constant(1000)]), g.int64([-1, 1])]);
    const ang = g.op('Mul', [col, g.constant(freqs, [1, half], 'freqs')]);
    return g.op('Concat', [inDouble(g, ang, (x) => g.op('Sin', [x])), inDouble(g, ang, (x) => g.op('Cos', [x]))], { axis: 1 });
  });
}

/** f evaluated in float64 on a float32 value, rounded back to float32. */
export function inDouble(g: OnnxGraphBuilder, x: string, f: (x64: string) => string): string {
  return g.op('Cast', [f(g.op('Cast', [x], { to: DOUBLE }))], { to: FLOAT });
}

/**
 * arctan(x) for float64 x > 0 from + − × ÷ √ (onnxruntime has no float64 Atan): r = min(x, 1/x);
 * three halvings arctan(y) = 2·arctan(y / (1 + √(1 + y²))) bring |y| ≤ tan(π/32) ≈ 0.098; the series
 * y·Σ_{k≤8} (−y²)^k/(2k+1) then errs by < y¹⁹/19 ≈ 1e-20; arctan(x) = 8·arctan(y), or π/2 − that for x > 1.
 * Relative error < 1e-15 over (0, ∞).
 */
export function atanPositive64(g: OnnxGraphBuilder, x: string): string {
  return g.layer('atan64', () => {
    const one = g.constant64(1);
    const big = g.op('Greater', [x, one]);
    let y = g.op('Where', [big, g.op('Div', [one, x]), x]);
    for (let i = 0; i < 3; i++) y = g.op('Div', [y, g.op('Add', [one, g.op('Sqrt', [g.op('Add', [one, g.op('Mul', [y, y])])])])]);
    const y2 = g.op('Mul', [y, y]);
    const K = 8;
    const term = (k: number) => g.constant64((k % 2 ? -1 : 1) / (2 * k + 1));
    let p = term(K);
    for (let k = K - 1; k >= 0; k--) p = g.op('Add', [g.op('Mul', [p, y2]), term(k)]);
    const a = g.op('Mul', [g.constant64(8), g.op('Mul', [y, p])]);
    return g.op('Where', [big, g.op('Sub', [g.constant64(Math.PI / 2), a]), a]);
  });
}

/** model/layers.ts timeEmbedding as ONNX nodes: SiLU(temb.1(SiLU(temb.0(emb(λ))))). */
export function timeEmbeddingOnnx(g: OnnxGraphBuilder, ps: ParamSet, logsnr: string, embDim: number): string {
  return siluOnnx(g, denseOnnx(g, ps, 'temb.1', siluOnnx(g, denseOnnx(g, ps, 'temb.0', logsnrEmbeddingOnnx(g, logsnr, embDim)))));
}
