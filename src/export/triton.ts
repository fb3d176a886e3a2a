/**
 * A model repository for NVIDIA Triton Inference Server: one model per speed/quality tier
 * (`sampler_<N>step`, the unrolled N-step sampler graph), each as
 *   DIR/<model>/config.pbtxt      (ModelConfig in protobuf text format)
 *   DIR/<model>/1/model.onnx      (version 1)
 * served by Triton's onnxruntime backend (platform "onnxruntime_onnx") with dynamic batching. With
 * max_batch_size > 0 Triton owns the batch axis, so `dims` list only the per-example shape.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExportError } from '../errors.js';

export const TRT_PRECISIONS = ['fp32', 'fp16'] as const;
export type TrtPrecision = (typeof TRT_PRECISIONS)[number];
export const TRITON_DEVICES = ['gpu', 'cpu'] as const;
export type TritonDevice = (typeof TRITON_DEVICES)[number];

export interface TritonOptions {
  /** Largest batch Triton forms (dynamic batching) or accepts in one request. */
  maxBatchSize: number;
  /** Model instances per GPU (or on the CPU). */
  instances: number;
  device: TritonDevice;
  /** How long the dynamic batcher may hold a request to fill a batch. */
  maxQueueDelayUs: number;
  /** Run through onnxruntime's TensorRT execution provider at this precision; null = CUDA/CPU provider. */
  tensorrt: TrtPrecision | null;
}

export const TRITON_DEFAULTS: TritonOptions = { maxBatchSize: 64, instances: 1, device: 'gpu', maxQueueDelayUs: 100, tensorrt: null };

/** The tier's model name: the N-step sampler. */
export function tritonModelName(steps: number): string {
  return `sampler_${steps}step`;
}

export interface TritonTensor {
  name: string;
  /** Per-example shape (no batch axis). */
  dims: number[];
}

function check(o: TritonOptions): void {
  if (!Number.isInteger(o.maxBatchSize) || o.maxBatchSize < 1) throw new ExportError(`triton: max_batch_size must be an integer ≥ 1 (dynamic batching needs a batch axis); got ${o.maxBatchSize}`);
  if (!Number.isInteger(o.instances) || o.instances < 1) throw new ExportError(`triton: instances must be an integer ≥ 1; got ${o.instances}`);
  if (!Number.isInteger(o.maxQueueDelayUs) || o.maxQueueDelayUs < 0) throw new ExportError(`triton: max queue delay must be an integer ≥ 0 µs; got ${o.maxQueueDelayUs}`);
  if (o.tensorrt && o.device !== 'gpu') throw new ExportError('triton: the TensorRT accelerator needs GPU instances (device gpu)');
}

function tensorBlock(t: TritonTensor): string {
  return ['  {', `    name: "${t.name}"`, '    data_type: TYPE_FP32', `    dims: [ ${t.dims.join(', ')} ]`, '  }'].join('\n');
}

/** config.pbtxt for one model. */
export function tritonConfig(name: string, inputs: TritonTensor[], outputs: TritonTensor[], o: TritonOptions, comment = ''): string {
  check(o);
  const lines = [
    ...(comment ? comment.split('\n').map((l) => `# ${l}`) : []),
    `name: "${name}"`,
    'platform: "onnxruntime_onnx"',
    `max_batch_size: ${o.maxBatchSize}`,
    'input [',
    inputs.map(tensorBlock).join(',\n'),
    ']',
    'output [',
    outputs.map(tensorBlock).join(',\n'),
    ']',
    'dynamic_batching {',
    `  max_queue_delay_microseconds: ${o.maxQueueDelayUs}`,
    '}',
    'instance_group [',
    '  {',
    `    count: ${o.instances}`,
    `    kind: ${o.device === 'gpu' ? 'KIND_GPU' : 'KIND_CPU'}`,
    '  }',
    ']',
  ];
  if (o.tensorrt) {
    lines.push(
      'optimization {',
      '  execution_accelerators {',
      '    gpu_execution_accelerator: [',
      '      {',
      '        name: "tensorrt"',
      `        parameters { key: "precision_mode" value: "${o.tensorrt.toUpperCase()}" }`,
      '        parameters { key: "max_workspace_size_bytes" value: "1073741824" }',
      '        parameters { key: "trt_engine_cache_enable" value: "1" }',
      '      }',
      '    ]',
      '  }',
      '}',
    );
  }
  return lines.join('\n') + '\n';
}

/** Write DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx; returns the model folder. */
export function writeTritonModel(dir: string, name: string, onnxBytes: Uint8Array, config: string): string {
  const root = join(dir, name);
  mkdirSync(join(root, '1'), { recursive: true });
  atomicWrite(join(root, '1', 'model.onnx'), onnxBytes);
  atomicWrite(join(root, 'config.pbtxt'), config);
  return root;
}

export function atomicWrite(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
