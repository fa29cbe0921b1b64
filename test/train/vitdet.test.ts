// ViTDet as a training augmentation (paper §4, spec §2.1): RadioModel.forward's per-call opts.vitdet must compute
// exactly what the reference computes with those windows (checked on the reference's own ViTDet cases, loaded with
// their windows turned off and given them back per call), and distill({ vitdet }) draws a window size per micro-batch
// that the step really runs with.
import * as path from 'path';

import { distill, parseDistillConfig, RadioModel, RadioTeacher, SafetensorsFile, SyntheticSource, tensor } from '../../ts';
import type { Device, DistillOptions } from '../../ts';
import { describeEachDevice, poisonOutputs, relativeError } from '../support/reference';
import { TrainFixture } from '../support/radio-train-fixture';
import { makeStudent, TEACHER_DIR, tempDir } from './support';

poisonOutputs();

const ROOT = path.join(__dirname, '..', 'fixtures', 'radio');
const OFF = { vitdet: { windowSize: null } };

describeEachDevice('RadioModel.forward with opts.vitdet on %s', (device: Device) => {
  test('eval: windows given per call to a model loaded without them match the reference ViTDet case', async () => {
    // vit-vitdet-ls: window 3, vitdet_num_windowed 2 (blocks 0, 1, 3 windowed) over a 6×9 grid.
    const model = await RadioModel.load(path.join(ROOT, 'vit-vitdet-ls'), { device, ...OFF });
    expect(model.config.vitdet).toBeNull();
    const io = await SafetensorsFile.open(path.join(ROOT, 'vit-vitdet-ls', 'io.safetensors'));
    try {
      const images = await io.readFloat('images');
      const x = tensor(images.data, images.shape, { device });
      const windowed = model.forward(x, { vitdet: { windowSize: 3, numWindowed: 2 } });
      const global = model.forward(x);
      for (const h of Object.keys(windowed))
        for (const part of ['summary', 'features'] as const) {
          const ref = (await io.readFloat(`${h}.${part}`)).data;
          const err = relativeError(await windowed[h][part].toArray(), ref);
          expect({ what: `${h}.${part}`, err, ok: err <= 1e-4 }).toMatchObject({ ok: true });
          // Without the windows the same model is another function: the override is what made it match.
          expect(relativeError(await global[h][part].toArray(), ref)).toBeGreaterThan(1e-3);
        }
    } finally {
      await io.close();
      model.dispose();
    }
  });

  test('training: the reference ViTDet training step (loss and every gradient) with the windows given per call', async () => {
    const fx = await TrainFixture.read(path.join(ROOT, 'train-vitdet-ls'));
    const model = await RadioModel.load(fx.dir, { device, ...OFF });
    model.train();
    // train-vitdet-ls: window 2, vitdet_num_windowed 2 (blocks 0, 1 windowed) over a 4×6 grid.
    const out = model.forward(fx.onDevice('images', device), { cpe: fx.replay(device), vitdet: { windowSize: 2, numWindowed: 2 } });
    const { total } = fx.lossOf(out, device);
    expect(relativeError([await total.item()], fx.io.get('loss.total')!.data)).toBeLessThanOrEqual(1e-4);
    total.backward();
    const params = new Map(model.namedParameters());
    for (const key of fx.gradKeys()) {
      const err = relativeError(await params.get(key)!.grad!.toArray(), fx.io.get(`grad.${key}`)!.data);
      expect({ grad: key, err, ok: err <= 1e-4 }).toMatchObject({ ok: true });
    }
    model.dispose();
  });
});

describe('opts.vitdet errors (cpu)', () => {
  test('bad overrides name the option and the field', async () => {
    const plain = await RadioModel.load(TEACHER_DIR);
    const x = tensor(new Float32Array(3 * 64 * 96), [1, 3, 64, 96]);
    expect(() => plain.forward(x, { vitdet: 3 as never })).toThrow('RadioModel.forward: opts.vitdet must be { windowSize, numGlobal?, numWindowed? }, got 3');
    expect(() => plain.forward(x, { vitdet: { numGlobal: 2 } })).toThrow('RadioModel.forward: opts.vitdet.windowSize is required (the model has no ViTDet windows of its own)');
    expect(() => plain.forward(x, { vitdet: { windowSize: 2 } })).toThrow('RadioModel.forward: opts.vitdet needs numGlobal or numWindowed (the model has no ViTDet schedule of its own)');
    expect(() => plain.forward(x, { vitdet: { windowSize: 0, numGlobal: 2 } })).toThrow(/opts\.vitdet: vitdet_window_size must be a positive integer/);
    // 64×96 px is a 4×6 grid: windows of 4 do not tile it.
    expect(() => plain.forward(x, { vitdet: { windowSize: 4, numGlobal: 2 } })).toThrow('RadioModel.forward: input resolution 64x96 is not a multiple of 64 (patch 16 × window 4); nearest supported: 64x128');
    expect(plain.forward(x, { vitdet: { windowSize: 2, numGlobal: 2 } }).backbone.features.shape).toEqual([1, 24, 64]);
    plain.dispose();
  });
});

