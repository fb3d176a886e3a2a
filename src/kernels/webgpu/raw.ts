/**
 * WGSL compute dispatches that bind several read_write buffers (tfjs-webgpu programs have one output),
 * recorded into tfjs-webgpu's own command encoder and compute pass so that they run in order with
 * its kernels, with the same bookkeeping it does for its programs: tensors used by queued commands
 * are marked so their buffers are not recycled before the queue is submitted, uniforms go through
 * the backend's pool, and the queue is flushed every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches.
 */
import { tf } from '../../tf.js';
import { dropCpuCopy, webgpuBackend, type Uniform } from './program.js';

/* Minimal shapes of the WebGPU objects used (the `webgpu` package provides the real ones). */
interface GpuPipeline {
  getBindGroupLayout(i: number): unknown;
}
interface GpuPass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}
interface GpuDevice {
  createShaderModule(d: { code: string; label?: string }): unknown;
  createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string }; label?: string }): GpuPipeline;
  createBindGroup(d: { layout: unknown; entries: { binding: number; resource: unknown }[] }): unknown;
}
interface BackendInternals {
  device: GpuDevice;
  tensorMap: { get(id: object): { resource: unknown } };
  uploadToGPU(id: object): void;
  makeUniforms(u: Uniform[]): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: { beginComputePass(d: object): GpuPass };
  computePassEncoder: GpuPass | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
}

const pipelines = new Map<string, GpuPipeline>();

/** Compiles (once per key) a WGSL module with entry point `main` and an automatic layout. */
export function rawPipeline(key: string, code: string): GpuPipeline {
  let p = pipelines.get(key);
  if (!p) {
    const device = (webgpuBackend() as unknown as BackendInternals).device;
    p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code, label: key }), entryPoint: 'main' }, label: key });
    pipelines.set(key, p);
  }
  return p;
}

/**
 * Records one dispatch of `pipeline` with bindings 0..k−1 = the tensors' buffers (in order) and
 * binding k = the uniforms (if any). `written` lists the tensors the shader writes (their CPU copies
 * are dropped).
 */
export function rawDispatch(pipeline: GpuPipeline, tensors: tf.TensorInfo[], uniforms: Uniform[] | null, workgroups: [number, number, number], written: tf.TensorInfo[]): void {
  const b = webgpuBackend() as unknown as BackendInternals;
  const entries: { binding: number; resource: unknown }[] = tensors.map((t, i) => {
    b.uploadToGPU(t.dataId);
    b.commandQueueOwnedIds.add(t.dataId);
    return { binding: i, resource: { buffer: b.tensorMap.get(t.dataId).resource } };
  });
  if (uniforms) entries.push({ binding: tensors.length, resource: b.makeUniforms(uniforms) });
  const group = b.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  b.ensureCommandEncoderReady();
  if (!b.computePassEncoder) b.computePassEncoder = b.commandEncoder.beginComputePass({});
  b.computePassEncoder.setPipeline(pipeline);
  b.computePassEncoder.setBindGroup(0, group);
  b.computePassEncoder.dispatchWorkgroups(...workgroups);
  b.dispatchCountInPass++;
  for (const t of written) dropCpuCopy(t);
  if ((tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
}
