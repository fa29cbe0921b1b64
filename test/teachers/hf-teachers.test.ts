// The Hugging Face teachers against their original implementations (test/fixtures/teachers/*, made by
// scripts/fixtures/make_teacher_cases.py: DINOv2, DINOv2 with registers and SwiGLU, OpenAI CLIP vision, SigLIP
// vision through timm, each in transformers' checkpoint layout): summary and features at the pre-training
// resolution, at larger and non-square inputs (the bicubic position resize, antialiased for DINOv2 with
// registers), f32 and bf16; then the Teacher interface, the loader's errors and Teacher.fromPretrained.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';

import { HfTeacher, loadHfVisionModel, loadSamVisionModel, Teacher, tensor } from '../../ts';
import type { Device, DType } from '../../ts';
import { expectWithin, readIo } from '../support/radio-fixtures';
import { describeEachDevice, poisonOutputs, relativeError } from '../support/reference';

poisonOutputs();

const ROOT = path.join(__dirname, '..', 'fixtures', 'teachers');
const RADIO = path.join(__dirname, '..', 'fixtures', 'radio');
const TOLERANCE = { f32: 1e-4, bf16: 2e-2 } as const;
const ALL = fs.readdirSync(ROOT).filter((d) => fs.existsSync(path.join(ROOT, d, 'case.json'))).sort();
// SAM and SigLIP2 NaFlex have their own tests below (no resizable fixed grid; per-image sizes).
const CASES = ALL.filter((d) => !d.startsWith('sam-') && !d.startsWith('siglip2-'));

const ioFiles = (name: string) => fs.readdirSync(path.join(ROOT, name)).filter((f) => /^io-.*\.safetensors$/.test(f)).sort();

test('every teacher case is here', () => {
  expect(ALL).toEqual(['clip-vit', 'dinov2-reg-swiglu', 'dinov2-small', 'sam-vit', 'siglip-vit', 'siglip2-naflex']);
  for (const c of CASES) expect(ioFiles(c).length).toBeGreaterThanOrEqual(2);
  expect(ioFiles('sam-vit')).toEqual(['io-112x112.safetensors']);
});

