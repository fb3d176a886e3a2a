/**
 * A small builder for ONNX graphs on top of proto.ts: it collects nodes and initializers, gives every
 * value a unique name, shares parameters and constants, and tracks the layer being emitted so that an
 * error names it. Networks emit their forward pass through it (Network.exportOnnx).
 *
 * Only the op types in ONNX_OPS can be emitted: the ones that exist in opset 17 (the opset halfstep
 * writes, see proto.ts). Anything else is an ExportError naming the op and the layer.
 */
import type { onnx as OnnxNs } from 'onnx-proto';
import { ExportError } from '../errors.js';
import type { ParamSet } from '../model/params.js';
import { FLOAT, OPSET, floatTensor, int64Tensor, node, valueInfo, type Dim, type GraphSpec } from './proto.js';

/** TensorProto.DataType codes beyond proto.ts's FLOAT and INT64. */
export const DOUBLE = 11;
export { FLOAT };

type AttrValue = Parameters<typeof node>[3] extends Record<string, infer V> | undefined ? V : never;

/** Input arity [min, max] of the opset-17 op types halfstep may emit (max = Infinity: variadic). */
export const ONNX_OPS = {
  Identity: [1, 1],
  Abs: [1, 1],
  Neg: [1, 1],
  Exp: [1, 1],
  Log: [1, 1],
  Sqrt: [1, 1],
  Reciprocal: [1, 1],
  Sigmoid: [1, 1],
  Tanh: [1, 1],
  Relu: [1, 1],
  Erf: [1, 1],
  Sin: [1, 1],
  Cos: [1, 1],
  Atan: [1, 1],
  Add: [2, 2],
  Sub: [2, 2],
  Mul: [2, 2],
  Div: [2, 2],
  Pow: [2, 2],
  Max: [1, Infinity],
  Min: [1, Infinity],
  Where: [3, 3],
  Greater: [2, 2],
  Less: [2, 2],
  Cast: [1, 1],
  Clip: [1, 3],
  MatMul: [2, 2],
  Gemm: [2, 3],
  Conv: [2, 3],
  ConvTranspose: [2, 3],
  AveragePool: [1, 1],
  MaxPool: [1, 1],
  Resize: [1, 4],
  Pad: [2, 3],
  InstanceNormalization: [3, 3],
  LayerNormalization: [2, 3],
  ReduceMean: [1, 1],
  ReduceSum: [1, 2],
  Softmax: [1, 1],
  Reshape: [2, 2],
  Unsqueeze: [2, 2],
  Squeeze: [1, 2],
  Transpose: [1, 1],
  Expand: [2, 2],
  Shape: [1, 1],
  Slice: [3, 5],
  Concat: [1, Infinity],
  Split: [1, 2],
  Gather: [2, 2],
  Einsum: [1, Infinity],
} as const satisfies Record<string, readonly [number, number]>;

export type OnnxOp = keyof typeof ONNX_OPS;

/** Ops people reach for that opset 17 lacks, with how to express them instead. */
const HINTS: Record<string, string> = {
  GroupNormalization: 'GroupNormalization is opset 18; express it as Reshape [B, G, −1] → InstanceNormalization (scale 1, bias 0) → Reshape back → Mul/Add with the per-channel scale and bias',
  Gelu: 'Gelu is opset 20; express it as 0.5·x·(1 + Erf(x/√2))',
  Mish: 'express Mish as x·Tanh(Softplus(x)) with Softplus = Log(1 + Exp(x))',
  Silu: 'express SiLU as Mul(x, Sigmoid(x))',
};

export function isOnnxOp(op: string): op is OnnxOp {
  return Object.prototype.hasOwnProperty.call(ONNX_OPS, op);
}

