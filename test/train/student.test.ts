// createStudent writes what the reference implementation writes: for the embedded checkpoint's architecture, the
// same safetensors keys, dtypes and shapes and the same config.json fields, with timm's / torch's initialisation.
import * as fs from 'fs';
import * as path from 'path';

import { createStudent, RadioModel, SafetensorsFile, studentSpecFor } from '../../ts';
import { parseRadioConfig } from '../../ts/model/config';
import { teacherConfig, TEACHER_DIR, tempDir } from './support';

test("a student of an upsampling teacher head learns the head's channels, not its pre-shuffle width", () => {
  const teacher = parseRadioConfig(JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'radio', 'vit-upsample2', 'config.json'), 'utf8')), 'teacher');
  const spec = studentSpecFor(teacher, { embedDim: 32, depth: 1, heads: 1 });
  // clip: output_dim 96 with upsample_factor 2 is 24 channels on the 2x finer grid; dino_v2 does not upsample.
  expect(spec.adaptors.map((a) => [a.name, a.featureDim])).toEqual([['clip', 24], ['dino_v2', 16]]);
});

test('a student of the teacher architecture has the reference checkpoint layout and config fields', async () => {
  const dir = path.join(tempDir('student'), 's');
  await createStudent(dir, studentSpecFor(teacherConfig(), { embedDim: 64, depth: 4, heads: 2 }), { seed: 7 });
  const [mine, ref] = await Promise.all([dir, TEACHER_DIR].map((d) => SafetensorsFile.open(path.join(d, 'model.safetensors'))));
  const layout = (f: SafetensorsFile) => f.keys().map((k) => `${k} ${f.entry(k).dtype} [${f.entry(k).shape}]`).sort();
  expect(layout(mine)).toEqual(layout(ref));
  expect((await mine.readInts('radio_model.summary_idxs')).data).toEqual((await ref.readInts('radio_model.summary_idxs')).data);
  const stats = async (k: string) => {
    const { data } = await mine.readFloat(`radio_model.${k}`);
    const mean = data.reduce((s, v) => s + v, 0) / data.length;
    return { mean, std: Math.sqrt(data.reduce((s, v) => s + (v - mean) ** 2, 0) / data.length) };
  };
  const qkv = await stats('model.blocks.1.attn.qkv.weight');
  expect(Math.abs(qkv.std - 0.02)).toBeLessThan(0.001);
  expect(await stats('model.blocks.1.norm1.weight')).toEqual({ mean: 1, std: 0 });
  expect(await stats('model.blocks.1.attn.qkv.bias')).toEqual({ mean: 0, std: 0 });
  // torch's Linear default: uniform in ±1/√fan_in, std 1/√(3·fan_in).
  const fc1 = await stats('adaptors.clip.feat_mlp.fc1.weight');
  expect(Math.abs(fc1.std - 1 / Math.sqrt(3 * 64)) / fc1.std).toBeLessThan(0.05);
  await Promise.all([mine.close(), ref.close()]);
  const fields = (o: Record<string, unknown>) => Object.keys(o).sort();
  const [cm, cr] = [dir, TEACHER_DIR].map((d) => JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')));
  expect(fields(cm)).toEqual(fields(cr));
  expect(fields(cm.args)).toEqual(expect.arrayContaining(fields(cr.args)));
  expect(cm.adaptor_configs).toEqual(cr.adaptor_configs);
  const model = await RadioModel.load(dir);
  expect(model.config.adaptors.map((a) => a.useSummary)).toEqual([true, true, false]);
  model.dispose();
  // The same seed writes the same weights; another seed others.
  const again = path.join(path.dirname(dir), 'again');
  await createStudent(again, studentSpecFor(teacherConfig(), { embedDim: 64, depth: 4, heads: 2 }), { seed: 7 });
  expect(fs.readFileSync(path.join(again, 'model.safetensors')).equals(fs.readFileSync(path.join(dir, 'model.safetensors')))).toBe(true);
  await createStudent(again, studentSpecFor(teacherConfig(), { embedDim: 64, depth: 4, heads: 2 }), { seed: 8 });
  expect(fs.readFileSync(path.join(again, 'model.safetensors')).equals(fs.readFileSync(path.join(dir, 'model.safetensors')))).toBe(false);
  await expect(createStudent(again, { embedDim: 64, depth: 1, heads: 2, adaptors: [{ name: 'backbone', summaryDim: 8, featureDim: 8 }] })).rejects.toThrow(/adaptors\[0\]\.name 'backbone' is reserved/);
});