describeEachDevice('Hugging Face teachers against their reference implementations, on %s', (device: Device) => {
  describe.each(CASES)('%s', (name) => {
    test.each(['f32', 'bf16'] as const)('%s: summary and features at every input size', async (dtype: DType) => {
      const model = await loadHfVisionModel(path.join(ROOT, name), { device, dtype: dtype as 'f32' | 'bf16' });
      try {
        for (const file of ioFiles(name)) {
          const io = await readIo(path.join(ROOT, name, file));
          const img = io.get('images')!;
          const out = model.forward(tensor(img.data, img.shape, { device }));
          try {
            const [H, W] = img.shape.slice(2);
            expect(out.grid).toEqual([Math.floor(H / model.config.patch), Math.floor(W / model.config.patch)]);
            for (const part of ['summary', 'features'] as const) {
              const ref = io.get(part)!;
              const t = out[part]!;
              expect(t.shape).toEqual(ref.shape);
              expectWithin(`${name} ${file} ${dtype} ${part}`, relativeError(await t.toArray(), ref.data), TOLERANCE[dtype as 'f32' | 'bf16']);
            }
          } finally {
            out.summary?.dispose();
            out.features.dispose();
          }
        }
      } finally {
        model.dispose();
      }
    });
  });

  describe('sam-vit (windowed blocks padded to the window, global blocks, decomposed relative positions, neck)', () => {
    test.each(['f32', 'bf16'] as const)('%s: the tokens before the neck and the neck output', async (dtype: DType) => {
      const model = await loadSamVisionModel(path.join(ROOT, 'sam-vit'), { device, dtype: dtype as 'f32' | 'bf16' });
      try {
        const io = await readIo(path.join(ROOT, 'sam-vit', 'io-112x112.safetensors'));
        const img = io.get('images')!;
        const out = model.forward(tensor(img.data, img.shape, { device }));
        expect(out.summary).toBeNull();
        expect(out.grid).toEqual([7, 7]);
        for (const part of ['features', 'neck'] as const) {
          const ref = io.get(part)!;
          expect(out[part].shape).toEqual(ref.shape);
          expectWithin(`sam-vit ${dtype} ${part}`, relativeError(await out[part].toArray(), ref.data), TOLERANCE[dtype as 'f32' | 'bf16']);
        }
        out.features.dispose();
        out.neck.dispose();
        expect(() => model.forward(tensor(new Float32Array(3 * 96 * 112), [1, 3, 96, 112], { device }))).toThrow("SAM's encoder takes 112x112 inputs (its position table is not resized), got 96x112");
      } finally {
        model.dispose();
      }
    });

    test('as a Teacher: features before the neck by default, the neck on request', async () => {
      const io = await readIo(path.join(ROOT, 'sam-vit', 'io-112x112.safetensors'));
      const img = io.get('images')!;
      for (const features of [undefined, 'neck'] as const) {
        const t = await HfTeacher.load(path.join(ROOT, 'sam-vit'), { device, ...(features ? { features } : {}) });
        try {
          expect(t.name).toBe('sam');
          expect(t.inputSize).toEqual([112, 112]);
          expect(t.heads).toEqual({ sam: { summaryDim: null, featureDim: features ? 24 : 32 } });
          const targets = await t.forward(tensor(img.data, img.shape, { device }), { ids: ['a', 'b'] });
          expect(targets.sam.summary).toBeUndefined();
          expect(targets.sam.grid).toEqual([7, 7]);
          const got = await targets.sam.features.toArray();
          targets.sam.features.dispose();
          if (!features) expectWithin('sam teacher features', relativeError(got, io.get('features')!.data), 1e-4);
          else {
            // The neck's [B, C, h, w] as tokens [B, h·w, C].
            const ref = io.get('neck')!;
            const [B, C, h, w] = ref.shape;
            const tokens = new Float32Array(ref.data.length);
            for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let p = 0; p < h * w; p++) tokens[(b * h * w + p) * C + c] = ref.data[(b * C + c) * h * w + p];
            expectWithin('sam teacher neck', relativeError(got, tokens), 1e-4);
          }
        } finally {
          await t.close();
        }
      }
      await expect(HfTeacher.load(path.join(ROOT, 'sam-vit'), { inputSize: [96, 112] })).rejects.toThrow("SAM's encoder takes 112x112 inputs");
      await expect(HfTeacher.load(path.join(ROOT, 'clip-vit'), { features: 'neck' })).rejects.toThrow("the features option is for SAM's encoder");
    });
  });

  test('as a Teacher: one head named by the family, targets on its own grid at the preprocessor size', async () => {
    const t = await HfTeacher.load(path.join(ROOT, 'dinov2-small'), { device });
    try {
      expect(t.name).toBe('dino_v2');
      expect(t.inputSize).toEqual([56, 56]);
      expect(t.heads).toEqual({ dino_v2: { summaryDim: 48, featureDim: 48 } });
      const io = await readIo(path.join(ROOT, 'dinov2-small', 'io-56x56.safetensors'));
      const img = io.get('images')!;
      const targets = await t.forward(tensor(img.data, img.shape, { device }), { ids: ['a', 'b'] });
      expect(Object.keys(targets)).toEqual(['dino_v2']);
      expect(targets.dino_v2.grid).toEqual([4, 4]);
      expectWithin('teacher features', relativeError(await targets.dino_v2.features.toArray(), io.get('features')!.data), 1e-4);
      expectWithin('teacher summary', relativeError(await targets.dino_v2.summary!.toArray(), io.get('summary')!.data), 1e-4);
      targets.dino_v2.features.dispose();
      targets.dino_v2.summary!.dispose();
    } finally {
      await t.close();
    }
    const s = await HfTeacher.load(path.join(ROOT, 'siglip-vit'), { device, name: 'siglip2', head: 'siglip', inputSize: [64, 80], summary: false });
    try {
      expect(s.heads).toEqual({ siglip: { summaryDim: null, featureDim: 64 } });
      expect(s.inputSize).toEqual([64, 80]);
      const targets = await s.forward(tensor(new Float32Array(3 * 64 * 80).fill(0.5), [1, 3, 64, 80], { device }), { ids: ['x'] });
      expect(targets.siglip.summary).toBeUndefined();
      expect(targets.siglip.features.shape).toEqual([1, 20, 64]);
      targets.siglip.features.dispose();
    } finally {
      await s.close();
    }
  });
});

