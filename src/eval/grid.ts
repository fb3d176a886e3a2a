/** Sample grids: n images [n·H·W·C] in a data range → one PNG with `cols` columns, upscaled by nearest neighbour. */
export async function imageGrid(x: Float32Array, n: number, shape: number[], range: [number, number], cols = 8, scale = 3, pad = 1): Promise<Buffer> {
  const [H, W, C] = shape as [number, number, number];
  const rows = Math.ceil(n / cols);
  const cellH = H * scale + pad;
  const cellW = W * scale + pad;
  const outH = rows * cellH + pad;
  const outW = cols * cellW + pad;
  const ch = C === 1 ? 1 : 3;
  const buf = Buffer.alloc(outH * outW * ch, 255);
  const [lo, hi] = range;
  for (let k = 0; k < n; k++) {
    const oy = pad + Math.floor(k / cols) * cellH;
    const ox = pad + (k % cols) * cellW;
    for (let y = 0; y < H * scale; y++) {
      for (let xx = 0; xx < W * scale; xx++) {
        const src = ((k * H + Math.floor(y / scale)) * W + Math.floor(xx / scale)) * C;
        const dst = ((oy + y) * outW + ox + xx) * ch;
        for (let c = 0; c < ch; c++) {
          const v = (x[src + c]! - lo) / (hi - lo);
          buf[dst + c] = Math.max(0, Math.min(255, Math.round(v * 255)));
        }
      }
    }
  }
  const { default: sharp } = await import('sharp');
  return sharp(buf, { raw: { width: outW, height: outH, channels: ch as 1 | 3 } }).png().toBuffer();
}
