/**
 * The CPU kernels halfstep replaces, timed against the stock tfjs kernels in the same process:
 * MatMul in its four transpose cases and a 3×3 convolution with both gradients.
 *
 *   node scripts/build.mjs bench/kernels.ts && node dist/bench/kernels.js [--backend wasm|cpu]
 */
import { tf } from '../src/tf.js';
import { initBackend, registerHostKernels } from '../src/backend.js';
import { Rng } from '../src/rng.js';

const a = process.argv.slice(2);
const backend = (a.includes('--backend') ? a[a.indexOf('--backend') + 1] : 'wasm') as 'wasm' | 'cpu';

function time(f: () => tf.Tensor | tf.Tensor[], reps = 10): number {
  const run = () => {
    const out = f();
    for (const t of Array.isArray(out) ? out : [out]) {
      t.dataSync();
      t.dispose();
    }
  };
  run();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) run();
  return (performance.now() - t0) / reps;
}

const rng = new Rng(1);
const rand = (shape: number[]) => tf.tensor(rng.normals(shape.reduce((x, y) => x * y, 1)), shape);

async function measure(native: boolean): Promise<Map<string, number>> {
  if (native) registerHostKernels(backend);
  const m = new Map<string, number>();
  const x = rand([512, 256]);
  const w = rand([256, 256]);
  const xt = tf.transpose(x);
  const wt = tf.transpose(w);
  m.set('matmul 512×256·256×256', time(() => tf.matMul(x, w)));
  m.set('matmul, A transposed', time(() => tf.matMul(xt, w, true, false)));
  m.set('matmul, B transposed', time(() => tf.matMul(x, wt, false, true)));
  m.set('matmul, both transposed', time(() => tf.matMul(xt, wt, true, true)));
  const img = rand([16, 28, 28, 32]);
  const f = rand([3, 3, 32, 32]);
  m.set('conv 3×3 16×28×28×32→32', time(() => tf.conv2d(img as tf.Tensor4D, f as tf.Tensor4D, 1, 'same'), 5));
  try {
    m.set(
      'conv 3×3 + both gradients',
      time(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 1, 'same')))([img, f]), 3),
    );
  } catch (e) {
    m.set('conv 3×3 + both gradients', Number.NaN);
    process.stderr.write(`stock ${backend}: conv gradients fail: ${(e as Error).message.split('\n')[0]}\n`);
  }
  tf.dispose([x, w, xt, wt, img, f]);
  return m;
}

// The stock kernels first: registering halfstep's replaces them for the rest of the process.
process.env.HALFSTEP_NATIVE_KERNELS = '0';
await initBackend(backend);
const stock = await measure(false);
const ours = await measure(true);
const flops: Record<string, number> = {
  'matmul 512×256·256×256': 2 * 512 * 256 * 256,
  'matmul, A transposed': 2 * 512 * 256 * 256,
  'matmul, B transposed': 2 * 512 * 256 * 256,
  'matmul, both transposed': 2 * 512 * 256 * 256,
  'conv 3×3 16×28×28×32→32': 2 * 16 * 28 * 28 * 32 * 32 * 9,
  'conv 3×3 + both gradients': 3 * 2 * 16 * 28 * 28 * 32 * 32 * 9,
};
console.log(`| kernel (${backend}) | stock ms | halfstep ms | stock GFLOP/s | halfstep GFLOP/s | speed-up |`);
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [k, s] of stock) {
  const o = ours.get(k)!;
  const g = (ms: number) => (Number.isFinite(ms) ? (flops[k]! / ms / 1e6).toFixed(1) : '—');
  console.log(`| ${k} | ${Number.isFinite(s) ? s.toFixed(2) : 'fails'} | ${o.toFixed(2)} | ${g(s)} | ${g(o)} | ${Number.isFinite(s) ? (s / o).toFixed(1) + '×' : '—'} |`);
}
