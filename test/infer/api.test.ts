// inferImages and collectImages called from code: what they return, and their option errors (checked before any
// image is read or any file written).
import * as fs from 'fs';
import * as path from 'path';

import { collectImages, inferImages, RadioModel, SafetensorsFile } from '../../ts';
import { gradient, tempDir, writeImage } from '../data/helpers';
import { describeEachDevice, relativeError } from '../support/reference';
import { TEACHER_DIR } from '../train/support';

const tmp = tempDir('am-radio-infer-api-');
afterAll(() => tmp.cleanup());

let model: RadioModel;
beforeAll(async () => {
  model = await RadioModel.load(TEACHER_DIR);
  await writeImage(path.join(tmp.dir, 'in', 'x.png'), gradient(50, 40, 1), 50, 40, 'png');
  // A named file is read by content, whatever its extension.
  await writeImage(path.join(tmp.dir, 'in', 'y.jpg'), gradient(40, 40, 2), 40, 40, 'jpg');
  fs.renameSync(path.join(tmp.dir, 'in', 'y.jpg'), path.join(tmp.dir, 'in', 'y.image'));
});
afterAll(() => model.dispose());

test('collectImages keeps the order given, folder entries sorted, names without image extensions', () => {
  const file = path.join(tmp.dir, 'in', 'y.image');
  expect(collectImages([file, path.join(tmp.dir, 'in')])).toEqual([
    { source: file, name: 'y.image' },
    { source: path.join(tmp.dir, 'in', 'x.png'), name: 'x' },
  ]);
  expect(() => collectImages([])).toThrow('give at least one image file or folder');
});

test('inferImages returns what it wrote, one progress line per image', async () => {
  const lines: string[] = [];
  const out = path.join(tmp.dir, 'out');
  const r = await inferImages({ model, images: collectImages([path.join(tmp.dir, 'in')]), outDir: out, size: [32, 48], log: (l) => lines.push(l) });
  expect(r).toEqual([
    expect.objectContaining({ height: 32, width: 48, sourceHeight: 40, sourceWidth: 50, features: path.join(out, 'x.safetensors'), picture: path.join(out, 'x.pca.png') }),
  ]);
  expect(fs.existsSync(r[0].features) && fs.existsSync(r[0].picture)).toBe(true);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^\[1\/1\] .*x\.png 40x50 -> 32x48: /);
});

test('bad options are Errors before anything is read or written', async () => {
  const images = collectImages([path.join(tmp.dir, 'in', 'y.image')]);
  const outDir = path.join(tmp.dir, 'never');
  await expect(inferImages({ model, images, outDir, pcaHead: 'dino' })).rejects.toThrow('pcaHead: this checkpoint has no head "dino"');
  await expect(inferImages({ model, images, outDir, heads: [] })).rejects.toThrow('heads is empty');
  await expect(inferImages({ model, images, outDir, size: [40, 40] })).rejects.toThrow('size 40x40 is not supported by this model');
  model.train();
  try {
    await expect(inferImages({ model, images, outDir })).rejects.toThrow('the model is in training mode');
  } finally {
    model.eval();
  }
  expect(fs.existsSync(outDir)).toBe(false);
});

// The design's whole-model tolerance in f32 (relative error 1e-4 against cpu).
describeEachDevice('inferImages on %s', (device) => {
  test('writes what the cpu model computes', async () => {
    const onDevice = await RadioModel.load(TEACHER_DIR, { device });
    const outDir = path.join(tmp.dir, `out-${device}`);
    try {
      const [r] = await inferImages({ model: onDevice, images: collectImages([path.join(tmp.dir, 'in', 'x.png')]), outDir });
      expect([r.height, r.width]).toEqual([32, 48]);
      const expected = model.forward(await model.preprocess(path.join(tmp.dir, 'in', 'x.png')));
      const file = await SafetensorsFile.open(r.features);
      try {
        for (const [head, o] of Object.entries(expected))
          for (const part of ['summary', 'features'] as const) {
            const err = relativeError((await file.readFloat(`${head}.${part}`)).data, await o[part].toArray());
            expect([head, part, err <= 1e-4]).toEqual([head, part, true]);
          }
      } finally {
        await file.close();
        for (const o of Object.values(expected)) for (const t of [o.summary, o.features]) t.dispose();
      }
    } finally {
      onDevice.dispose();
    }
  });
}, (d) => d !== 'cpu');
