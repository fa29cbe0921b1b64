// The trainer's checkpoints are ones the reference implementation loads: test/fixtures/radio/trained-student is a
// checkpoint this package's trainer wrote (scripts/fixtures/make_trained_student.js), loaded strictly by RADIO's own
// Hugging Face model class and run by it (scripts/fixtures/reference_load.py wrote io.safetensors). RadioModel must
// compute what the reference computed from it, and the trainer must still write exactly that layout (config.json
// and every tensor's key, dtype and shape), so what the reference loaded is what users get.
import * as fs from 'fs';
import * as path from 'path';

import { createStudent, distill, RadioModel, RadioTeacher, SafetensorsFile, studentSpecFor, SyntheticSource, tensor } from '../../ts';
import type { Device } from '../../ts';
import { readIo } from '../support/radio-fixtures';
import { describeEachDevice, poisonOutputs, relativeError } from '../support/reference';
import { TEACHER_DIR, teacherConfig, tempDir } from './support';

poisonOutputs();

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'radio', 'trained-student');

describeEachDevice('a trainer-written checkpoint, as the reference loaded and ran it, on %s', (device: Device) => {
  test('every head matches the reference outputs (f32)', async () => {
    const io = await readIo(path.join(FIXTURE, 'io.safetensors'));
    const images = io.get('images')!;
    const model = await RadioModel.load(FIXTURE, { device });
    const out = model.forward(tensor(images.data, images.shape, { device }));
    const heads = [...io.keys()].filter((k) => k.endsWith('.features')).map((k) => k.slice(0, -'.features'.length));
    expect(heads.sort()).toEqual(Object.keys(out).sort());
    for (const h of heads)
      for (const part of ['summary', 'features'] as const) {
        const err = relativeError(await out[h][part].toArray(), io.get(`${h}.${part}`)!.data);
        expect({ what: `${h}.${part}`, err, ok: err <= 1e-4 }).toMatchObject({ ok: true });
      }
    model.dispose();
  });
});

describe('the trainer writes the layout the reference loaded (cpu)', () => {
  test('config.json and every tensor key, dtype and shape equal the fixture', async () => {
    const work = tempDir('reference-load');
    const teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
    await createStudent(path.join(work, 'student'), studentSpecFor(teacherConfig(), { embedDim: 64, depth: 2, heads: 2 }), { seed: 1 });
    const run = await distill({
      student: { dir: path.join(work, 'student') },
      teachers: [{ teacher }],
      data: new SyntheticSource({ seed: 3, partitions: [{ height: 64, width: 64, batch: 4 }] }),
      steps: 3,
      optimizer: { lr: 3e-3 },
      outDir: path.join(work, 'run'),
      progress: false,
    });
    const read = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(read(run.checkpoint!)).toEqual(read(FIXTURE));
    const layout = async (dir: string) => {
      const f = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
      try {
        return Object.fromEntries(f.keys().map((k) => [k, { dtype: f.entry(k).dtype, shape: f.entry(k).shape }]));
      } finally {
        await f.close();
      }
    };
    expect(await layout(run.checkpoint!)).toEqual(await layout(FIXTURE));
    run.student.dispose();
    await teacher.close();
    fs.rmSync(work, { recursive: true, force: true });
  });
});
