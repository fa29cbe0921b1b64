// An E-RADIO student trains through the same trainer as the ViT one: BatchNorm in training mode (batch statistics,
// running statistics updated), the loss falls, and the checkpoint it writes loads again as an E-RADIO.
import * as path from 'path';
import { Writable } from 'stream';

import { distill, ERadioModel, ops, rand, RadioTeacher, randn, SafetensorsFile, SyntheticSource, tensor } from '../../ts';
import type { Tensor, Teacher, TeacherTargets } from '../../ts';
import { tempDir, weightsOf } from './support';

const STUDENT = path.join(__dirname, '..', 'fixtures', 'radio', 'eradio-xxxtiny');

/** Targets that are a fixed linear map of the 16 × 16 patches (clip 24, dino_v2 40 channels): learnable from the pixels. */
class PatchTeacher implements Teacher {
  readonly name = 'patches';
  readonly inputSize = null;
  readonly needsImages = true;
  readonly heads = { clip: { summaryDim: 24, featureDim: 24 }, dino_v2: { summaryDim: 40, featureDim: 40 } };
  private readonly maps: Record<string, Tensor> = { clip: randn([24, 768], { seed: 5 }).scale(0.05), dino_v2: randn([40, 768], { seed: 6 }).scale(0.05) };
  async forward(images: Tensor): Promise<TeacherTargets> {
    const [, , H, W] = images.shape;
    const cond = { mean: tensor([0, 0, 0], [3]), std: tensor([1, 1, 1], [3]) };
    const rows = ops.patchify(images, { patch: 16, ...cond });
    const out: TeacherTargets = {};
    for (const [h, w] of Object.entries(this.maps)) {
      const features = ops.linear(rows, w);
      out[h] = { features, summary: ops.mean(features, 1), grid: [H / 16, W / 16] };
    }
    return out;
  }
  async close() {}
}

test('cpu: an E-RADIO student distils (loss falls, BatchNorm running stats move) and its checkpoint loads as E-RADIO', async () => {
  const dir = tempDir('eradio-distill');
  const before = await ERadioModel.load(STUDENT);
  const initial = await weightsOf(before);
  before.dispose();
  const r = await distill({
    student: { dir: STUDENT },
    teachers: [{ teacher: new PatchTeacher() }],
    data: new SyntheticSource({ seed: 4, partitions: [{ height: 64, width: 64, batch: 4 }] }),
    steps: 12,
    optimizer: { lr: 2e-3, weightDecay: 0 },
    maxGradNorm: 5,
    outDir: path.join(dir, 'run'),
    progress: { stream: Object.assign(new Writable({ write: (_c: Buffer, _e: string, cb: () => void) => cb() }), { isTTY: false }) },
  });
  const first = r.history[0].loss;
  const last = r.history.slice(-3).reduce((s, m) => s + m.loss, 0) / 3;
  console.log(`E-RADIO distill: loss ${first.toFixed(4)} -> ${last.toFixed(4)} (mean of the last 3 steps)`);
  expect(r.skipped).toBe(0);
  expect(last).toBeLessThan(0.8 * first);
  expect(r.student).toBeInstanceOf(ERadioModel);
  r.student.dispose();
  // Every tensor of the checkpoint it started from is in the one it wrote (a strict load in the reference needs
  // them): the ones outside the student's tree (BatchNorm counters, the CPB tables, model.norm) unchanged.
  const src = await SafetensorsFile.open(path.join(STUDENT, 'model.safetensors'));
  const out = await SafetensorsFile.open(path.join(r.checkpoint!, 'model.safetensors'));
  try {
    expect(src.keys().filter((k) => !out.has(k))).toEqual([]);
    const carried = src.keys().filter((k) => /num_batches_tracked$|relative_coords_table$|relative_position_index$|^radio_model\.model\.norm\./.test(k));
    expect(carried.length).toBeGreaterThan(10);
    for (const k of carried) {
      const e = src.entry(k);
      const read = (f: SafetensorsFile) => (e.dtype.startsWith('I') ? f.readInts(k).then((x) => x.data) : f.readFloat(k).then((x) => Array.from(x.data)));
      expect({ k, dtype: out.entry(k).dtype, values: await read(out) }).toEqual({ k, dtype: e.dtype, values: await read(src) });
    }
  } finally {
    await src.close();
    await out.close();
  }
  const loaded = await ERadioModel.load(r.checkpoint!);
  try {
    const after = await weightsOf(loaded);
    const key = 'radio_model.model.patch_embed.conv_down.0.bn.running_mean';
    const moved = Array.from(after.get(key)!).some((v, i) => Math.abs(v - initial.get(key)![i]) > 1e-6);
    expect({ key, moved }).toEqual({ key, moved: true });
    const w = 'radio_model.model.levels.2.blocks.0.attention_blocks.0.attn.qkv.weight';
    expect(Array.from(after.get(w)!).some((v, i) => v !== initial.get(w)![i])).toBe(true);
  } finally {
    loaded.dispose();
  }
});

test('ViTDet window augmentation is refused for an E-RADIO student, naming it', async () => {
  await expect(distill({
    student: { dir: STUDENT },
    teachers: [{ teacher: new PatchTeacher() }],
    data: new SyntheticSource({ seed: 4, partitions: [{ height: 64, width: 64, batch: 2 }] }),
    steps: 1,
    vitdet: { windowSizes: [2], numGlobal: 1 },
  })).rejects.toThrow('ViTDet window augmentation applies to ViT students; this student is E-RADIO (eradio_xxxtiny)');
});

test('an E-RADIO checkpoint as a teacher: its heads, dims and targets on its own 1/16 grid, the backbone mapped too', async () => {
  const teacher = await RadioTeacher.load(STUDENT, { name: 'eradio', heads: { clip: 'clip', dense: 'backbone' } });
  try {
    expect(teacher.heads).toEqual({ clip: { summaryDim: 24, featureDim: 24 }, dense: { summaryDim: 256, featureDim: 256 } });
    const images = rand([2, 3, 64, 96], { seed: 3 });
    const t = await teacher.forward(images, { ids: ['a', 'b'] });
    expect(t.clip.grid).toEqual([4, 6]);
    expect(t.clip.features.shape).toEqual([2, 24, 24]);
    expect(t.dense.summary!.shape).toEqual([2, 256]);
    // The targets are the model's own outputs.
    const model = await ERadioModel.load(STUDENT);
    const out = model.forward(images);
    expect(Array.from(await t.clip.features.toArray())).toEqual(Array.from(await out.clip.features.toArray()));
    model.dispose();
  } finally {
    await teacher.close();
  }
  await expect(RadioTeacher.load(STUDENT, { vitdet: { windowSize: 2, numGlobal: 1 } })).rejects.toThrow('is an E-RADIO checkpoint; the ViT options vitdet do not apply');
});
