/**
 * Building ONNX graphs with the protobuf classes of the npm package onnx-proto (no hand-encoded
 * bytes). Opset 17, IR version 8: what Debian's onnx 1.12 checker and current runtimes accept.
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxNs } from 'onnx-proto';

// A CommonJS package: imported (not required) so that bundles, the GPU machine's included, carry it.
export const onnx = (onnxProto as unknown as { onnx: typeof OnnxNs }).onnx;

export const OPSET = 17;
export const IR_VERSION = 8;
export const FLOAT = 1; // TensorProto.DataType.FLOAT
export const INT64 = 7;

export type Dim = number | string;

export function valueInfo(name: string, dims: Dim[], elemType = FLOAT): OnnxNs.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

type AttrValue = number | number[] | string | OnnxNs.ITensorProto;

export function attr(name: string, v: AttrValue, forceFloat = false): OnnxNs.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return Number.isInteger(v) && !forceFloat ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  if (Array.isArray(v)) return forceFloat ? { name, type: T.FLOATS, floats: v } : { name, type: T.INTS, ints: v };
  return { name, type: T.TENSOR, t: v };
}

export function node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, name?: string, domain?: string): OnnxNs.INodeProto {
  return {
    opType,
    input: inputs,
    output: outputs,
    name: name ?? outputs[0],
    attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
    ...(domain ? { domain } : {}),
  };
}

export function floatTensor(name: string, dims: number[], data: Float32Array): OnnxNs.ITensorProto {
  const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return { name, dims, dataType: FLOAT, rawData: raw };
}

export function int64Tensor(name: string, dims: number[], data: number[]): OnnxNs.ITensorProto {
  const b = new BigInt64Array(data.map((v) => BigInt(v)));
  return { name, dims, dataType: INT64, rawData: new Uint8Array(b.buffer) };
}

export interface GraphSpec {
  name: string;
  nodes: OnnxNs.INodeProto[];
  inputs: OnnxNs.IValueInfoProto[];
  outputs: OnnxNs.IValueInfoProto[];
  initializers?: OnnxNs.ITensorProto[];
  metadata?: Record<string, string>;
  docString?: string;
}

export function encodeModel(g: GraphSpec, producerVersion = '0'): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'halfstep',
    producerVersion,
    docString: g.docString ?? '',
    graph: { name: g.name, node: g.nodes, input: g.inputs, output: g.outputs, initializer: g.initializers ?? [] },
    metadataProps: Object.entries(g.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}
