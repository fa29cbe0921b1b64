// SigLIP2 NaFlex (Siglip2VisionModel) against what transformers' processor and model compute
// (test/fixtures/teachers/siglip2-naflex, made by scripts/fixtures/make_siglip2_cases.py): per image the processor's
// size for max_num_patches, its bilinear antialiased resize, the position table resized to the image's own grid, and
// a batch of two grids that HF pads (masked keys, masked pooling head); f32 and bf16. Then the Teacher, the two
// config layouts (Siglip2VisionModel, Siglip2Model) and the loader's errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { HfTeacher, HfVisionModel, loadHfVisionModel, naflexSize, readHfVisionConfig, Teacher, tensor, Tensor } from '../../ts';
import type { Device, DType } from '../../ts';
import { expectWithin, readIo } from '../support/radio-fixtures';
import { describeEachDevice, poisonOutputs, relativeError } from '../support/reference';

poisonOutputs();

const DIR = path.join(__dirname, '..', 'fixtures', 'teachers', 'siglip2-naflex');
const CLIP = path.join(__dirname, '..', 'fixtures', 'teachers', 'clip-vit');
const TOLERANCE = { f32: 1e-4, bf16: 2e-2 } as const;
const LABELS = ['square', '3x5', 'batch'];

type Io = Map<string, { data: Float32Array; shape: number[] }>;

async function io(label: string): Promise<Io> {
  return readIo(path.join(DIR, `io-${label}.safetensors`));
}

/** The case's images (images.0, images.1, ...) on device, and its max_num_patches and per-image grids. */
function inputs(x: Io, device: Device): { images: Tensor[]; maxNumPatches: number; grids: Array<[number, number]> } {
  const n = [...x.keys()].filter((k) => k.startsWith('images.')).length;
  const images = Array.from({ length: n }, (_, i) => x.get(`images.${i}`)!).map((t) => tensor(t.data, t.shape, { device }));
  const shapes = x.get('spatial_shapes')!.data;
  const grids = Array.from({ length: n }, (_, i) => [shapes[2 * i], shapes[2 * i + 1]] as [number, number]);
  return { images, maxNumPatches: x.get('max_num_patches')!.data[0], grids };
}

test('the processor size search gives the sizes HF gives', () => {
  // Sides are multiples of the patch, at least one patch, the aspect ratio kept, the patch count within the budget.
  expect(naflexSize(52, 52, 16, 9)).toEqual([48, 48]);
  expect(naflexSize(36, 60, 16, 15)).toEqual([48, 80]);
  expect(naflexSize(24, 150, 16, 24)).toEqual([32, 192]);
  expect(naflexSize(70, 30, 16, 24)).toEqual([112, 48]);
  expect(naflexSize(24, 150, 16, 20)).toEqual([32, 160]);
  expect(naflexSize(8, 8, 16, 4)).toEqual([32, 32]);
  expect(naflexSize(30, 40, 16, 1)).toEqual([16, 16]);
  // google/siglip2-*-naflex's default budget on a 4:3 photo.
  expect(naflexSize(480, 640, 16, 256)).toEqual([224, 288]);
});

