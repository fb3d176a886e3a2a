/**
 * Sample grids: n images [n·H·W·C] in a data range → one PNG with `cols` columns, upscaled by nearest
 * neighbour. Encoded with pngjs (pure JavaScript), so grids are drawn where the native sharp is not
 * installed too (the GPU machine's bundle).
 */
import { PNG } from 'pngjs';

export function imageGrid(x: Float32Array, n: number, shape: number[], range: [number, number], cols = 8, scale = 3, pad = 1): Buffer {
  const [H, W, C] = shape as [number, number, number];
  const rows = Math.ceil(n / cols);
  const cellH = H * scale + pad;
  const cellW = W * scale + pad;
  const outH = rows * cellH + pad;
  const outW = cols * cellW + pad;
  const ch = C === 1 ? 1 : 3;
  const png = new PNG({ width: outW, height: outH, colorType: 6 });
  png.data.fill(255);
  const [lo, hi] = range;
  for (let k = 0; k < n; k++) {
    const oy = pad + Math.floor(k / cols) * cellH;
    const ox = pad + (k % cols) * cellW;
    for (let y = 0; y < H * scale; y++) {
      for (let xx = 0; xx < W * scale; xx++) {
        const src = ((k * H + Math.floor(y / scale)) * W + Math.floor(xx / scale)) * C;
        const dst = ((oy + y) * outW + ox + xx) * 4;
        for (let c = 0; c < 3; c++) {
          const v = (x[src + (ch === 1 ? 0 : c)]! - lo) / (hi - lo);
          png.data[dst + c] = Math.max(0, Math.min(255, Math.round(v * 255)));
        }
      }
    }
  }
  return PNG.sync.write(png);
}