describe('distill with ViTDet augmentation (cpu)', () => {
  let teacher: RadioTeacher;
  beforeAll(async () => {
    teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
  });
  afterAll(() => teacher.close());

  async function run(tag: string, vitdet: DistillOptions['vitdet'], steps = 1) {
    const dir = tempDir(`vitdet-${tag}`);
    return distill({
      student: { dir: await makeStudent(path.join(dir, 'student')) },
      teachers: [{ teacher }],
      data: new SyntheticSource({ seed: 5, partitions: [{ height: 64, width: 64, batch: 2 }] }),
      steps,
      optimizer: { lr: 1e-3 },
      seed: 11,
      progress: false,
      ...(vitdet ? { vitdet } : {}),
    });
  }

  test('each step runs with the window size it drew; null draws are the plain global step', async () => {
    // The student has depth 2; numGlobal 1 windows block 0 and keeps the last global. 64 px is a 4×4 grid.
    const windowed = await run('w2', { windowSizes: [2], numGlobal: 1 });
    const global = await run('null', { windowSizes: [null], numGlobal: 1 });
    const plain = await run('plain', undefined);
    expect(windowed.history[0].windows).toEqual([2]);
    expect(global.history[0].windows).toEqual([null]);
    expect(plain.history[0].windows).toBeUndefined();
    expect(global.history[0].loss).toBe(plain.history[0].loss);
    expect(Math.abs(windowed.history[0].loss - plain.history[0].loss)).toBeGreaterThan(1e-6);

    const mixed = await run('mixed', { windowSizes: [2, null], numGlobal: 1 }, 8);
    const again = await run('mixed-again', { windowSizes: [2, null], numGlobal: 1 }, 8);
    const draws = mixed.history.map((m) => m.windows![0]);
    expect(new Set(draws)).toEqual(new Set([2, null]));
    // Deterministic given the seed (a resumed run re-derives a step's draw from (seed, step)).
    expect(again.history.map((m) => m.windows![0])).toEqual(draws);
    expect(again.history.map((m) => m.loss)).toEqual(mixed.history.map((m) => m.loss));
    // The first step is the same student on the same batch: its loss is the one of the window it drew.
    expect(mixed.history[0].loss).toBe((draws[0] === 2 ? windowed : global).history[0].loss);
    for (const r of [windowed, global, plain, mixed, again]) r.student.dispose();
  });

  test('window sizes that do not tile a partition, or no schedule, are Errors naming the field', async () => {
    await expect(run('bad-ws', { windowSizes: [2, 3], numGlobal: 1 })).rejects.toThrow(
      "distill: vitdet.windowSizes: window 3 does not divide data partition 0's patch grid 4x4 (64x64 px, patch 16)");
    await expect(run('no-schedule', { windowSizes: [2] })).rejects.toThrow('distill: vitdet needs numGlobal or numWindowed (the student has no ViTDet schedule of its own)');
    await expect(run('empty', { windowSizes: [] })).rejects.toThrow('distill: vitdet.windowSizes must be a non-empty array');
    const base = { student: { dir: 's' }, teachers: [{ type: 'radio', dir: 't' }], data: { type: 'synthetic' }, steps: 1 };
    expect(() => parseDistillConfig({ ...base, student: { dir: 's', vitdet: { windowSizes: [2, 'x'] } } }, '/')).toThrow(
      'config.student.vitdet.windowSizes[1] must be a window size in patches (a positive integer) or null, got "x"');
    expect(() => parseDistillConfig({ ...base, student: { dir: 's', vitdet: { windowSizes: [2], every: 1 } } }, '/')).toThrow(
      'config.student.vitdet.every: unknown key (expected one of windowSizes, numGlobal, numWindowed)');
    const ok = parseDistillConfig({ ...base, student: { dir: 's', vitdet: { windowSizes: [2, null], numGlobal: 4 } } }, '/');
    expect(ok.options.vitdet).toEqual({ windowSizes: [2, null], numGlobal: 4, numWindowed: undefined });
  });
});
