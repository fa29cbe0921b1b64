// `am-radio infer <images...>` end to end in a child process on cpu with the embedded checkpoint: images made here
// with sharp (PNG, JPEG, WebP, a folder with a subfolder), the safetensors it writes against running the model
// directly, the PCA picture's size and left half, the options, and bad input failing with the culprit named.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';

import { RadioModel, SafetensorsFile, type RadioOutput } from '../../ts';
import { gradient, rawImage, tempDir, writeImage } from '../data/helpers';
import { relativeError } from '../support/reference';
import { REGISTER, TEACHER_DIR } from '../train/support';

const CLI = path.join(__dirname, '..', '..', 'ts', 'cli.ts');
const HEADS = ['backbone', 'clip', 'dino_v2', 'sam'];

const tmp = tempDir('am-radio-infer-cli-');
afterAll(() => tmp.cleanup());

function run(args: string[], cwd = tmp.dir) {
  return spawnSync(process.execPath, ['-r', REGISTER, CLI, 'infer', ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
}

/** A picture with structure for the features to see: a disc on diagonal stripes over a gradient. */
function scene(w: number, h: number): Buffer {
  return rawImage(w, h, (x, y) => {
    const disc = (x - w / 3) ** 2 + (y - h / 2) ** 2 < (h / 4) ** 2;
    return disc ? [230, 40, 40] : [(x * 255) / w, (y * 255) / h, (x + y) % 24 < 12 ? 200 : 40];
  });
}

let model: RadioModel;
beforeAll(async () => {
  model = await RadioModel.load(TEACHER_DIR);
  await writeImage(path.join(tmp.dir, 'imgs', 'a.png'), scene(120, 90), 120, 90, 'png');
  await writeImage(path.join(tmp.dir, 'imgs', 'sub', 'b.webp'), gradient(64, 64, 4), 64, 64, 'webp');
  fs.writeFileSync(path.join(tmp.dir, 'imgs', 'notes.txt'), 'not an image, not picked up');
  await writeImage(path.join(tmp.dir, 'c.jpg'), scene(80, 100), 80, 100, 'jpg');
});
afterAll(() => model.dispose());

test('a folder and a file: per image a safetensors with every head, as the model computes it, and a 2W x H PCA picture', async () => {
  const r = run(['imgs', 'c.jpg', '--out', 'out']);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  const lines = r.stdout.trim().split('\n');
  expect(lines.slice(0, 3).map((l) => l.replace(/\(\d+ ms\)$/, '(ms)'))).toEqual([
    `[1/3] ${path.join('imgs', 'a.png')} 90x120 -> 96x128: ${path.join('out', 'a.safetensors')}, ${path.join('out', 'a.pca.png')} (ms)`,
    `[2/3] ${path.join('imgs', 'sub', 'b.webp')} 64x64 -> 64x64: ${path.join('out', 'sub', 'b.safetensors')}, ${path.join('out', 'sub', 'b.pca.png')} (ms)`,
    `[3/3] c.jpg 100x80 -> 96x80: ${path.join('out', 'c.safetensors')}, ${path.join('out', 'c.pca.png')} (ms)`,
  ]);
  expect(lines).toHaveLength(4);
  expect(r.stdout).toMatch(/3 images in \d+\.\d s: features \(\.safetensors\) and PCA pictures \(\.pca\.png\) in out\n$/);

  const cases = [
    { source: path.join('imgs', 'a.png'), name: 'a', h: 96, w: 128 },
    { source: path.join('imgs', 'sub', 'b.webp'), name: 'sub/b', h: 64, w: 64 },
    { source: 'c.jpg', name: 'c', h: 96, w: 80 },
  ];
  for (const { source, name, h, w } of cases) {
    const images = await model.preprocess(path.join(tmp.dir, source));
    const expected: RadioOutput = model.forward(images);
    const file = await SafetensorsFile.open(path.join(tmp.dir, 'out', `${name}.safetensors`));
    try {
      expect(file.keys().sort()).toEqual(HEADS.flatMap((hd) => [`${hd}.summary`, `${hd}.features`]).sort());
      for (const head of HEADS)
        for (const part of ['summary', 'features'] as const) {
          const t = expected[head][part];
          const got = await file.readFloat(`${head}.${part}`);
          expect([head, part, got.shape, file.entry(`${head}.${part}`).dtype]).toEqual([head, part, t.shape, 'F32']);
          expect(relativeError(got.data, await t.toArray())).toBeLessThanOrEqual(1e-6);
        }
      expect(expected.backbone.features.shape).toEqual([1, (h / 16) * (w / 16), 64]);
      expect(file.metadata).toMatchObject({
        source,
        height: String(h),
        width: String(w),
        grid_height: String(h / 16),
        grid_width: String(w / 16),
        checkpoint: 'vit-b16-v2heads',
        dtype: 'f32',
      });
    } finally {
      await file.close();
      for (const o of Object.values(expected)) for (const t of [o.summary, o.features]) t.dispose();
    }
    // The picture: the model's input on the left, byte for byte, and a PCA colouring (not flat) on the right.
    const { data, info } = await sharp(path.join(tmp.dir, 'out', `${name}.pca.png`)).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([2 * w, h, 3]);
    const pixels = await images.toArray();
    images.dispose();
    let maxDiff = 0;
    const right = new Set<number>();
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(data[(y * 2 * w + x) * 3 + c] - Math.round(pixels[(c * h + y) * w + x] * 255)));
        right.add(data[(y * 2 * w + w + x) * 3]);
      }
    expect(maxDiff).toBe(0);
    expect(right.size).toBeGreaterThan(10);
  }
});

