/**
 * Identity without a copy on wasm. tfjs saves every tensor a gradient needs by cloning it (the
 * Identity kernel); stock tfjs-wasm's Identity copies the memory, so a training step held two copies
 * of every saved activation and spent time copying them (a UNet at batch 64 ran out of the 4 GB wasm
 * heap). tfjs tensors are immutable, so, as the cpu backend's Identity and wasm's own Reshape do, the
 * output shares the input's memory and bumps its reference count.
 */
import { tf } from '../tf.js';
import { replaceKernel } from './registry.js';

interface RefCounted {
  incRef(dataId: unknown): void;
}

export function registerSharedIdentity(kind: 'wasm'): void {
  replaceKernel(kind, 'Identity', (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return null;
    (args.backend as unknown as RefCounted).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
}
