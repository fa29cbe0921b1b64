// RADIO's training-time CPE (spec §1.4): the seeded crop and position-dropout draws and their distribution, the
// cases where RADIO takes no crop (the whole table; a checkpoint not in CPE mode), and a ViTDet + LayerScale
// checkpoint trained with its windows and its LayerScale unfolded.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { AdamW, noGrad, ops, RadioModel, tensor, tidy } from '../ts';
import type { Device } from '../ts';
import { evalPositions } from '../ts/model/cpe';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError } from './support/reference';
import { randomRadioTensors, writeCheckpoint } from './support/radio-checkpoint';
import { TRAIN_FIXTURE, TrainFixture } from './support/radio-train-fixture';

poisonOutputs();

let fx: TrainFixture;
beforeAll(async () => {
  fx = await TrainFixture.read();
});

describeEachDevice('RADIO training crop on %s', (device: Device) => {
  test('seeded draws follow RADIO\'s distribution and a forward without opts.cpe is the same as replaying them', async () => {
    const model = await RadioModel.load(TRAIN_FIXTURE, { device, seed: 12345 });
    const [, , H, W] = fx.io.get('images')!.shape;
    const n = 2000;
    const crop = model.sampleCpe(n, H, W);
    const [scale, offset, keep] = await Promise.all([crop.scale!.toArray(), crop.offset!.toArray(), crop.keep.toArray()]);
    for (let b = 0; b < n; b++) {
      const [sx, sy, px, py] = [scale[2 * b], scale[2 * b + 1], offset[2 * b], offset[2 * b + 1]];
      const ok = sx > 0 && sx <= 1 && sy > 0 && sy <= 1 && px >= 0 && px <= 1 - sx + 1e-6 && py >= 0 && py <= 1 - sy + 1e-6;
      // Unclamped, s² = sx·sy ∈ [0.1, 1) and a² = sx/sy ∈ [9/16, 16/9).
      const unclamped = sx < 1 && sy < 1;
      const area = sx * sy;
      const aspect = sx / sy;
      const inRange = !unclamped || (area >= 0.1 - 1e-6 && area < 1 && aspect >= 9 / 16 - 1e-6 && aspect < 16 / 9 + 1e-6);
      if (!ok || !inRange) throw new Error(`sample ${b}: scale (${sx}, ${sy}), offset (${px}, ${py}) is outside RADIO's distribution`);
    }
    const kept = keep.reduce((s, v) => s + v, 0) / n;
    expect(Math.abs(kept - 0.9)).toBeLessThan(0.03);
    expect(new Set(keep)).toEqual(new Set([0, 1]));
    const meanScale = Array.from(scale).reduce((s, v) => s + v, 0) / (2 * n);
    expect(meanScale).toBeGreaterThan(0.6);
    expect(meanScale).toBeLessThan(0.75);

    model.train();
    const images = fx.onDevice('images', device);
    model.seed(7);
    const drawn = model.forward(images);
    model.seed(7);
    const again = model.sampleCpe(3, H, W);
    const replayed = model.forward(images, { cpe: again });
    expect(relativeError(await drawn.sam.features.toArray(), await replayed.sam.features.toArray())).toBe(0);
    expect(() => model.forward(images, { cpe: { keep: again.keep } })).toThrow(/opts\.cpe\.scale must be an f32 Tensor \[3, 2\]/);
    model.dispose();
  });

  test('at the whole table (grid G×G) RADIO takes no crop: keep 1 is the eval forward, keep 0 drops the table', async () => {
    const model = await RadioModel.load(TRAIN_FIXTURE, { device, seed: 1 });
    const G = model.config.cpeGrid * model.config.patchSize;
    const images = tensor(Float32Array.from(randomArray(2 * 3 * G * G, freshSeed()), (v) => (v + 1) / 2), [2, 3, G, G], { device });
    const crop = model.sampleCpe(2, G, G);
    expect(crop.scale).toBeUndefined();
    const evalOut = await model.forward(images).backbone.features.toArray();
    model.train();
    const keep = tensor([1, 0], [2], { device });
    expect(() => model.forward(images, { cpe: { keep, scale: crop.keep } })).toThrow(/RADIO takes no crop here \(the grid 16x16 is the whole 16x16 table\); pass only keep/);
    const trainOut = await model.forward(images, { cpe: { keep } }).backbone.features.toArray();
    const half = evalOut.length / 2;
    expect(relativeError(trainOut.subarray(0, half), evalOut.subarray(0, half))).toBeLessThanOrEqual(1e-6);
    const pos = model.namedParameters().find(([k]) => k.endsWith('pos_embed'))![1];
    model.loadStateDict(new Map([[k('pos_embed', model), tensor(new Float32Array(pos.numel), pos.shape, { device })]]), { strict: false });
    model.eval();
    const noPos = await model.forward(images).backbone.features.toArray();
    expect(relativeError(trainOut.subarray(half), noPos.subarray(half))).toBeLessThanOrEqual(1e-6);
    model.dispose();
  });
});

