/**
 * BatchMatMul through onnxruntime (MLAS) on the cpu and wasm backends. Stock tfjs-wasm runs a plain
 * matmul at ~30 GFLOP/s on the 2-core machine but falls to ~2–3 GFLOP/s when an operand is
 * transposed, which every dense layer's backward pass does; MLAS runs all four cases at ~130 GFLOP/s.
 * One cached synchronous session per (rank, transposeA, transposeB); memory is shared, not copied.
 */
import { tf } from '../tf.js';
import { replaceKernel } from './registry.js';
import { encodeModel, node, valueInfo } from '../onnx/proto.js';
import { SyncSession } from '../onnx/runtime.js';
import { allocOutput, viewOf, type HostBackend } from './memory.js';

const sessions = new Map<string, SyncSession>();

function session(rank: number, ta: boolean, tb: boolean): SyncSession {
  const key = `${rank}${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
  let s = sessions.get(key);
  if (!s) {
    const dims = (p: string) => (rank === 2 ? [`${p}0`, `${p}1`] : [`${p}b`, `${p}0`, `${p}1`]);
    const nodes =
      rank === 2
        ? [node('Gemm', ['a', 'b'], ['c'], { transA: ta ? 1 : 0, transB: tb ? 1 : 0 })]
        : [
            ...(ta ? [node('Transpose', ['a'], ['at'], { perm: [0, 2, 1] })] : []),
            ...(tb ? [node('Transpose', ['b'], ['bt'], { perm: [0, 2, 1] })] : []),
            node('MatMul', [ta ? 'at' : 'a', tb ? 'bt' : 'b'], ['c']),
          ];
    const bytes = encodeModel({ name: `matmul_${key}`, nodes, inputs: [valueInfo('a', dims('a')), valueInfo('b', dims('b'))], outputs: [valueInfo('c', dims('c'))] });
    s = new SyncSession(bytes, { spinning: false });
    sessions.set(key, s);
  }
  return s;
}

/** Registers the kernel for `kind`, keeping the stock kernel as the fallback for cases it does not take. */
export function registerOrtMatMul(kind: HostBackend): void {
  replaceKernel(kind, 'BatchMatMul', (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const r = a.shape.length;
    const batchOk = r === 2 || (r === 3 && b.shape.length === 3 && (a.shape[0] === b.shape[0] || a.shape[0] === 1 || b.shape[0] === 1));
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || r !== b.shape.length || !batchOk) return null;
    const M = transposeA ? a.shape[r - 1]! : a.shape[r - 2]!;
    const N = transposeB ? b.shape[r - 2]! : b.shape[r - 1]!;
    const outShape = r === 2 ? [M, N] : [Math.max(a.shape[0]!, b.shape[0]!), M, N];
    if (outShape.some((d) => d === 0)) return null;
    const out = allocOutput(kind, args.backend, outShape);
    const av = viewOf(kind, args.backend, a);
    const bv = viewOf(kind, args.backend, b);
    const cv = kind === 'wasm' ? viewOf(kind, args.backend, out.info) : out.view;
    session(r, transposeA, transposeB).run({ a: { data: av, dims: a.shape }, b: { data: bv, dims: b.shape } }, { c: { data: cv, dims: outShape } });
    return out.info;
  });
}
