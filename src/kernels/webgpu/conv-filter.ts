/**
 * Conv2DBackpropFilter on webgpu as a split-K implicit GEMM.
 *
 * The filter gradient of an NHWC convolution with HWIO filter [kh, kw, ci, co] is one matrix product
 * with a very long reduction:
 *   dW[k, o] = Σ_m P[m, k] · dY[m, o],   m = (n, oy, ox) over N·OH·OW,  k = (ky, kx, c) over kh·kw·ci,
 *   P[m, k] = x[n, oy·sh − padTop + ky·dh, ox·sw − padLeft + kx·dw, c] (0 outside the image),
 * so the output is small (kh·kw·ci × co) and M is large (128·28·28 = 100,352 for the MNIST UNet at
 * batch 128). tfjs-webgpu computes each output element in one invocation looping over all of M, which
 * leaves the GPU mostly idle: 82% of a UNet step's GPU time (docs/performance.md).
 *
 * Here each workgroup computes a 64×64 tile of dW over one slice of M ("split K"), staging 16 rows of
 * P (gathered from x on the fly: no im2col buffer) and dY in workgroup memory per iteration; each of
 * its 256 invocations accumulates a 4×4 block. Pass 1 writes per-slice partial tiles [S, K, co],
 * pass 2 sums the S slices. S is chosen so that about 1024 workgroups run.
 */
import { tf } from '../../tf.js';
import { replaceKernel } from '../registry.js';
import { runWgsl, spread, FLAT_WORKGROUP, webgpuBackend } from './program.js';

const TILE = 64;
const TM = 16;

export interface FilterGeometry {
  n: number;
  h: number;
  w: number;
  ci: number;
  oh: number;
  ow: number;
  co: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  padTop: number;
  padLeft: number;
}

/** Number of M-slices and rows per slice for a geometry. */
export function splitK(g: FilterGeometry): { slices: number; chunk: number } {
  const M = g.n * g.oh * g.ow;
  const tiles = Math.ceil((g.kh * g.kw * g.ci) / TILE) * Math.ceil(g.co / TILE);
  const want = Math.max(1, Math.min(Math.ceil(M / TM), Math.ceil(1024 / tiles)));
  const chunk = Math.ceil(M / want / TM) * TM;
  return { slices: Math.ceil(M / chunk), chunk };
}

function partialProgram(g: FilterGeometry, slices: number, chunk: number) {
  const K = g.kh * g.kw * g.ci;
  const M = g.n * g.oh * g.ow;
  const kTiles = Math.ceil(K / TILE);
  const oTiles = Math.ceil(g.co / TILE);
  const key = `convfilter_${Object.values(g).join('_')}_${slices}_${chunk}`;
  const code = `
    const K = ${K};
    const M = ${M};
    const CO = ${g.co};
    const CI = ${g.ci};
    const KW = ${g.kw};
    const H = ${g.h};
    const W = ${g.w};
    const OH = ${g.oh};
    const OW = ${g.ow};
    const CHUNK = ${chunk};
    var<workgroup> Ps : array<array<f32, ${TILE}>, ${TM}>;
    var<workgroup> Ds : array<array<f32, ${TILE}>, ${TM}>;

    fn main() {
      let wg = ${FLAT_WORKGROUP};
      let tile = wg % ${kTiles * oTiles};
      let slice = wg / ${kTiles * oTiles};
      // No early return and a constant trip count: workgroupBarrier needs uniform control flow.
      let live = slice < ${slices};
      let k0 = (tile / ${oTiles}) * ${TILE};
      let o0 = (tile % ${oTiles}) * ${TILE};
      let tx = i32(localIndex % 16u);
      let ty = i32(localIndex / 16u);
      let mStart = slice * CHUNK;
      let mEnd = min(mStart + CHUNK, M);
      var acc : array<array<f32, 4>, 4>;
      for (var i = 0; i < 4; i++) { for (var j = 0; j < 4; j++) { acc[i][j] = 0.0; } }
      // Loading: 256 invocations fill 16×64 values of each tile, 4 each: row r = ty, columns tx + 16·q.
      for (var t = 0; t < ${chunk / TM}; t++) {
        let m = mStart + t * ${TM} + ty;
        let mOk = live && m < mEnd;
        let n = m / (OH * OW);
        let rem = m % (OH * OW);
        let oy = rem / OW;
        let ox = rem % OW;
        for (var q = 0; q < 4; q++) {
          let kk = tx + 16 * q;
          let k = k0 + kk;
          var pv = 0.0;
          if (mOk && k < K) {
            let c = k % CI;
            let kyx = k / CI;
            let iy = oy * ${g.sh} - ${g.padTop} + (kyx / KW) * ${g.dh};
            let ix = ox * ${g.sw} - ${g.padLeft} + (kyx % KW) * ${g.dw};
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
              pv = X[((n * H + iy) * W + ix) * CI + c];
            }
          }
          Ps[ty][kk] = pv;
          let o = o0 + kk;
          var dv = 0.0;
          if (mOk && o < CO) { dv = DY[m * CO + o]; }
          Ds[ty][kk] = dv;
        }
        workgroupBarrier();
        for (var r = 0; r < ${TM}; r++) {
          var a : array<f32, 4>;
          var b : array<f32, 4>;
          for (var i = 0; i < 4; i++) { a[i] = Ps[r][ty + 16 * i]; b[i] = Ds[r][tx + 16 * i]; }
          for (var i = 0; i < 4; i++) { for (var j = 0; j < 4; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); } }
        }
        workgroupBarrier();
      }
      if (!live || uniforms.size <= 0) { return; }
      for (var i = 0; i < 4; i++) {
        let k = k0 + ty + 16 * i;
        if (k >= K) { continue; }
        for (var j = 0; j < 4; j++) {
          let o = o0 + tx + 16 * j;
          if (o < CO) { result[(slice * K + k) * CO + o] = acc[i][j]; }
        }
      }
    }`;
  return { key, inputs: ['X', 'DY'], outputShape: [slices, K, g.co], code, workgroupSize: [256, 1, 1] as [number, number, number], dispatch: spread(kTiles * oTiles * slices), perElement: false };
}

