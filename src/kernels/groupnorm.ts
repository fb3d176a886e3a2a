/**
 * GroupNorm (optionally followed by SiLU) on NHWC float32 tensors through onnxruntime, forward and
 * backward, as two kernels that halfstep adds to the cpu and wasm backends:
 *
 *   HalfstepGroupNorm      (x, gamma, beta)                 → (y, mean, rstd)
 *   HalfstepGroupNormGrad  (x, gamma, beta, mean, rstd, dy) → (dx, dgamma, dbeta)
 *
 * Built from tfjs ops, GroupNorm + SiLU is ~10 passes forward and ~20 backward, with reductions over
 * non-trailing axes that tfjs-wasm runs slowly (a transpose first), and every intermediate stays
 * alive until the backward pass; a UNet at batch 64 no longer fit in the wasm heap. The fused op
 * (model/unet-layers.ts, a tf.customGrad) keeps only x and the per-group statistics.
 *
 * Formulas (Wu & He 2018), per example n and group g over its H·W·C/G values:
 *   μ = mean(x), rstd = 1/√(var(x) + ε), x̂ = (x − μ)·rstd, a = γ·x̂ + β, y = a·σ(a) (SiLU) or a.
 *   Backward with ga = dy·σ(a)·(1 + a·(1 − σ(a))) (SiLU) or dy:
 *   dβ = Σ ga, dγ = Σ ga·x̂ (over n, h, w), d = ga·γ,
 *   dx = rstd·(d − mean_g(d) − x̂·mean_g(d·x̂)).
 * Group sums are two reductions, over H·W on [n, H·W, C] and then over C/G on [n, G, C/G], which
 * onnxruntime runs on contiguous axes.
 */
import { tf } from '../tf.js';
import { encodeModel, floatTensor, int64Tensor, node, valueInfo, type Dim } from '../onnx/proto.js';
import { SyncSession } from '../onnx/runtime.js';
import { allocOutput, viewOf, type HostBackend } from './memory.js';

export const GROUP_NORM = 'HalfstepGroupNorm';
export const GROUP_NORM_GRAD = 'HalfstepGroupNormGrad';

export interface GroupNormAttrs {
  groups: number;
  eps: number;
  silu: boolean;
}

type Info = tf.TensorInfo;
type NodeProto = ReturnType<typeof node>;

/** A small graph builder: unique value names, int64/float constants as initializers. */
class G {
  readonly nodes: NodeProto[] = [];
  readonly inits: ReturnType<typeof int64Tensor>[] = [];
  private n = 0;
  op(type: string, inputs: string[], attrs: Record<string, number | number[]> = {}, out?: string): string {
    const o = out ?? `t${this.n++}`;
    this.nodes.push(node(type, inputs, [o], attrs));
    return o;
  }
  ints(v: number[]): string {
    const name = `i${this.n++}`;
    this.inits.push(int64Tensor(name, [v.length], v));
    return name;
  }
  float(v: number): string {
    const name = `f${this.n++}`;
    this.inits.push(floatTensor(name, [], new Float32Array([v])));
    return name;
  }
  reshape(x: string, shape: number[], out?: string): string {
    return this.op('Reshape', [x, this.ints(shape)], {}, out);
  }
}

interface Geometry {
  h: number;
  w: number;
  c: number;
  groups: number;
}

function io(names: [string, Dim[]][]) {
  return names.map(([n, d]) => valueInfo(n, d));
}

/*
 * Both graphs keep the big tensors as [n, HW, G, C/G] and fold the per-group statistics and the
 * per-channel γ, β into small [n, 1, G, C/G] coefficients, so that each big elementwise op is one
 * pass: forward 7 ops (4 written), backward 10 to 14.
 */

/** [n, 1, G, 1] view of per-group statistics [n, G]. */
function perGroup(g: G, k: Geometry, t: string): string {
  return g.reshape(t, [0, 1, k.groups, 1]);
}

/** [1, 1, G, C/G] view of a per-channel vector [C]. */
function perChannel(g: G, k: Geometry, t: string): string {
  return g.reshape(t, [1, 1, k.groups, k.c / k.groups]);
}

/** Σ over H·W of t [n, HW, G, C/G], as [n, G, C/G] (`square`: of t²). */
function sumHW(g: G, k: Geometry, t: string, square = false): string {
  const s = g.op(square ? 'ReduceSumSquare' : 'ReduceSum', square ? [g.reshape(t, [0, k.h * k.w, k.c])] : [g.reshape(t, [0, k.h * k.w, k.c]), g.ints([1])], square ? { axes: [1], keepdims: 0 } : { keepdims: 0 });
  return g.reshape(s, [0, k.groups, k.c / k.groups]);
}

