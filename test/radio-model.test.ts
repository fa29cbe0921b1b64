// RadioModel against the reference implementation's own outputs (test/fixtures/radio), a hand-built ViTDet +
// LayerScale + final-norm checkpoint against a float64 forward written from the spec, and checkpoint errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadRadio, RadioModel, SafetensorsFile, tensor } from '../ts';
import type { Device, DType, SafetensorsWriteEntry } from '../ts';
import { readEntries } from './support/radio-fixtures';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError } from './support/reference';
import { writeCheckpoint } from './support/radio-checkpoint';
import { refRadio, RefConfig, Weights } from './support/radio-reference';

poisonOutputs();

const FIXTURE = path.join(__dirname, 'fixtures', 'radio', 'vit-b16-v2heads');
const HEADS = ['backbone', 'clip', 'dino_v2', 'sam'];
// bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 2e-3); every weight, every activation and each of the
// ~25 op outputs between the image and a head's output is rounded, so errors of a few 1e-3 each add up to
// about 1e-2 (measured 0.6–1.4e-2 on this fixture on cpu and sim). 2e-2 catches any real mistake, which
// shows as O(1).
const TOLERANCE: Record<'f32' | 'bf16', number> = { f32: 1e-4, bf16: 2e-2 };

async function readFixture(): Promise<{ images: { data: Float32Array; shape: number[] }; expected: Map<string, Float32Array> }> {
  const io = await SafetensorsFile.open(path.join(FIXTURE, 'io.safetensors'));
  try {
    const expected = new Map<string, Float32Array>();
    for (const h of HEADS) for (const part of ['summary', 'features']) expected.set(`${h}.${part}`, (await io.readFloat(`${h}.${part}`)).data);
    return { images: await io.readFloat('images'), expected };
  } finally {
    await io.close();
  }
}

describeEachDevice('RADIO fixture parity on %s', (device: Device) => {
  test.each(['f32', 'bf16'] as const)('%s: backbone and every adaptor, summary and features', async (dtype: DType) => {
    const { images, expected } = await readFixture();
    const model = await RadioModel.load(FIXTURE, { device, dtype });
    const out = model.forward(tensor(images.data, images.shape));
    expect(Object.keys(out).sort()).toEqual([...HEADS].sort());
    for (const h of HEADS)
      for (const part of ['summary', 'features'] as const) {
        const got = out[h][part];
        expect(got.device).toBe(device);
        const err = relativeError(await got.toArray(), expected.get(`${h}.${part}`)!);
        expect({ head: `${h}.${part}`, ok: err <= TOLERANCE[dtype as 'f32' | 'bf16'], err }).toMatchObject({ ok: true });
      }
    expect(out.backbone.summary.shape).toEqual([2, 128]);
    expect(out.backbone.features.shape).toEqual([2, 96, 64]);
    expect(out.sam.features.shape).toEqual([2, 96, 40]);
    model.dispose();
  });

  test('a resolution that is not a multiple of the patch size is an Error naming it', async () => {
    const model = await RadioModel.load(FIXTURE, { device });
    expect(() => model.forward(tensor(new Float32Array(3 * 40 * 64), [1, 3, 40, 64]))).toThrow(
      'RadioModel.forward: input resolution 40x64 is not a multiple of 16 (patch 16); nearest supported: 48x64',
    );
    model.dispose();
    expect(() => model.forward(tensor(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]))).toThrow(/disposed/);
  });
});

// A checkpoint the reference implementation did not make: ViTDet windows (blocks 0, 1 windowed; 2, 3 global),
// LayerScale, a final norm, no summary_idxs buffer. Built from random weights in the HF layout.
const D = 32;
const P = 4;
const DEPTH = 4;
const S = 4;