describe('not in CPE mode (cpu)', () => {
  test('not in CPE mode (cpe_max_size = img_size), positions are the table\'s corner and no crop is drawn', async () => {
    const config = {
      args: { model: 'vit_tiny_patch16_224', model_kwargs: { embed_dim: 32, depth: 1, num_heads: 1, img_size: 16 }, cpe_max_size: 16, teachers: [{ name: 'a' }], cls_token_per_teacher: true, register_multiple: 4 },
      patch_size: 4,
    };
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-nocpe-'));
    await writeCheckpoint(dir, config, randomRadioTensors(config, freshSeed()));
    const model = await RadioModel.load(dir);
    await fs.promises.rm(dir, { recursive: true, force: true });
    expect(model.config.cpeMode).toBe(false);
    const pe = model.namedParameters().find(([key]) => key.endsWith('pos_embed'))![1];
    const table = await pe.toArray();
    const g = { grid: 4, cpeMode: false, alignCorners: false };
    const corner = await evalPositions(pe, g, 2, 3).toArray();
    const rows = [0, 1, 2, 4, 5, 6].flatMap((r) => Array.from(table.subarray(r * 32, (r + 1) * 32)));
    expect(Array.from(corner)).toEqual(rows);
    // Taller than the table: the 4 × 3 corner resized to 6 × 3 (align_corners false, RADIO's current code).
    const tall = await evalPositions(pe, g, 6, 3).toArray();
    const cornerRows = tensor(Float32Array.from([0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14].flatMap((r) => Array.from(table.subarray(r * 32, (r + 1) * 32)))), [1, 12, 32]);
    expect(tall).toEqual(await ops.interpolate(cornerRows, { layout: 'NLC', grid: [4, 3], size: [6, 3] }).toArray());
    expect(model.sampleCpe(2, 8, 12).scale).toBeUndefined();
    model.train();
    expect(model.forward(tensor(new Float32Array(2 * 3 * 8 * 12).fill(0.5), [2, 3, 8, 12]), { cpe: { keep: tensor([1, 0], [2]) } }).backbone.features.shape).toEqual([2, 6, 32]);
    model.dispose();
  });
});

const k = (suffix: string, model: RadioModel) => model.namedParameters().find(([key]) => key.endsWith(suffix))![0];