describe('Hugging Face teacher loading', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-teacher-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** A copy of a case with its config.json edited. */
  function variant(name: string, edit: (c: Record<string, unknown>) => void, label: string): string {
    const dir = path.join(tmp, label);
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['model.safetensors', 'preprocessor_config.json']) fs.copyFileSync(path.join(ROOT, name, f), path.join(dir, f));
    const c = JSON.parse(fs.readFileSync(path.join(ROOT, name, 'config.json'), 'utf8'));
    edit(c);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
    return dir;
  }

  test('errors name the file, the key and the problem', async () => {
    await expect(HfTeacher.load(variant('dinov2-small', (c) => (c.model_type = 'vit_mae'), 'mae'))).rejects.toThrow(
      'model_type "vit_mae" is not a supported teacher');
    await expect(HfTeacher.load(variant('clip-vit', (c) => (c.hidden_act = 'swish'), 'act'))).rejects.toThrow('hidden_act "swish" is not supported');
    await expect(HfTeacher.load(variant('dinov2-small', (c) => (c.num_hidden_layers = 3), 'deeper'))).rejects.toThrow(
      "missing 18 tensors: 'encoder.layer.2.norm1.weight'");
    await expect(HfTeacher.load(variant('dinov2-small', (c) => (c.image_size = 70), 'size'))).rejects.toThrow(
      "'embeddings.position_embeddings' has shape [1, 17, 48], but image_size 70 / patch_size 14 needs 26 rows");
    await expect(HfTeacher.load(path.join(ROOT, 'dinov2-small'), { inputSize: [10, 56] })).rejects.toThrow('each at least the patch size 14, got [10,56]');
    await expect(HfTeacher.load(path.join(ROOT, 'siglip-vit'), { dtype: 'f16' as 'f32' })).rejects.toThrow("dtype must be 'f32' or 'bf16'");
    await expect(HfTeacher.load(path.join(tmp, 'nothing-here'))).rejects.toThrow('is not a folder');
    const m = await loadHfVisionModel(path.join(ROOT, 'clip-vit'));
    try {
      expect(() => m.forward(tensor(new Float32Array(3 * 10 * 56), [1, 3, 10, 56]))).toThrow('input 10x56 is smaller than the patch size 14');
      expect(() => m.forward(tensor(new Float32Array(4 * 56 * 56), [1, 4, 56, 56]))).toThrow('expected [B, 3, H, W]');
    } finally {
      m.dispose();
    }
  });

  test('unread checkpoint tensors are one warning; the ones every such checkpoint carries are not', async () => {
    const warnings: string[] = [];
    const m = await loadHfVisionModel(path.join(ROOT, 'dinov2-small'), { onWarning: (w) => warnings.push(w) });
    m.dispose();
    // mask_token is in every Dinov2Model checkpoint and unused by inference.
    expect(warnings).toEqual([]);
  });

  test('Teacher.fromPretrained picks the architecture from config.json', async () => {
    const dino = await Teacher.fromPretrained(path.join(ROOT, 'dinov2-reg-swiglu'));
    expect(dino).toBeInstanceOf(HfTeacher);
    expect(dino.heads).toEqual({ dino_v2: { summaryDim: 64, featureDim: 64 } });
    await dino.close();
    const clip = await Teacher.fromPretrained(path.join(ROOT, 'clip-vit'));
    expect(clip.heads).toEqual({ clip: { summaryDim: 40, featureDim: 64 } });
    await clip.close();
    const sam = await Teacher.fromPretrained(path.join(ROOT, 'sam-vit'));
    expect(sam.heads).toEqual({ sam: { summaryDim: null, featureDim: 32 } });
    await sam.close();
    const radio = await Teacher.fromPretrained(path.join(RADIO, 'vit-b16-v2heads'));
    expect(radio.constructor.name).toBe('RadioTeacher');
    await radio.close();
    await expect(Teacher.fromPretrained(path.join(tmp, 'no', 'such', 'dir'))).rejects.toThrow('is neither a folder nor a hub repo id');
  });
});

test('Teacher.fromPretrained fetches a hub repo into the hub cache; the preprocessor file is optional', async () => {
  // A local stand-in for the hub (127.0.0.1; see test/hub.test.ts for the full protocol): two repos, one without a
  // preprocessor_config.json, so its teacher falls back to the family's statistics and the config's image_size.
  const commit = 'c'.repeat(40);
  const file = (name: string) => fs.readFileSync(path.join(ROOT, 'dinov2-small', name));
  const repos: Record<string, Record<string, Buffer>> = {
    'org/dino-tiny': { 'config.json': file('config.json'), 'model.safetensors': file('model.safetensors'), 'preprocessor_config.json': Buffer.from(JSON.stringify({ image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], crop_size: { height: 42, width: 70 } })) },
    'org/dino-bare': { 'config.json': file('config.json'), 'model.safetensors': file('model.safetensors') },
  };
  const server = http.createServer((req, res) => {
    const m = new URL(req.url!, 'http://x').pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/(.+)$/);
    // A preprocessor behind a refusal: an optional file's other failures must not pass as its absence.
    if (m && m[1] === 'org/dino-locked' && m[2] === 'preprocessor_config.json') return void res.writeHead(403).end();
    const body = m && (repos[m[1]] ?? (m[1] === 'org/dino-locked' ? repos['org/dino-bare'] : undefined))?.[m[2]];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'x-repo-commit': commit, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 40)}"`, 'content-length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-teacher-hub-'));
  try {
    const hub = { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, cacheDir: cache, progress: false as const };
    const tiny = await HfTeacher.fromPretrained('org/dino-tiny', { hub });
    expect(tiny.inputSize).toEqual([42, 70]);
    await tiny.close();
    const bare = await Teacher.fromPretrained('org/dino-bare', { hub });
    expect((bare as HfTeacher).inputSize).toEqual([56, 56]);
    await bare.close();
    await expect(Teacher.fromPretrained('org/missing', { hub })).rejects.toThrow('org/missing@main has no config.json, or the repo does not exist (HTTP 404)');
    await expect(Teacher.fromPretrained('org/dino-locked', { hub })).rejects.toThrow('org/dino-locked refused access (HTTP 403)');
    // Offline, the cache alone serves what was fetched.
    const again = await Teacher.fromPretrained('org/dino-tiny', { hub: { ...hub, offline: true } });
    expect((again as HfTeacher).inputSize).toEqual([42, 70]);
    await again.close();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
