// Test images drawn with sharp itself: raw pixel buffers (gradients, asymmetric patterns) written as PNG/JPEG/WebP.
import { mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import sharp from 'sharp';

export function tempDir(prefix = 'am-radio-data-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** width×height×3 interleaved bytes from a per-pixel function. */
export function rawImage(width: number, height: number, px: (x: number, y: number) => [number, number, number]): Buffer {
  const b = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, bl] = px(x, y);
      const o = (y * width + x) * 3;
      b[o] = r;
      b[o + 1] = g;
      b[o + 2] = bl;
    }
  }
  return b;
}

/** A gradient whose every pixel differs from its mirror image, seeded so different files differ. */
export function gradient(width: number, height: number, seed = 0): Buffer {
  return rawImage(width, height, (x, y) => [
    (x * 7 + seed * 31) % 256,
    (y * 5 + seed * 17) % 256,
    (x * y + seed * 53) % 256,
  ]);
}

export type Format = 'png' | 'jpg' | 'webp';

export async function writeImage(path: string, raw: Buffer, width: number, height: number, format: Format): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  if (format === 'png') await img.png().toFile(path);
  else if (format === 'jpg') await img.jpeg({ quality: 90 }).toFile(path);
  else await img.webp({ quality: 90 }).toFile(path);
}

/** Writes `count` images of varied sizes and formats under dir (some in subfolders); returns their ids in sorted order. */
export async function writeDataset(dir: string, count: number): Promise<string[]> {
  const formats: Format[] = ['png', 'jpg', 'webp'];
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const f = formats[i % 3];
    const id = `${i % 2 === 0 ? 'a' : 'b/c'}/img${String(i).padStart(3, '0')}.${f}`;
    const w = 40 + ((i * 13) % 50);
    const h = 30 + ((i * 29) % 60);
    await writeImage(join(dir, id), gradient(w, h, i), w, h, f);
    ids.push(id);
  }
  return ids.sort();
}

/** Planar [3, h, w] floats from interleaved bytes, as the pipeline should produce them. */
export function planar(raw: Buffer | Uint8Array, width: number, height: number): Float32Array {
  const n = width * height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = raw[i * 3 + c] / 255;
  return out;
}

/** Mirrors each row of a planar [c, h, w] image. */
export function mirror(img: Float32Array, channels: number, height: number, width: number): Float32Array {
  const out = new Float32Array(img.length);
  for (let r = 0; r < channels * height; r++) {
    for (let x = 0; x < width; x++) out[r * width + x] = img[r * width + width - 1 - x];
  }
  return out;
}

export function equalBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}