test('checkpoint given, --heads, --image-size N (the shorter side), --dtype bf16', async () => {
  const r = run([TEACHER_DIR, 'c.jpg', '--out', 'out2', '--heads', 'backbone,clip', '--image-size', '64', '--dtype', 'bf16', '--pca-head', 'clip']);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  expect(r.stdout).toContain('c.jpg 100x80 -> 80x64');
  const file = await SafetensorsFile.open(path.join(tmp.dir, 'out2', 'c.safetensors'));
  try {
    expect(file.keys().sort()).toEqual(['backbone.features', 'backbone.summary', 'clip.features', 'clip.summary']);
    expect([file.entry('backbone.features').dtype, file.entry('backbone.features').shape]).toEqual(['BF16', [1, 20, 64]]);
    expect(file.entry('clip.features').shape).toEqual([1, 20, 32]);
    expect(file.metadata).toMatchObject({ height: '80', width: '64', dtype: 'bf16' });
  } finally {
    await file.close();
  }
  const meta = await sharp(path.join(tmp.dir, 'out2', 'c.pca.png')).metadata();
  expect([meta.width, meta.height]).toEqual([128, 80]);
});

test('without images it still checks the checkpoint against its stored outputs', () => {
  const r = run([]);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  expect(r.stdout).toMatch(/^loaded .*vit-b16-v2heads: vit_base_patch16_224 .* on cpu \(f32\)/);
  expect(r.stdout).toMatch(/backbone +summary \[2, \d+\] +features \[2, \d+, 64\] +summary rel\. error \d\.\d\de-\d+/);
});

