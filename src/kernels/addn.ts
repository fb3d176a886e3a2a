/**
 * AddN as a chain of Adds. With the Dawn of the npm package `webgpu` (0.6), tfjs-backend-webgpu's
 * AddNPackedProgram fails WGSL validation, so every gradient that sums several paths came out wrong
 * (seen on an H100, 2026-11-24). Pairwise Adds compute the same sum with kernels that work.
 */
import { tf } from '../tf.js';
import { replaceKernel } from './registry.js';

export function registerChainedAddN(backendName: string): void {
  const add = tf.getKernel('Add', backendName);
  const identity = tf.getKernel('Identity', backendName);
  if (!add || !identity) return;
  replaceKernel(backendName, 'AddN', ({ inputs, backend }) => {
    const ts = inputs as unknown as tf.TensorInfo[];
    if (ts.length === 1) return identity.kernelFunc({ inputs: { x: ts[0]! }, backend, attrs: {} }) as tf.TensorInfo;
    let acc = add.kernelFunc({ inputs: { a: ts[0]!, b: ts[1]! }, backend, attrs: {} }) as tf.TensorInfo;
    for (let i = 2; i < ts.length; i++) {
      const next = add.kernelFunc({ inputs: { a: acc, b: ts[i]! }, backend, attrs: {} }) as tf.TensorInfo;
      (backend as { disposeData(id: unknown): void }).disposeData(acc.dataId);
      acc = next;
    }
    return acc;
  });
}