describeEachDevice('SigLIP2 NaFlex against transformers, on %s', (device: Device) => {
  test.each(['f32', 'bf16'] as const)('%s: summary and features for every case, each image on its own grid', async (dtype: DType) => {
    const model = await loadHfVisionModel(DIR, { device, dtype: dtype as 'f32' | 'bf16' });
    try {
      for (const label of LABELS) {
        const x = await io(label);
        const { images, maxNumPatches, grids } = inputs(x, device);
        const out = model.forwardEach(images, { maxNumPatches });
        try {
          expect(out.grids).toEqual(grids);
          const tol = TOLERANCE[dtype as 'f32' | 'bf16'];
          expect(out.summary!.shape).toEqual(x.get('summary')!.shape);
          expectWithin(`${label} ${dtype} summary`, relativeError(await out.summary!.toArray(), x.get('summary')!.data), tol);
          for (const [i, f] of out.features.entries()) {
            expect(f.shape).toEqual(x.get(`features.${i}`)!.shape);
            expectWithin(`${label} ${dtype} features.${i}`, relativeError(await f.toArray(), x.get(`features.${i}`)!.data), tol);
          }
        } finally {
          out.summary?.dispose();
          for (const f of out.features) f.dispose();
          for (const t of images) t.dispose();
        }
      }
    } finally {
      model.dispose();
    }
  });

  test('as a Teacher: the student resolution by default, resized to fit maxNumPatches; a batch shares one grid', async () => {
    const x = await io('3x5');
    const img = x.get('images.0')!;
    const t = await HfTeacher.load(DIR, { device, maxNumPatches: 15 });
    try {
      expect(t.name).toBe('siglip2');
      expect(t.inputSize).toBeNull();
      expect(t.heads).toEqual({ siglip2: { summaryDim: 64, featureDim: 64 } });
      // The same image twice as one [2, 3, H, W] batch: both rows are HF's for that image.
      const two = new Float32Array(2 * img.data.length);
      two.set(img.data);
      two.set(img.data, img.data.length);
      const targets = await t.forward(tensor(two, [2, ...img.shape.slice(1)], { device }), { ids: ['a', 'b'] });
      expect(targets.siglip2.grid).toEqual([3, 5]);
      const summary = await targets.siglip2.summary!.toArray();
      const features = await targets.siglip2.features.toArray();
      targets.siglip2.summary!.dispose();
      targets.siglip2.features.dispose();
      for (const b of [0, 1]) {
        const n = x.get('summary')!.data.length;
        expectWithin(`teacher summary ${b}`, relativeError(summary.subarray(b * n, (b + 1) * n), x.get('summary')!.data), 1e-4);
        const m = x.get('features.0')!.data.length;
        expectWithin(`teacher features ${b}`, relativeError(features.subarray(b * m, (b + 1) * m), x.get('features.0')!.data), 1e-4);
      }
    } finally {
      await t.close();
    }
    // Without the option, the preprocessor's max_num_patches (9): the square case's budget.
    const sq = await io('square');
    const s = await HfTeacher.load(DIR, { device });
    try {
      const img0 = sq.get('images.0')!;
      const targets = await s.forward(tensor(img0.data, img0.shape, { device }), { ids: ['a'] });
      expect(targets.siglip2.grid).toEqual([3, 3]);
      expectWithin('teacher default budget', relativeError(await targets.siglip2.features.toArray(), sq.get('features.0')!.data), 1e-4);
      targets.siglip2.features.dispose();
      targets.siglip2.summary!.dispose();
    } finally {
      await s.close();
    }
  });
});