/** Σ over the channels of each group of t [n, G, C/G]: [n, G]. */
function sumGroup(g: G, t: string): string {
  return g.op('ReduceSum', [t, g.ints([2])], { keepdims: 0 });
}

function forwardGraph(k: Geometry, a: GroupNormAttrs): Uint8Array {
  const g = new G();
  const count = k.h * k.w * (k.c / k.groups);
  const x4 = g.reshape('x', [0, k.h * k.w, k.groups, k.c / k.groups]);
  g.op('Mul', [sumGroup(g, sumHW(g, k, x4)), g.float(1 / count)], {}, 'mean');
  const d = g.op('Sub', [x4, perGroup(g, k, 'mean')]);
  const variance = g.op('Mul', [sumGroup(g, sumHW(g, k, d, true)), g.float(1 / count)]);
  g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.float(a.eps)])])], {}, 'rstd');
  // a = γ·x̂ + β = d·(rstd·γ) + β
  const scale = g.op('Mul', [perGroup(g, k, 'rstd'), perChannel(g, k, 'gamma')]);
  const act = g.op('Add', [g.op('Mul', [d, scale]), perChannel(g, k, 'beta')]);
  const y = a.silu ? g.op('Mul', [act, g.op('Sigmoid', [act])]) : act;
  g.reshape(y, [0, k.h, k.w, k.c], 'y');
  return encodeModel({
    name: 'group_norm_nhwc',
    nodes: g.nodes,
    initializers: g.inits,
    inputs: io([['x', ['n', k.h, k.w, k.c]], ['gamma', [k.c]], ['beta', [k.c]]]),
    outputs: io([['y', ['n', k.h, k.w, k.c]], ['mean', ['n', k.groups]], ['rstd', ['n', k.groups]]]),
  });
}

/**
 * With d = x − μ (so x̂ = rstd·d), S1 = Σ_hw ga and Sd = Σ_hw ga·d per (n, c):
 *   dβ = Σ_n S1, dγ = Σ_n rstd·Sd, m1 = mean_g(γ·ga) = Σ_{c∈g} γ·S1 / N, m2 = mean_g(γ·ga·x̂) = rstd·Σ_{c∈g} γ·Sd / N,
 *   dx = rstd·(γ·ga − m1 − x̂·m2) = ga·(rstd·γ) + d·(−rstd²·m2) − rstd·m1.
 */
function backwardGraph(k: Geometry, a: GroupNormAttrs): Uint8Array {
  const g = new G();
  const [hw, cg] = [k.h * k.w, k.c / k.groups];
  const count = hw * cg;
  const x4 = g.reshape('x', [0, hw, k.groups, cg]);
  const dy4 = g.reshape('dy', [0, hw, k.groups, cg]);
  const rstd4 = perGroup(g, k, 'rstd');
  const d = g.op('Sub', [x4, perGroup(g, k, 'mean')]);
  const scale = g.op('Mul', [rstd4, perChannel(g, k, 'gamma')]);
  let ga = dy4;
  if (a.silu) {
    const act = g.op('Add', [g.op('Mul', [d, scale]), perChannel(g, k, 'beta')]);
    const s = g.op('Sigmoid', [act]);
    const one = g.float(1);
    // d/da [a·σ(a)] = σ(a)·(1 + a·(1 − σ(a)))
    const slope = g.op('Mul', [s, g.op('Add', [one, g.op('Mul', [act, g.op('Sub', [one, s])])])]);
    ga = g.op('Mul', [dy4, slope]);
  }
  const s1 = sumHW(g, k, ga); // [n, G, C/G]
  const sd = sumHW(g, k, g.op('Mul', [ga, d]));
  const rstd3 = g.reshape('rstd', [0, k.groups, 1]);
  const gamma3 = g.reshape('gamma', [1, k.groups, cg]);
  const rows = (t: string) => g.reshape(t, [-1, k.c]);
  g.op('ReduceSum', [rows(s1), g.ints([0])], { keepdims: 0 }, 'dbeta');
  g.op('ReduceSum', [rows(g.op('Mul', [sd, rstd3])), g.ints([0])], { keepdims: 0 }, 'dgamma');
  const m1 = g.op('Mul', [sumGroup(g, g.op('Mul', [s1, gamma3])), g.float(1 / count)]); // [n, G]
  const m2 = g.op('Mul', [g.op('Mul', [sumGroup(g, g.op('Mul', [sd, gamma3])), g.float(1 / count)]), 'rstd']);
  const p = g.op('Neg', [g.op('Mul', [g.op('Mul', ['rstd', 'rstd']), m2])]);
  const q = g.op('Neg', [g.op('Mul', ['rstd', m1])]);
  const dx = g.op('Add', [g.op('Add', [g.op('Mul', [ga, scale]), g.op('Mul', [d, perGroup(g, k, p)])]), perGroup(g, k, q)]);
  g.reshape(dx, [0, k.h, k.w, k.c], 'dx');
  return encodeModel({
    name: 'group_norm_nhwc_grad',
    nodes: g.nodes,
    initializers: g.inits,
    inputs: io([['x', ['n', k.h, k.w, k.c]], ['gamma', [k.c]], ['beta', [k.c]], ['mean', ['n', k.groups]], ['rstd', ['n', k.groups]], ['dy', ['n', k.h, k.w, k.c]]]),
    outputs: io([['dx', ['n', k.h, k.w, k.c]], ['dgamma', [k.c]], ['dbeta', [k.c]]]),
  });
}

