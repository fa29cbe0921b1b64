import { writeFileSync } from 'fs';
import { join } from 'path';
import sharp from 'sharp';
import { cropBox, CROP_UNIFORMS, loadImage } from '../../ts/data/decode';
import { Rng } from '../../ts/data/rng';
import { gradient, planar, rawImage, tempDir, writeImage } from './helpers';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('loadImage', () => {
  test('a PNG decodes to exactly its bytes / 255, planar RGB', async () => {
    const raw = gradient(37, 23, 5);
    const file = join(tmp.dir, 'grad.png');
    await writeImage(file, raw, 37, 23, 'png');
    const expected = planar(raw, 37, 23);
    const native = await loadImage(file);
    expect([native.height, native.width]).toEqual([23, 37]);
    expect(native.images).toEqual(expected);
    // Asking for the image's own size must not resample it.
    const same = await loadImage(file, { height: 23, width: 37, resize: 'cover' });
    expect(same.images).toEqual(expected);
  });

  test('stretch, cover and contain fit the image as named', async () => {
    // 60×40: left 20 columns red, middle 20 green, right 20 blue.
    const raw = rawImage(60, 40, (x) => (x < 20 ? [255, 0, 0] : x < 40 ? [0, 255, 0] : [0, 0, 255]));
    const file = join(tmp.dir, 'bands.png');
    await writeImage(file, raw, 60, 40, 'png');
    const at = (img: Float32Array, h: number, w: number, c: number, y: number, x: number) => img[(c * h + y) * w + x];

    // cover at 40×40 keeps the centre columns 10..49 unscaled: 10 red, 20 green, 10 blue.
    const cover = await loadImage(file, { height: 40, width: 40, resize: 'cover' });
    expect([at(cover.images, 40, 40, 0, 20, 0), at(cover.images, 40, 40, 1, 20, 20), at(cover.images, 40, 40, 2, 20, 39)]).toEqual([1, 1, 1]);
    expect(at(cover.images, 40, 40, 0, 20, 9)).toBe(1);
    expect(at(cover.images, 40, 40, 1, 20, 10)).toBe(1);

    // contain at 60×60 pads 10 black rows above and below.
    const contain = await loadImage(file, { height: 60, width: 60, resize: 'contain' });
    for (let c = 0; c < 3; c++) {
      expect(at(contain.images, 60, 60, c, 0, 30)).toBe(0);
      expect(at(contain.images, 60, 60, c, 59, 30)).toBe(0);
    }
    expect(at(contain.images, 60, 60, 1, 30, 30)).toBe(1);

    // stretch to 30×30 halves the width (and shrinks the height): all three bands survive, 10 columns each.
    const stretch = await loadImage(file, { height: 30, width: 30 });
    expect([stretch.height, stretch.width]).toEqual([30, 30]);
    expect(at(stretch.images, 30, 30, 0, 15, 3)).toBeCloseTo(1, 2);
    expect(at(stretch.images, 30, 30, 1, 15, 15)).toBeCloseTo(1, 2);
    expect(at(stretch.images, 30, 30, 2, 15, 27)).toBeCloseTo(1, 2);
    for (const v of stretch.images) expect(v >= 0 && v <= 1).toBe(true);
  });

  test('EXIF orientation is applied', async () => {
    const raw = gradient(6, 4, 1);
    const file = join(tmp.dir, 'oriented.png');
    await sharp(raw, { raw: { width: 6, height: 4, channels: 3 } }).withMetadata({ orientation: 6 }).png().toFile(file);
    const upright = await sharp(raw, { raw: { width: 6, height: 4, channels: 3 } }).rotate(90).raw().toBuffer();
    const img = await loadImage(file);
    expect([img.height, img.width]).toEqual([6, 4]);
    expect(img.images).toEqual(planar(upright, 4, 6));
  });

  test('greyscale and RGBA inputs come out as 3 channels', async () => {
    const grey = join(tmp.dir, 'grey.png');
    await sharp(Buffer.from([0, 128, 255, 64]), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(grey);
    const g = await loadImage(grey);
    expect(g.images).toEqual(Float32Array.from([0, 128, 255, 64, 0, 128, 255, 64, 0, 128, 255, 64], (v) => v / 255));
    const rgba = join(tmp.dir, 'rgba.png');
    await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]), { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(rgba);
    const a = await loadImage(rgba);
    expect(a.images).toEqual(Float32Array.from([10, 40, 20, 50, 30, 60], (v) => v / 255));
  });

  test('errors name the file or the option', async () => {
    const missing = join(tmp.dir, 'nope.png');
    await expect(loadImage(missing)).rejects.toThrow(`no such image file: ${missing}`);
    const corrupt = join(tmp.dir, 'corrupt.jpg');
    writeFileSync(corrupt, Buffer.from('definitely not a jpeg'));
    await expect(loadImage(corrupt)).rejects.toThrow(`cannot decode ${corrupt}`);
    await expect(loadImage(corrupt, { height: 8, width: 8 })).rejects.toThrow(`cannot decode ${corrupt}`);
    const ok = join(tmp.dir, 'grad.png');
    await expect(loadImage(ok, { height: 8 })).rejects.toThrow('both height and width');
    await expect(loadImage(ok, { height: 0, width: 8 })).rejects.toThrow('height must be a positive integer');
    await expect(loadImage(ok, { height: 8, width: 8, resize: 'fill' as never })).rejects.toThrow("resize must be one of 'stretch'");
    await expect(loadImage(ok, { heigth: 8 } as never)).rejects.toThrow("unknown option 'heigth'");
  });
});