function sumSlicesProgram(slices: number, size: number, outShape: number[]) {
  const code = `
    fn main(index : i32) {
      if (index >= uniforms.size) { return; }
      var s = 0.0;
      for (var i = 0; i < ${slices}; i++) { s += P[i * ${size} + index]; }
      result[index] = s;
    }`;
  return { key: `convfilter_sum_${slices}_${size}`, inputs: ['P'], outputShape: outShape, code };
}

/** dW for the geometry, from x [n, h, w, ci] and dy [n, oh, ow, co]: 1 dispatch (one slice) or 2. */
export function conv2dBackpropFilterWgsl(x: tf.TensorInfo, dy: tf.TensorInfo, g: FilterGeometry): tf.TensorInfo {
  const { slices, chunk } = splitK(g);
  const outShape = [g.kh, g.kw, g.ci, g.co];
  const partial = runWgsl(partialProgram(g, slices, chunk), [x, dy]);
  if (slices === 1) return { ...partial, shape: outShape };
  const out = runWgsl(sumSlicesProgram(slices, g.kh * g.kw * g.ci * g.co, outShape), [partial]);
  (webgpuBackend() as unknown as { disposeData(id: object): void }).disposeData(partial.dataId);
  return out;
}

/** Replaces tfjs-webgpu's Conv2DBackpropFilter for float32 NHWC inputs. */
export function registerWebgpuConv2DBackpropFilter(): void {
  replaceKernel('webgpu', 'Conv2DBackpropFilter', ({ inputs, attrs }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as unknown as { strides: number | [number, number]; pad: 'valid' | 'same' | number; dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: [number, number, number, number] };
    if (a.dataFormat !== 'NHWC' || x.dtype !== 'float32' || dy.dtype !== 'float32') return null;
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
    return conv2dBackpropFilterWgsl(x, dy, {
      n: info.batchSize,
      h: info.inHeight,
      w: info.inWidth,
      ci: info.inChannels,
      oh: info.outHeight,
      ow: info.outWidth,
      co: info.outChannels,
      kh: info.filterHeight,
      kw: info.filterWidth,
      sh: info.strideHeight,
      sw: info.strideWidth,
      dh: info.dilationHeight,
      dw: info.dilationWidth,
      padTop: info.padInfo.top,
      padLeft: info.padInfo.left,
    });
  });
}
