/**
 * halfstep's own WGSL kernels on tfjs-backend-webgpu: a small description of a compute program that
 * the backend compiles (once per shader key), binds and records into its command queue like its own
 * kernels, so ordering with tfjs ops is kept.
 *
 * What the backend's shader preamble gives the WGSL `code`: the output buffer `result`
 * (array<f32>, read_write), one read-only array<f32> per name in `inputs`, the struct `uniforms` with
 * `uniforms.size` (the output's element count) and the fields declared in `uniforms`, the builtins as
 * private variables `localId`, `localIndex`, `globalId`, `workgroupId`, `numWorkgroups`; the code
 * defines `fn main(index : i32)` (one invocation per output element, `index` the flat global index)
 * or `fn main()` when `perElement` is false. The code must read `uniforms` somewhere (the pipeline
 * layout is derived from the shader, and the backend always binds its uniforms).
 */
import { tf } from '../../tf.js';

export interface Uniform {
  type: 'float32' | 'int32' | 'uint32';
  data: number[];
}

export interface WgslSpec {
  /** Unique per WGSL text: geometry baked into the code as constants must be part of it. */
  key: string;
  inputs: string[];
  outputShape: number[];
  code: string;
  workgroupSize?: [number, number, number];
  /** Workgroups to dispatch; default: enough for one invocation per output element. */
  dispatch?: [number, number, number];
  /** WGSL struct fields, e.g. 'lr : f32, slot : i32,' (values passed to runWgsl in the same order). */
  uniforms?: string;
  /** true: `fn main(index : i32)` over the output's elements (default); false: `fn main()`. */
  perElement?: boolean;
}

interface WebGpuLike {
  tensorMap: { get(dataId: object): { values: unknown } | undefined };
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniform[], output?: tf.TensorInfo): tf.TensorInfo;
  refCount(dataId: object): number;
  device: { limits: { maxComputeWorkgroupsPerDimension: number } };
}

export function webgpuBackend(): WebGpuLike {
  if (tf.getBackend() !== 'webgpu') throw new Error(`halfstep's WGSL kernels need the webgpu backend (active: ${tf.getBackend()})`);
  return tf.backend() as unknown as WebGpuLike;
}

/** Spreads `count` workgroups over x and y (a dimension holds at most 65535). */
export function spread(count: number): [number, number, number] {
  const x = Math.min(count, 65535);
  return [x, Math.ceil(count / x), 1];
}

/** The flat workgroup number of the current invocation, for dispatches made by `spread`. WGSL. */
export const FLAT_WORKGROUP = 'i32(workgroupId.y * numWorkgroups.x + workgroupId.x)';

/**
 * Runs a WGSL program on the webgpu backend. With `output` given, the program writes into that
 * tensor's buffer (in place; the caller makes sure nothing else shares it), else into a new float32
 * tensor of spec.outputShape.
 */
export function runWgsl(spec: WgslSpec, inputs: tf.TensorInfo[], uniforms: Uniform[] = [], output?: tf.TensorInfo): tf.TensorInfo {
  const size = spec.outputShape.reduce((a, b) => a * b, 1);
  const workgroupSize = spec.workgroupSize ?? [256, 1, 1];
  const perElement = spec.perElement ?? true;
  const program = {
    outputShape: spec.outputShape,
    shaderKey: `halfstep_${spec.key}`,
    variableNames: spec.inputs,
    workgroupSize,
    // A flat layout makes the backend's getGlobalIndex() the flat index over (y, x) workgroups.
    dispatchLayout: { x: spec.outputShape.map((_, i) => i) },
    dispatch: spec.dispatch ?? spread(Math.ceil(size / (workgroupSize[0] * workgroupSize[1] * workgroupSize[2]))),
    uniforms: spec.uniforms,
    size: true,
    getUserCode: () => spec.code,
  };
  // The backend calls main(getGlobalIndex()) when the dispatch layout is flat and main() otherwise.
  if (!perElement) (program as { dispatchLayout: object }).dispatchLayout = { x: [], y: [0] };
  const out = webgpuBackend().runWebGPUProgram(program, inputs, 'float32', uniforms, output);
  if (output) dropCpuCopy(output);
  return out;
}

/**
 * After a kernel wrote a tensor's buffer in place: tfjs-webgpu keeps the values of every tensor it has
 * read back (or received from the host) on the CPU and answers later reads from that copy, which would
 * now be stale (a checkpoint would save old weights).
 */
export function dropCpuCopy(t: tf.TensorInfo): void {
  const data = webgpuBackend().tensorMap.get(t.dataId);
  if (data) data.values = null;
}

/**
 * Makes sure variable `v` owns its buffer alone (a clone shares data in tfjs) before a kernel writes
 * into it in place.
 */
export function ownBuffer(v: tf.Variable): void {
  if (webgpuBackend().refCount(v.dataId) > 1) {
    const copy = tf.tidy(() => tf.add(v, tf.scalar(0)));
    v.assign(copy);
    copy.dispose();
  }
}
