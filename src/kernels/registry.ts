/**
 * The one way halfstep replaces a tfjs kernel: the replacement takes the cases it handles and returns
 * null for the others, which go to the stock kernel (an error names the kernel if there is none).
 * Replacing twice is a no-op; replaced kernels are marked so tests can tell them from stock ones.
 */
import { tf } from '../tf.js';

export type KernelArgs = Parameters<tf.KernelFunc>[0];
export type Take = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] | null;

export function isHalfstepKernel(kernelName: string, backendName: string): boolean {
  return (tf.getKernel(kernelName, backendName) as { halfstep?: boolean } | undefined)?.halfstep === true;
}

export function replaceKernel(backendName: string, kernelName: string, take: Take): void {
  const stock = tf.getKernel(kernelName, backendName);
  if (stock && (stock as { halfstep?: boolean }).halfstep) return;
  if (stock) tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({
    kernelName,
    backendName,
    halfstep: true,
    kernelFunc: (args: KernelArgs) => {
      const out = take(args);
      if (out) return out;
      if (stock) return stock.kernelFunc(args);
      throw new Error(`${kernelName} on ${backendName}: this case is not supported by halfstep's kernel and there is no stock one (attrs ${JSON.stringify(args.attrs)})`);
    },
  } as tf.KernelConfig);
}