describe('cropBox (RandomResizedCrop geometry)', () => {
  const scale: [number, number] = [0.25, 1];
  const ratio: [number, number] = [3 / 4, 4 / 3];

  test('area fraction and aspect stay in range and cover it, over many draws', () => {
    const rng = new Rng(123);
    // Square, so that acceptance (which rejects crops taller or wider than the image) treats both aspects alike.
    const W = 512;
    const H = 512;
    const fracs: number[] = [];
    const aspects: number[] = [];
    let outside = 0;
    let fallbacks = 0;
    for (let n = 0; n < 5000; n++) {
      const u = Array.from({ length: CROP_UNIFORMS }, () => rng.uniform());
      const b = cropBox(W, H, u, scale, ratio);
      if (b.left < 0 || b.top < 0 || b.left + b.width > W || b.top + b.height > H) outside++;
      if (b.fallback) fallbacks++;
      else {
        fracs.push((b.width * b.height) / (W * H));
        aspects.push(b.width / b.height);
      }
    }
    expect(outside).toBe(0);
    // Rounding w and h to whole pixels moves area and aspect by at most a pixel's worth.
    const tol = 2 / 256;
    expect(Math.min(...fracs)).toBeGreaterThanOrEqual(scale[0] - tol);
    expect(Math.max(...fracs)).toBeLessThanOrEqual(scale[1]);
    expect(Math.min(...aspects)).toBeGreaterThanOrEqual(ratio[0] * (1 - tol));
    expect(Math.max(...aspects)).toBeLessThanOrEqual(ratio[1] * (1 + tol));
    const wide = aspects.filter((a) => a > 1).length;
    const tall = aspects.filter((a) => a < 1).length;
    // Most first attempts fit; a fallback needs 10 misses in a row.
    expect(fallbacks).toBeLessThan(5);
    expect(Math.min(...fracs)).toBeLessThan(0.27);
    expect(Math.max(...fracs)).toBeGreaterThan(0.95);
    // Log-uniform aspect over a range symmetric in log: as many wide crops as tall ones.
    expect(Math.abs(wide - tall) / aspects.length).toBeLessThan(0.05);
    // Offsets are uniform over the free room: crops touch every edge now and then.
    const boxes = Array.from({ length: 2000 }, () => cropBox(W, H, Array.from({ length: CROP_UNIFORMS }, () => rng.uniform()), scale, ratio));
    expect(boxes.some((b) => b.left === 0)).toBe(true);
    expect(boxes.some((b) => b.top + b.height === H)).toBe(true);
  });

  test('rounds halves to even, as torchvision (Python round) does', () => {
    // A 5×5 image at scale 0.25 and aspect 1 asks for sqrt(6.25) = 2.5 pixels a side: Python rounds to 2.
    const u = new Array(CROP_UNIFORMS).fill(0);
    const b = cropBox(5, 5, u, [0.25, 0.25], [1, 1]);
    expect([b.width, b.height, b.fallback]).toEqual([2, 2, false]);
  });

  test('falls back to the centre crop at the nearest allowed aspect when no attempt fits', () => {
    // A 1000×10 strip: every attempt wants more than 10 rows, so all 10 fail.
    const u = new Array(CROP_UNIFORMS).fill(0.5);
    const b = cropBox(1000, 10, u, scale, ratio);
    const w = Math.round(10 * ratio[1]);
    expect(b).toEqual({ left: Math.floor((1000 - w) / 2), top: 0, width: w, height: 10, fallback: true });
    const tall = cropBox(10, 1000, u, scale, ratio);
    expect(tall).toEqual({ left: 0, top: Math.floor((1000 - 13) / 2), width: 10, height: 13, fallback: true });
  });
});
