/**
 * halfstep's WGSL kernels on tfjs-backend-webgpu (registered by initBackend('webgpu') unless
 * HALFSTEP_NATIVE_KERNELS=0): the filter gradient of Conv2D, fused GroupNorm(+SiLU) forward and
 * backward, and clip + Adam + EMA in place (used by optim.ts).
 */
import { tf } from '../../tf.js';
import { registerWebgpuConv2DBackpropFilter } from './conv-filter.js';
import { registerWebgpuGroupNorm } from './groupnorm.js';
import { hostCutsWanted, installWriteBufferUploads } from './host.js';

let enabled = false;

export function registerWebgpuKernels(): void {
  registerWebgpuConv2DBackpropFilter();
  registerWebgpuGroupNorm();
  if (hostCutsWanted()) installWriteBufferUploads();
  enabled = true;
}

/** True when the webgpu backend is active and halfstep's WGSL kernels are registered on it. */
export function webgpuKernelsActive(): boolean {
  return enabled && tf.getBackend() === 'webgpu';
}