const sessions = new Map<string, SyncSession>();
function session(kind: 'fwd' | 'bwd', k: Geometry, a: GroupNormAttrs): SyncSession {
  const key = `${kind} ${k.h},${k.w},${k.c},${k.groups},${a.eps},${a.silu}`;
  let s = sessions.get(key);
  if (!s) {
    s = new SyncSession(kind === 'fwd' ? forwardGraph(k, a) : backwardGraph(k, a), { spinning: false });
    sessions.set(key, s);
  }
  return s;
}

/** Run `s` on inputs of the backend into new outputs of the given shapes (allocated before any view is taken: the wasm heap may grow). */
function runInto(kind: HostBackend, backend: unknown, s: SyncSession, inputs: Record<string, Info>, outputs: [string, number[]][]): Info[] {
  const outs = outputs.map(([, shape]) => allocOutput(kind, backend, shape).info);
  const feeds: Record<string, { data: Float32Array; dims: number[] }> = {};
  for (const [k, t] of Object.entries(inputs)) feeds[k] = { data: viewOf(kind, backend, t), dims: t.shape };
  const fetches: Record<string, { data: Float32Array; dims: number[] }> = {};
  outputs.forEach(([name, shape], i) => (fetches[name] = { data: viewOf(kind, backend, outs[i]!), dims: shape }));
  s.run(feeds, fetches);
  return outs;
}

function geometryOf(x: Info, groups: number): Geometry {
  const [, h, w, c] = x.shape as [number, number, number, number];
  return { h: h!, w: w!, c: c!, groups };
}

/** Registers both kernels on `kind` (idempotent). */
export function registerOrtGroupNorm(kind: HostBackend): void {
  if (!tf.getKernel(GROUP_NORM, kind)) {
    tf.registerKernel({
      kernelName: GROUP_NORM,
      backendName: kind,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { x, gamma, beta } = inputs as { x: Info; gamma: Info; beta: Info };
        const a = attrs as unknown as GroupNormAttrs;
        const k = geometryOf(x, a.groups);
        const n = x.shape[0]!;
        return runInto(kind, backend, session('fwd', k, a), { x, gamma, beta }, [['y', x.shape], ['mean', [n, a.groups]], ['rstd', [n, a.groups]]]);
      },
    });
  }
  if (!tf.getKernel(GROUP_NORM_GRAD, kind)) {
    tf.registerKernel({
      kernelName: GROUP_NORM_GRAD,
      backendName: kind,
      kernelFunc: ({ inputs, attrs, backend }) => {
        const { x, gamma, beta, mean, rstd, dy } = inputs as Record<'x' | 'gamma' | 'beta' | 'mean' | 'rstd' | 'dy', Info>;
        const a = attrs as unknown as GroupNormAttrs;
        const k = geometryOf(x, a.groups);
        return runInto(kind, backend, session('bwd', k, a), { x, gamma, beta, mean, rstd, dy }, [['dx', x.shape], ['dgamma', gamma.shape], ['dbeta', beta.shape]]);
      },
    });
  }
}

/** Whether the fused kernels exist on the active backend. */
export function fusedGroupNormAvailable(): boolean {
  const b = tf.getBackend();
  return !!tf.getKernel(GROUP_NORM, b) && !!tf.getKernel(GROUP_NORM_GRAD, b);
}
