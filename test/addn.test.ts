import { expect, test } from 'vitest';
import { tf } from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { registerChainedAddN } from '../src/kernels/addn.js';
import { isHalfstepKernel } from '../src/kernels/registry.js';

test('AddN as chained Adds sums any number of inputs and its gradient flows to each (checked on cpu)', async () => {
  await initBackend('cpu');
  const stock = tf.getKernel('AddN', 'cpu')!;
  try {
    registerChainedAddN('cpu');
    expect(isHalfstepKernel('AddN', 'cpu')).toBe(true);
    const a = tf.tensor([1, 2]);
    const b = tf.tensor([10, 20]);
    const c = tf.tensor([100, 200]);
    expect(Array.from(tf.addN([a]).dataSync())).toEqual([1, 2]);
    expect(Array.from(tf.addN([a, b]).dataSync())).toEqual([11, 22]);
    const before = tf.memory().numTensors;
    const s = tf.addN([a, b, c, a]);
    expect(Array.from(s.dataSync())).toEqual([112, 224]);
    expect(tf.memory().numTensors).toBe(before + 1); // intermediates freed
    // a variable used on three paths: its gradient is an AddN of three terms
    const x = tf.variable(tf.tensor([3]));
    const g = tf.variableGrads(() => tf.sum(tf.add(tf.add(tf.mul(x, 2), tf.mul(x, x)), tf.sin(x))) as tf.Scalar, [x]);
    expect(g.grads[x.name]!.dataSync()[0]).toBeCloseTo(2 + 6 + Math.cos(3), 5);
  } finally {
    tf.unregisterKernel('AddN', 'cpu');
    tf.registerKernel(stock);
  }
});