function handBuiltWeights(seed: number): Weights {
  const ws: Weights = {};
  let s = seed;
  const add = (k: string, shape: number[], scale = 0.3, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    ws[`radio_model.${k}`] = { shape, data: Float64Array.from(randomArray(n, s++, scale), (v) => Math.fround(v + offset)) };
  };
  add('input_conditioner.norm_mean', [3, 1, 1], 0.05, 0.45);
  add('input_conditioner.norm_std', [3, 1, 1], 0.02, 0.27);
  add('model.patch_generator.embedder.weight', [D, 3 * P * P], 0.2);
  add('model.patch_generator.pos_embed', [1, 16, D]);
  add('model.patch_generator.cls_token.token', [S, D]);
  for (let i = 0; i < DEPTH; i++) {
    const k = `model.blocks.${i}`;
    add(`${k}.norm1.weight`, [D], 0.2, 1);
    add(`${k}.norm1.bias`, [D], 0.1);
    add(`${k}.attn.qkv.weight`, [3 * D, D], 0.4);
    add(`${k}.attn.qkv.bias`, [3 * D], 0.1);
    add(`${k}.attn.proj.weight`, [D, D]);
    add(`${k}.attn.proj.bias`, [D], 0.1);
    add(`${k}.ls1.grandma`, [D], 0.5, 0.5);
    add(`${k}.norm2.weight`, [D], 0.2, 1);
    add(`${k}.norm2.bias`, [D], 0.1);
    add(`${k}.mlp.fc1.weight`, [4 * D, D]);
    add(`${k}.mlp.fc1.bias`, [4 * D], 0.1);
    add(`${k}.mlp.fc2.weight`, [D, 4 * D], 0.15);
    add(`${k}.mlp.fc2.bias`, [D], 0.1);
    add(`${k}.ls2.grandma`, [D], 0.5, 0.5);
  }
  add('model.norm.weight', [D], 0.2, 1);
  add('model.norm.bias', [D], 0.1);
  return ws;
}

const HAND_CONFIG = {
  architectures: ['RADIOModel'],
  args: {
    model: 'vit_tiny_patch16_224',
    model_kwargs: { embed_dim: D, depth: DEPTH, num_heads: 1, init_values: 0.5 },
    cpe_max_size: 16,
    teachers: [{ name: 'a' }, { name: 'b', use_summary: false }],
    cls_token_per_teacher: true,
    register_multiple: 4,
    model_norm: true,
  },
  version: 'hand-built',
  patch_size: P,
  vitdet_window_size: 2,
  vitdet_num_windowed: 2,
  adaptor_names: null,
};
const HAND_REF: RefConfig = {
  D, heads: 1, P, S, numCls: 2, depth: DEPTH, windowSize: 2, windowed: [true, true, false, false], summaryIdxs: [0], modelNorm: true, layerScale: true,
};

const asEntries = (ws: Weights): Record<string, SafetensorsWriteEntry> =>
  Object.fromEntries(Object.entries(ws).map(([k, v]) => [k, { dtype: 'F32' as const, shape: v.shape, data: v.data }]));

