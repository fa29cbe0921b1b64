// The picture `am-radio infer` writes per image: the model's input beside the PCA colouring of its dense features,
// upsampled to the same size, as RADIO's examples' side-by-side images (visualize_features.py, the "sbs" folder).
import { promises as fs } from 'fs';

import { loadSharp } from '../data/decode';

/**
 * Bilinear resize of an h × w × ch interleaved image to H × W, with PyTorch's align_corners=false sampling (what
 * RADIO's example calls through F.interpolate): output pixel centre y ↦ (y + 0.5)·h/H − 0.5, clamped at the edges.
 */
export function resizeBilinear(src: ArrayLike<number>, h: number, w: number, ch: number, H: number, W: number): Float64Array {
  if (src.length !== h * w * ch) throw new Error(`resizeBilinear: expected ${h} x ${w} x ${ch} = ${h * w * ch} values, got ${src.length}`);
  const out = new Float64Array(H * W * ch);
  const axis = (o: number, n: number, N: number): [number, number, number] => {
    const s = Math.max(0, (o + 0.5) * (n / N) - 0.5);
    const i0 = Math.min(Math.floor(s), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    return [i0, i1, s - i0];
  };
  for (let y = 0; y < H; y++) {
    const [y0, y1, fy] = axis(y, h, H);
    for (let x = 0; x < W; x++) {
      const [x0, x1, fx] = axis(x, w, W);
      for (let c = 0; c < ch; c++) {
        const a = src[(y0 * w + x0) * ch + c];
        const b = src[(y0 * w + x1) * ch + c];
        const d = src[(y1 * w + x0) * ch + c];
        const e = src[(y1 * w + x1) * ch + c];
        out[(y * W + x) * ch + c] = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * d + fx * e);
      }
    }
  }
  return out;
}

const byte = (v: number) => Math.min(255, Math.max(0, Math.round(v * 255)));

/**
 * The side-by-side RGB image, 2W wide and H high: `pixels` ([3, H, W] planar in [0, 1], the model's input) on the
 * left, `colors` ([gh·gw, 3] in [0, 1], one per token) upsampled bilinearly to H × W on the right. Interleaved bytes.
 */
export function sideBySide(pixels: ArrayLike<number>, height: number, width: number, colors: ArrayLike<number>, gh: number, gw: number): Uint8Array {
  if (pixels.length !== 3 * height * width) throw new Error(`sideBySide: expected 3 x ${height} x ${width} pixel values, got ${pixels.length}`);
  const up = resizeBilinear(colors, gh, gw, 3, height, width);
  const n = height * width;
  const out = new Uint8Array(n * 6);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const left = (y * 2 * width + x) * 3;
      const right = left + width * 3;
      for (let c = 0; c < 3; c++) {
        out[left + c] = byte(pixels[c * n + y * width + x]);
        out[right + c] = byte(up[(y * width + x) * 3 + c]);
      }
    }
  return out;
}

/** Encodes an interleaved RGB image as PNG and writes it to `file` (through a temporary file, renamed over it). */
export async function writeRgbPng(file: string, rgb: Uint8Array, height: number, width: number): Promise<void> {
  if (rgb.length !== height * width * 3) throw new Error(`${file}: expected ${height} x ${width} x 3 bytes, got ${rgb.length}`);
  const sharp = loadSharp();
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 9 }).toBuffer();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await fs.writeFile(tmp, png);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.unlink(tmp).catch(() => {});
    throw new Error(`${file}: cannot write the PNG (${(e as Error).message})`, { cause: e });
  }
}