export class OnnxGraphBuilder {
  private readonly nodes: OnnxNs.INodeProto[] = [];
  private readonly initializers: OnnxNs.ITensorProto[] = [];
  private readonly inputs: OnnxNs.IValueInfoProto[] = [];
  private readonly outputs: OnnxNs.IValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private readonly shared = new Map<string, string>();
  private readonly scope: string[] = [];
  private readonly layouts = new Map<string, string>();

  constructor(readonly name: string) {}

  /** The layer being emitted, e.g. "step0/block1.fc2" (for error messages), or "(graph)". */
  get layerName(): string {
    return this.scope.length ? this.scope.join('/') : '(graph)';
  }

  /** Emit `f` inside layer `name`: value names get its prefix, errors name it. */
  layer<R>(name: string, f: () => R): R {
    this.scope.push(name);
    try {
      return f();
    } finally {
      this.scope.pop();
    }
  }

  /** A graph input of element type float32. Dims may be numbers or symbolic names ("batch"). */
  input(name: string, dims: Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  /** Make `value` a graph output called `name` (through an Identity node if the names differ). */
  output(value: string, name: string, dims: Dim[]): void {
    if (value !== name) {
      this.claim(name);
      this.nodes.push(node('Identity', [value], [name], {}, `output/${name}`));
    }
    this.outputs.push(valueInfo(name, dims));
  }

  /** Emit one node with a single output; returns the output's name. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.opN(type, inputs, 1, attrs)[0]!;
  }

  /** Emit one node with `outputs` outputs (e.g. Split). */
  opN(type: string, inputs: string[], outputs: number, attrs: Record<string, AttrValue> = {}): string[] {
    if (!isOnnxOp(type)) {
      const hint = HINTS[type];
      throw new ExportError(
        `op "${type}" has no ONNX mapping (layer "${this.layerName}" of graph "${this.name}"; opset ${OPSET})${hint ? `: ${hint}` : ''}. ` +
          `Mapped ops: ${Object.keys(ONNX_OPS).join(', ')}`,
      );
    }
    const [min, max] = ONNX_OPS[type];
    if (inputs.length < min || inputs.length > max) {
      throw new ExportError(`op "${type}" takes ${min === max ? min : `${min} to ${max}`} inputs; got ${inputs.length} (layer "${this.layerName}" of graph "${this.name}")`);
    }
    for (const i of inputs) {
      if (i !== '' && !this.names.has(i)) throw new ExportError(`op "${type}" reads "${i}", which no earlier node, input or initializer defines (layer "${this.layerName}")`);
    }
    const outs = Array.from({ length: outputs }, (_, k) => this.fresh(outputs === 1 ? type : `${type}_${k}`));
    this.nodes.push(node(type, inputs, outs, attrs, outs[0]));
    return outs;
  }

  /** A float32 constant (an initializer), shared between uses of the same value. Scalars have dims []. */
  constant(values: number | ArrayLike<number>, dims: number[] = [], hint = 'const'): string {
    return this.numeric('f32', typeof values === 'number' ? Float32Array.of(values) : Float32Array.from(values), dims, hint);
  }

  /** A float64 constant, for the few computations done in double precision (see src/onnx/layers.ts). */
  constant64(values: number | ArrayLike<number>, dims: number[] = [], hint = 'const64'): string {
    return this.numeric('f64', typeof values === 'number' ? Float64Array.of(values) : Float64Array.from(values), dims, hint);
  }

  private numeric(type: 'f32' | 'f64', data: Float32Array | Float64Array, dims: number[], hint: string): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new ExportError(`constant ${hint}: ${data.length} values for dims [${dims.join(', ')}] (layer "${this.layerName}")`);
    const key = data.length <= 16 ? `${type}:${dims.join('x')}:${Array.from(data).join(',')}` : null;
    if (key && this.shared.has(key)) return this.shared.get(key)!;
    const name = this.fresh(hint, key !== null);
    this.initializers.push(
      data instanceof Float32Array ? floatTensor(name, dims, data) : { name, dims, dataType: DOUBLE, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) },
    );
    if (key) this.shared.set(key, name);
    return name;
  }

  /** An int64 vector constant (shapes, axes), shared between uses of the same value. */
  int64(values: number[], hint = 'ints'): string {
    const key = `i64:${values.join(',')}`;
    if (this.shared.has(key)) return this.shared.get(key)!;
    const name = this.fresh(hint, true);
    this.initializers.push(int64Tensor(name, [values.length], values));
    this.shared.set(key, name);
    return name;
  }

  /** The parameter `name` of `ps` as an initializer of the same name (emitted once, however often it is used). */
  param(ps: ParamSet, name: string): string {
    return this.paramAs(ps, name, {});
  }

  /**
   * The parameter `name` of `ps` rearranged as an initializer of the same name: its axes permuted by
   * `perm` (e.g. a conv filter HWIO → OIHW: [3, 2, 0, 1]), then reshaped to `dims` (e.g. a per-channel
   * scale [C] → [C, 1, 1] to broadcast over NCHW). Done on the data when it is written, so the graph
   * holds no Transpose or Reshape of weights. A parameter is written in one layout only.
   */
  paramAs(ps: ParamSet, name: string, layout: { perm?: number[]; dims?: number[] }): string {
    const tag = `${(layout.perm ?? []).join(',')}|${(layout.dims ?? []).join(',')}`;
    const key = `param:${name}`;
    const prev = this.layouts.get(name);
    if (this.shared.has(key)) {
      if (prev !== tag) throw new ExportError(`parameter "${name}" is used in two layouts (layer "${this.layerName}" of graph "${this.name}")`);
      return this.shared.get(key)!;
    }
    let v;
    try {
      v = ps.get(name);
    } catch {
      throw new ExportError(`no parameter named "${name}" (layer "${this.layerName}" of graph "${this.name}")`);
    }
    let data: Float32Array = Float32Array.from(v.dataSync() as Float32Array);
    let shape = v.shape.slice();
    if (layout.perm) [data, shape] = permuteAxes(data, shape, layout.perm);
    if (layout.dims) {
      if (layout.dims.reduce((a, b) => a * b, 1) !== data.length) throw new ExportError(`parameter "${name}" [${shape.join(', ')}] cannot be reshaped to [${layout.dims.join(', ')}] (layer "${this.layerName}")`);
      shape = layout.dims.slice();
    }
    this.claim(name);
    this.initializers.push(floatTensor(name, shape, data));
    this.shared.set(key, name);
    this.layouts.set(name, tag);
    return name;
  }

  /** The finished graph, ready for proto.ts encodeModel. */
  build(extra: Pick<GraphSpec, 'metadata' | 'docString'> = {}): GraphSpec {
    if (this.outputs.length === 0) throw new ExportError(`graph "${this.name}" has no outputs`);
    return { name: this.name, nodes: this.nodes, inputs: this.inputs, outputs: this.outputs, initializers: this.initializers, ...extra };
  }

  /** A value name not used yet: "<layer>/<hint>", with a numeric suffix if needed. */
  private fresh(hint: string, global = false): string {
    const base = global || this.scope.length === 0 ? hint : `${this.scope.join('/')}/${hint}`;
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    this.names.add(name);
    return name;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new ExportError(`value name "${name}" is used twice in graph "${this.name}"`);
    this.names.add(name);
  }
}

/** `data` of shape `shape` with its axes permuted (output axis i is input axis perm[i]), as Transpose does. */
export function permuteAxes(data: Float32Array, shape: number[], perm: number[]): [Float32Array, number[]] {
  const r = shape.length;
  if (perm.length !== r || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) throw new ExportError(`perm [${perm.join(', ')}] is not a permutation of the ${r} axes of [${shape.join(', ')}]`);
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; s *= shape[i]!, i--) inStrides[i] = s;
  const strides = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < r; i++) src += idx[i]! * strides[i]!;
    out[o] = data[src]!;
    for (let i = r - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return [out, outShape];
}
