/**
 * Identity without a copy on wasm. tfjs saves every tensor a gradient needs by cloning it (the
 * Identity kernel); stock tfjs-wasm's Identity copies the memory, so a training step held two copies
 * of every saved activation and spent time copying them (a UNet at batch 64 ran out of the 4 GB wasm
 * heap). tfjs tensors are immutable, so, as the cpu backend's Identity and wasm's own Reshape do, the
 * output shares the input's memory and bumps its reference count.
 */
import { tf } from '../tf.js';

interface RefCounted {
  incRef(dataId: unknown): void;
}

export function registerSharedIdentity(kind: 'wasm'): void {
  const stock = tf.getKernel('Identity', kind);
  if (!stock || (stock as { halfstep?: boolean }).halfstep) return;
  tf.unregisterKernel('Identity', kind);
  const config: tf.KernelConfig & { halfstep: boolean } = {
    kernelName: 'Identity',
    backendName: kind,
    halfstep: true,
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      if (x.dtype === 'string') return stock.kernelFunc(args);
      (args.backend as unknown as RefCounted).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  };
  tf.registerKernel(config);
}
