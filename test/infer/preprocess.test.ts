// RadioModel.preprocess and the resolution rule: RADIO's get_nearest_supported_resolution (Python rounding, at
// least one step), aspect kept, the default capped at the position table, files and Buffers alike, bad input named.
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';

import { RadioModel } from '../../ts';
import { loadImage } from '../../ts/data/decode';
import { nearestSupportedResolution, targetResolution } from '../../ts/model/preprocess';
import { gradient, planar, tempDir, writeImage } from '../data/helpers';
import { TEACHER_DIR } from '../train/support';

const tmp = tempDir('am-radio-preprocess-');
afterAll(() => tmp.cleanup());

describe('nearestSupportedResolution', () => {
  test('rounds each side to the nearest multiple of the step, halves to even as Python does, at least one step', () => {
    expect(nearestSupportedResolution(100, 150, 16)).toEqual([96, 144]);
    expect(nearestSupportedResolution(103.9, 152.1, 16)).toEqual([96, 160]);
    // 24 / 16 = 1.5 → 2, 40 / 16 = 2.5 → 2, 56 / 16 = 3.5 → 4.
    expect(nearestSupportedResolution(24, 40, 16)).toEqual([32, 32]);
    expect(nearestSupportedResolution(56, 56, 16)).toEqual([64, 64]);
    expect(nearestSupportedResolution(3, 7, 16)).toEqual([16, 16]);
    expect(nearestSupportedResolution(80, 120, 32)).toEqual([64, 128]);
    expect(() => nearestSupportedResolution(0, 10, 16)).toThrow('height must be a positive number');
    expect(() => nearestSupportedResolution(10, 10, 0)).toThrow('step must be a positive integer');
  });

  test('targetResolution: own size capped at maxSide, shorter side N, or exactly [H, W]', () => {
    const rule = { step: 16, maxSide: 256 };
    expect(targetResolution(90, 120, rule)).toEqual([96, 128]);
    // Larger than the table: scaled down to a 256 longer side, aspect kept (300 × 600 → 128 × 256).
    expect(targetResolution(300, 600, rule)).toEqual([128, 256]);
    expect(targetResolution(600, 300, rule)).toEqual([256, 128]);
    // Never scaled up by default.
    expect(targetResolution(20, 30, rule)).toEqual([16, 32]);
    // Shorter side N, which may go past the cap.
    expect(targetResolution(90, 120, rule, 64)).toEqual([64, 80]);
    expect(targetResolution(300, 600, rule, 160)).toEqual([160, 320]);
    expect(targetResolution(90, 120, rule, [64, 32])).toEqual([64, 32]);
    expect(() => targetResolution(90, 120, rule, [100, 100])).toThrow('size 100x100 is not supported by this model: H and W must be multiples of 16; nearest supported: 96x96');
    expect(() => targetResolution(90, 120, rule, 0)).toThrow('size must be a positive integer');
    expect(() => targetResolution(90, 120, rule, [64] as never)).toThrow('[H, W] of positive integers');
  });
});

describe('RadioModel.preprocess', () => {
  let model: RadioModel;
  beforeAll(async () => {
    model = await RadioModel.load(TEACHER_DIR);
  });
  afterAll(() => model.dispose());

  test('a PNG at a supported size comes through unresampled: [1, 3, H, W], exactly its bytes / 255', async () => {
    const raw = gradient(48, 32, 3);
    const file = join(tmp.dir, 'exact.png');
    await writeImage(file, raw, 48, 32, 'png');
    const t = await model.preprocess(file);
    expect([t.shape, t.dtype, t.device]).toEqual([[1, 3, 32, 48], 'f32', 'cpu']);
    expect(await t.toArray()).toEqual(planar(raw, 48, 32));
    t.dispose();
  });

  test.each(['png', 'jpg', 'webp'] as const)('a %s file and the same bytes in a Buffer give the same [0, 1] tensor, resized as loadImage would', async (format) => {
    const raw = gradient(120, 90, 7);
    const file = join(tmp.dir, `photo.${format}`);
    await writeImage(file, raw, 120, 90, format);
    const fromFile = await model.preprocess(file);
    expect(fromFile.shape).toEqual([1, 3, 96, 128]);
    const values = await fromFile.toArray();
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    expect(hi - lo).toBeGreaterThan(0.5);
    expect(values).toEqual((await loadImage(file, { height: 96, width: 128 })).images);
    const fromBuffer = await model.preprocess(readFileSync(file));
    expect(await fromBuffer.toArray()).toEqual(values);
    const sized = await model.preprocess(file, { size: 64 });
    expect(sized.shape).toEqual([1, 3, 64, 80]);
    for (const t of [fromFile, fromBuffer, sized]) t.dispose();
  });

  test('the step includes the ViTDet window, and the default is capped at the position table (256 here)', async () => {
    const file = join(tmp.dir, 'wide.png');
    await writeImage(file, gradient(600, 300, 1), 600, 300, 'png');
    const t = await model.preprocess(file);
    expect(t.shape).toEqual([1, 3, 128, 256]);
    t.dispose();
    const windowed = await RadioModel.load(TEACHER_DIR, { vitdet: { windowSize: 2, numGlobal: 2 } });
    try {
      expect(windowed.resolutionStep).toBe(32);
      const small = join(tmp.dir, 'small.png');
      await writeImage(small, gradient(120, 80, 2), 120, 80, 'png');
      const w = await windowed.preprocess(small);
      expect(w.shape).toEqual([1, 3, 64, 128]);
      // ...and what preprocess gives, forward takes.
      const out = windowed.forward(w);
      expect(out.backbone.features.shape).toEqual([1, 4 * 8, 64]);
      for (const h of Object.values(out)) for (const x of [h.summary, h.features]) x.dispose();
      w.dispose();
      await expect(windowed.preprocess(small, { size: [48, 64] })).rejects.toThrow('RadioModel.preprocess: size 48x64 is not supported by this model: H and W must be multiples of 32; nearest supported: 64x64');
    } finally {
      windowed.dispose();
    }
  });

  test('bad input is an Error naming it', async () => {
    const missing = join(tmp.dir, 'nope.jpg');
    await expect(model.preprocess(missing)).rejects.toThrow(`RadioModel.preprocess: no such image file: ${missing}`);
    const corrupt = join(tmp.dir, 'corrupt.png');
    writeFileSync(corrupt, Buffer.from('this is not a PNG file at all'));
    await expect(model.preprocess(corrupt)).rejects.toThrow(`RadioModel.preprocess: cannot decode ${corrupt}`);
    // A PNG cut short: the header reads, the pixels do not.
    const whole = readFileSync(join(tmp.dir, 'exact.png'));
    const truncated = join(tmp.dir, 'truncated.png');
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    await expect(model.preprocess(truncated)).rejects.toThrow(`cannot decode ${truncated}`);
    await expect(model.preprocess(Buffer.from('garbage bytes'))).rejects.toThrow('cannot decode the 13-byte image buffer');
    await expect(model.preprocess(Buffer.alloc(0))).rejects.toThrow('the image buffer is empty');
    await expect(model.preprocess(42 as never)).rejects.toThrow('must be a file path or a Buffer');
    await expect(model.preprocess(join(tmp.dir, 'exact.png'), { size: 1.5 })).rejects.toThrow('size must be a positive integer');
  });
});