let tmp: string;
beforeAll(async () => {
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-model-'));
});
afterAll(async () => {
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

describeEachDevice('RADIO ViTDet + LayerScale + final norm against float64 on %s', (device: Device) => {
  test('16x16 image, window 2 over a 4x4 grid: summary and features', async () => {
    const ws = handBuiltWeights(freshSeed());
    const dir = path.join(tmp, `vitdet-${device}`);
    await writeCheckpoint(dir, HAND_CONFIG, asEntries(ws));
    const model = await RadioModel.load(dir, { device });
    expect(model.config.vitdet?.windowed).toEqual(HAND_REF.windowed);
    const B = 2;
    const image = Float64Array.from(randomArray(B * 3 * 16 * 16, freshSeed()), (v) => Math.fround((v + 1) / 2));
    const out = model.forward(tensor(Float32Array.from(image), [B, 3, 16, 16], { device }));
    const refs = [0, 1].map((b) => refRadio(ws, image.subarray(b * 768, (b + 1) * 768), 16, 16, HAND_REF));
    expect(relativeError(await out.backbone.summary.toArray(), refs.flatMap((r) => r.summary))).toBeLessThanOrEqual(1e-4);
    expect(relativeError(await out.backbone.features.toArray(), refs.flatMap((r) => r.features.flatMap((f) => Array.from(f))))).toBeLessThanOrEqual(1e-4);
    // The step is patch × window in ViTDet mode.
    expect(() => model.forward(tensor(new Float32Array(3 * 12 * 16), [1, 3, 12, 16], { device }))).toThrow(/resolution 12x16 is not a multiple of 8 \(patch 4 × window 2\)/);
    model.dispose();
  });
});

describe('checkpoint errors name the file and the problem', () => {
  const modelFile = path.join(FIXTURE, 'model.safetensors');

  async function variant(name: string, edit: (bytes: Buffer) => Buffer): Promise<string> {
    const dir = path.join(tmp, name);
    await fs.promises.mkdir(dir, { recursive: true });
    await fs.promises.copyFile(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
    await fs.promises.writeFile(path.join(dir, 'model.safetensors'), edit(await fs.promises.readFile(modelFile)));
    return dir;
  }

  /** The fixture's tensors, rewritten with edit applied to the entry list. */
  async function rewritten(name: string, edit: (e: Record<string, SafetensorsWriteEntry>) => void): Promise<string> {
    const entries = await readEntries(modelFile);
    edit(entries);
    const dir = path.join(tmp, name);
    await writeCheckpoint(dir, JSON.parse(await fs.promises.readFile(path.join(FIXTURE, 'config.json'), 'utf8')), entries);
    return dir;
  }

  test('a truncated file', async () => {
    const dir = await variant('truncated', (b) => b.subarray(0, b.length - 1000));
    await expect(RadioModel.load(dir)).rejects.toThrow(/model\.safetensors: truncated safetensors file: tensor '.*' ends at byte \d+ of a \d+-byte data section/);
    const tiny = await variant('tiny', (b) => b.subarray(0, 5));
    await expect(RadioModel.load(tiny)).rejects.toThrow(/model\.safetensors: truncated safetensors file \(5 bytes/);
    const header = await variant('header-cut', (b) => b.subarray(0, 100));
    await expect(RadioModel.load(header)).rejects.toThrow(/model\.safetensors: truncated safetensors file: the header needs \d+ bytes/);
  });

  test('a corrupt header', async () => {
    const dir = await variant('bad-json', (b) => {
      const c = Buffer.from(b);
      c.write('#', 8);
      return c;
    });
    await expect(RadioModel.load(dir)).rejects.toThrow(/model\.safetensors: corrupt safetensors header \(not JSON/);
    const huge = await variant('bad-length', (b) => {
      const c = Buffer.from(b);
      c.writeBigUInt64LE(1n << 60n, 0);
      return c;
    });
    await expect(RadioModel.load(huge)).rejects.toThrow(/model\.safetensors: corrupt safetensors header length/);
  });

  test('a missing tensor', async () => {
    const dir = await rewritten('missing', (e) => delete e['radio_model.model.blocks.2.mlp.fc1.bias']);
    await expect(RadioModel.load(dir)).rejects.toThrow(/model\.safetensors: missing tensor 'radio_model\.model\.blocks\.2\.mlp\.fc1\.bias'/);
  });

  test('a tensor of the wrong shape', async () => {
    const dir = await rewritten('wrong-shape', (e) => {
      e['radio_model.model.patch_generator.cls_token.token'] = { dtype: 'F32', shape: [7, 64], data: new Float32Array(7 * 64) };
    });
    await expect(RadioModel.load(dir)).rejects.toThrow(
      /model\.safetensors: tensor 'radio_model\.model\.patch_generator\.cls_token\.token' has shape \[7, 64\], expected \[8, 64\]/,
    );
  });

  test('a config this port does not implement', async () => {
    const dir = path.join(tmp, 'convnext');
    await writeCheckpoint(dir, { args: { model: 'convnext_base', cpe_max_size: 256 } }, {});
    await expect(RadioModel.load(dir)).rejects.toThrow(/config\.json: args\.model "convnext_base" is not a supported timm ViT/);
    const eradio = path.join(tmp, 'eradio');
    await writeCheckpoint(eradio, { args: { model: 'eradio', cpe_max_size: 256 } }, {});
    await expect(RadioModel.load(eradio)).rejects.toThrow(/config\.json: an E-RADIO checkpoint \(args\.model "eradio"\); load it with ERadioModel\.load\(dir\) or loadRadio\(dir\)/);
    // loadRadio takes it to the E-RADIO loader, which names what the folder lacks.
    await expect(loadRadio(eradio)).rejects.toThrow(/return_full_features must be true/);
  });
});