describe('SigLIP2 NaFlex loading', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-siglip2-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** A copy of the case with config.json (and preprocessor_config.json: null drops it) replaced. */
  function variant(label: string, config: (c: Record<string, unknown>) => Record<string, unknown>, pre?: Record<string, unknown> | null): string {
    const dir = path.join(tmp, label);
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(DIR, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config(read('config.json'))));
    if (pre !== null) fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ ...read('preprocessor_config.json'), ...pre }));
    return dir;
  }

  test("Siglip2Model's config (vision_config) and Siglip2VisionModel's give the same teacher", async () => {
    const full = variant('full', (vision) => ({
      architectures: ['Siglip2Model'], model_type: 'siglip2',
      text_config: { model_type: 'siglip2_text_model', hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 10 },
      vision_config: { ...vision, model_type: 'siglip2_vision_model' },
    }));
    const config = readHfVisionConfig(full);
    expect(config).toMatchObject({ arch: 'siglip2', modelType: 'siglip2', hidden: 64, intermediate: 128, patch: 16, image: 128, maxNumPatches: 9, poolingHead: true, prefix: 'vision_model.' });
    const t = await Teacher.fromPretrained(full);
    expect(t).toBeInstanceOf(HfTeacher);
    const x = await io('square');
    const img = x.get('images.0')!;
    const targets = await t.forward(tensor(img.data, img.shape), { ids: ['a'] });
    expectWithin('Siglip2Model summary', relativeError(await targets.siglip2.summary!.toArray(), x.get('summary')!.data), 1e-4);
    targets.siglip2.summary!.dispose();
    targets.siglip2.features.dispose();
    await t.close();
    // No preprocessor file: the processor's defaults (256 patches, mean and std 0.5).
    const bare = readHfVisionConfig(variant('bare', (c) => c, null));
    expect(bare).toMatchObject({ maxNumPatches: 256, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  });

  test('an image smaller than one patch is resized up to whole patches, as the processor does', async () => {
    const m = await loadHfVisionModel(DIR);
    try {
      const out = m.forward(tensor(new Float32Array(3 * 5 * 7).fill(0.25), [1, 3, 5, 7]));
      expect(out.grid).toEqual(naflexSize(5, 7, 16, 9).map((s) => s / 16));
      expect(out.features.shape).toEqual([1, out.grid[0] * out.grid[1], 64]);
      out.features.dispose();
      out.summary!.dispose();
    } finally {
      m.dispose();
    }
  });

  test('errors name the option, file or key and the problem', async () => {
    await expect(HfTeacher.load(DIR, { maxNumPatches: 0 })).rejects.toThrow('maxNumPatches must be an integer of at least 1 (patches per image), got 0');
    await expect(HfTeacher.load(DIR, { maxNumPatches: 2.5 })).rejects.toThrow('maxNumPatches must be an integer of at least 1');
    await expect(HfTeacher.load(CLIP, { maxNumPatches: 16 })).rejects.toThrow('maxNumPatches is for SigLIP2 NaFlex encoders');
    expect(() => readHfVisionConfig(variant('budget', (c) => c, { max_num_patches: 0 }))).toThrow('preprocessor_config.json: max_num_patches must be an integer of at least 1');
    expect(() => readHfVisionConfig(variant('patch', (c) => c, { patch_size: 14 }))).toThrow("patch_size 14 is not config.json's patch_size 16");
    expect(() => readHfVisionConfig(variant('table', (c) => ({ ...c, num_patches: 60 }), {}))).toThrow('num_patches must be a square (the position table is side x side), got 60');
    await expect(loadHfVisionModel(variant('rows', (c) => ({ ...c, num_patches: 49 }), {}))).rejects.toThrow(
      "'vision_model.embeddings.position_embedding.weight' has shape [64, 64], but num_patches 49 needs 49 rows");
    const m: HfVisionModel = await loadHfVisionModel(DIR);
    const clip = await loadHfVisionModel(CLIP);
    try {
      const img = tensor(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]);
      expect(() => m.forward(img, { maxNumPatches: -1 })).toThrow('HfVisionModel.forward: maxNumPatches must be an integer of at least 1');
      expect(() => m.forwardEach([])).toThrow('images must be a non-empty array');
      expect(() => m.forwardEach([tensor(new Float32Array(2 * 3 * 32 * 32), [2, 3, 32, 32])])).toThrow('images[0] has shape [2, 3, 32, 32], expected one image');
      expect(() => m.forward(tensor(new Float32Array(4 * 32 * 32), [1, 4, 32, 32]))).toThrow('expected [B, 3, H, W]');
      expect(() => clip.forwardEach([img])).toThrow('images of different sizes are for SigLIP2 NaFlex encoders');
      expect(() => clip.forward(img, { maxNumPatches: 4 })).toThrow('maxNumPatches is for SigLIP2 NaFlex encoders');
      img.dispose();
    } finally {
      m.dispose();
      clip.dispose();
    }
  });
});