// Neither LayerScale nor ViTDet windows are in the reference fixture: a random checkpoint with both checks the
// training backward through them against finite differences of the loss, and that eval's folded LayerScale copy
// follows an optimizer step.
describe('ViTDet and LayerScale in training (cpu)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-train-'));
  });
  afterAll(async () => {
    await fs.promises.rm(dir, { recursive: true, force: true });
  });

  test('ViTDet + LayerScale: gradients match finite differences; eval after an AdamW step equals the unfolded forward', async () => {
    const D = 32;
    // Block 0 attends in 2 × 2 windows (the prefix tokens sit it out), block 1 globally.
    const config = {
      args: { model: 'vit_tiny_patch16_224', model_kwargs: { embed_dim: D, depth: 2, num_heads: 1, init_values: 0.5 }, cpe_max_size: 16, teachers: [{ name: 'a' }], cls_token_per_teacher: true, register_multiple: 4 },
      patch_size: 4,
      vitdet_window_size: 2,
      vitdet_num_windowed: 1,
      adaptor_names: null,
    };
    const tensors = randomRadioTensors(config, freshSeed());
    for (let i = 0; i < 2; i++)
      for (const ls of ['ls1', 'ls2'])
        tensors[`radio_model.model.blocks.${i}.${ls}.grandma`] = { dtype: 'F32', shape: [D], data: Float32Array.from(randomArray(D, freshSeed(), 0.5), (v) => v + 0.6) };
    await writeCheckpoint(dir, config, tensors);
    const model = await RadioModel.load(dir, { seed: 3 });
    expect(model.config.vitdet?.windowed).toEqual([true, false]);
    const images = tensor(Float32Array.from(randomArray(2 * 3 * 16 * 16, freshSeed()), (v) => (v + 1) / 2), [2, 3, 16, 16]);
    const target = tensor(Float32Array.from(randomArray(2 * 16 * D, freshSeed())), [2, 16, D]);
    const targetSummary = tensor(Float32Array.from(randomArray(2 * D, freshSeed())), [2, D]);
    const keep = tensor([1, 1], [2]);
    const loss = () => {
      const out = model.forward(images, { cpe: { keep } }).backbone;
      return ops.multiTeacherLoss([{ student: { summary: out.summary, features: out.features }, teacher: { summary: targetSummary, features: target } }]).total;
    };
    model.train();
    loss().backward();
    const params = new Map(model.namedParameters());
    // Steps small against each parameter's scale (the prefix tokens are ~0.02) and large against f32 noise.
    const checks: Array<[string, number[], number]> = [
      ['radio_model.model.blocks.0.ls2.grandma', [0, 5, 17, 31], 1e-2],
      ['radio_model.model.blocks.1.ls1.grandma', [2, 30], 1e-2],
      ['radio_model.model.blocks.0.attn.qkv.weight', [3, 1000, 2500], 1e-2],
      ['radio_model.model.patch_generator.cls_token.token', [0, 40], 1e-3],
    ];
    for (const [key, idx, h] of checks) {
      const p = params.get(key)!;
      const grad = await p.grad!.toArray();
      const base = await p.toArray();
      const fd: number[] = [];
      for (const i of idx) {
        const at = async (d: number) => {
          const v = Float32Array.from(base);
          v[i] += d;
          model.loadStateDict(new Map([[key, tensor(v, p.shape)]]), { strict: false });
          return noGrad(() => tidy(() => loss().detach())).item();
        };
        fd.push(((await at(h)) - (await at(-h))) / (2 * h));
      }
      model.loadStateDict(new Map([[key, tensor(base, p.shape)]]), { strict: false });
      const err = relativeError(idx.map((i) => grad[i]), fd);
      expect({ key, ok: err < 1e-2, err }).toMatchObject({ key, ok: true });
    }
    // At the whole table with keep 1 the eval forward (LayerScale folded, cached) is the recorded training forward
    // (unfolded); an optimizer step taken in eval mode must reach the cached fold.
    const unfolded = async () => {
      model.train();
      const out = await model.forward(images, { cpe: { keep } }).backbone.features.toArray();
      model.eval();
      return out;
    };
    model.eval();
    const before = await model.forward(images).backbone.features.toArray();
    expect(relativeError(before, await unfolded())).toBeLessThanOrEqual(1e-5);
    new AdamW(model.trainableParameters(), { lr: 1e-2 }).step();
    const after = await model.forward(images).backbone.features.toArray();
    expect(relativeError(after, before)).toBeGreaterThan(1e-3);
    expect(relativeError(after, await unfolded())).toBeLessThanOrEqual(1e-5);
    model.dispose();
  });
});