test('--help describes infer', () => {
  const r = spawnSync(process.execPath, ['-r', REGISTER, CLI, 'infer', '--help'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  for (const s of ['am-radio infer [checkpoint-dir] [image|folder...]', '--out DIR', '--image-size S', '--heads A,B', '--dtype T', '.pca.png'])
    expect(r.stdout).toContain(s);
});

describe('bad input fails with the culprit named and nothing written', () => {
  beforeAll(async () => {
    fs.mkdirSync(path.join(tmp.dir, 'empty', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(tmp.dir, 'empty', 'readme.md'), 'no images here');
    fs.mkdirSync(path.join(tmp.dir, 'mixed'));
    await writeImage(path.join(tmp.dir, 'mixed', 'a.png'), gradient(32, 32, 1), 32, 32, 'png');
    const good = fs.readFileSync(path.join(tmp.dir, 'c.jpg'));
    fs.writeFileSync(path.join(tmp.dir, 'mixed', 'b.jpg'), good.subarray(0, Math.floor(good.length / 3)));
    fs.writeFileSync(path.join(tmp.dir, 'broken.png'), Buffer.from('definitely not a PNG'));
    fs.mkdirSync(path.join(tmp.dir, 'ckpt-no-config'));
    fs.copyFileSync(path.join(TEACHER_DIR, 'model.safetensors'), path.join(tmp.dir, 'ckpt-no-config', 'model.safetensors'));
  });

  test.each([
    ['a missing path', ['missing.jpg'], 'no such image file or folder: missing.jpg'],
    ['a folder without images', ['empty'], 'no images (.jpg, .jpeg, .png, .webp) under empty'],
    ['a corrupt file', ['broken.png'], 'cannot decode broken.png'],
    ['an unsupported --image-size', ['c.jpg', '--image-size', '100x100'], '--image-size 100x100 is not supported by this model: H and W must be multiples of 16; nearest supported: 96x96'],
    ['a malformed --image-size', ['c.jpg', '--image-size', '0'], '--image-size must be N (the shorter side) or HxW'],
    ['an unknown head', ['c.jpg', '--heads', 'backbone,nope'], 'this checkpoint has no head "nope" (it has backbone, clip, dino_v2, sam)'],
    ['a checkpoint folder without config.json', [path.join('ckpt-no-config'), 'c.jpg'], `${path.join('ckpt-no-config', 'config.json')}: cannot read the RADIO config`],
    ['--batch with images', ['c.jpg', '--batch', '2'], '--batch applies only without images'],
    ['two images with one output name', ['c.jpg', 'imgs', path.join('mixed', 'a.png')], `${path.join('imgs', 'a.png')} and ${path.join('mixed', 'a.png')} would both write a.safetensors`],
  ])('%s', (_, args, message) => {
    const out = `bad-${Math.random().toString(36).slice(2)}`;
    const r = run([...args, '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(message);
    expect(fs.existsSync(path.join(tmp.dir, out))).toBe(false);
  });

  test('a truncated JPEG in a folder stops the run at that file, after the good one before it', () => {
    const r = run(['mixed', '--out', 'mixed-out']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`cannot decode ${path.join('mixed', 'b.jpg')}`);
    expect(r.stdout).toContain('[1/2]');
    expect(fs.readdirSync(path.join(tmp.dir, 'mixed-out')).sort()).toEqual(['a.pca.png', 'a.safetensors']);
  });
});

test('an E-RADIO checkpoint: infer on its reference images matches every head, and on a file writes features on its 1/16 grid', async () => {
  const dir = path.join(__dirname, '..', 'fixtures', 'radio', 'eradio-xxxtiny');
  const r = run([dir]);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  expect(r.stdout).toMatch(/loaded .*eradio-xxxtiny: eradio_xxxtiny \(E-RADIO\) dim=32 depths=1\/3\/4\/5 window=8 features 1\/16 x 256 adaptors=\[clip, dino_v2\]/);
  const errs = [...r.stdout.matchAll(/rel\. error ([0-9.e+-]+)/g)].map((m) => Number(m[1]));
  expect(errs).toHaveLength(6);
  expect(Math.max(...errs)).toBeLessThan(1e-4);
  const f = run([dir, 'c.jpg', '--out', 'eradio-out']);
  expect({ status: f.status, stderr: f.stderr }).toEqual({ status: 0, stderr: '' });
  const file = await SafetensorsFile.open(path.join(tmp.dir, 'eradio-out', 'c.safetensors'));
  try {
    const [h, w] = [Number(file.metadata.height), Number(file.metadata.width)];
    expect([h % 32, w % 32]).toEqual([0, 0]);
    expect(file.entry('backbone.features').shape).toEqual([1, (h / 16) * (w / 16), 256]);
    expect(file.entry('clip.summary').shape).toEqual([1, 24]);
  } finally {
    await file.close();
  }
});
