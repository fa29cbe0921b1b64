// Distillation from Hugging Face teachers in the trainer's process: a tiny student learns a DINOv2 and a CLIP
// encoder (test/fixtures/teachers, their outputs checked against the original implementations in
// test/teachers/hf-teachers.test.ts) from synthetic images, through the API and through `am-radio teach` / an "hf"
// teacher entry of a config.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { createStudent, distill, HfTeacher, ShardTeacher, SyntheticSource } from '../../ts';
import { writeDataset } from '../data/helpers';
import { REGISTER, tempDir } from './support';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'teachers');
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli.js');

/** A student with one adaptor per teacher head, at the teachers' widths. */
async function student(dir: string): Promise<string> {
  await createStudent(dir, {
    embedDim: 64, depth: 2, heads: 2,
    adaptors: [{ name: 'dino_v2', summaryDim: 48, featureDim: 48 }, { name: 'clip', summaryDim: 40, featureDim: 64 }],
  }, { seed: 5 });
  return dir;
}

test('cpu: a student distils a DINOv2 and a CLIP teacher; the loss falls by more than half', async () => {
  const dir = tempDir('hf-distill');
  const dino = await HfTeacher.load(path.join(FIXTURES, 'dinov2-small'));
  const clip = await HfTeacher.load(path.join(FIXTURES, 'clip-vit'), { inputSize: [70, 70] });
  try {
    const r = await distill({
      student: { dir: await student(path.join(dir, 'student')) },
      teachers: [{ teacher: dino }, { teacher: clip }],
      data: new SyntheticSource({ seed: 4, partitions: [{ height: 64, width: 64, batch: 8 }] }),
      steps: 40,
      optimizer: { lr: 3e-3, weightDecay: 0.02 },
      schedule: { warmupSteps: 5 },
      maxGradNorm: 5,
      outDir: path.join(dir, 'run'),
      progress: false,
    });
    const first = r.history[0].loss;
    const last = r.history.slice(-5).reduce((s, m) => s + m.loss, 0) / 5;
    console.log(`hf teachers distill: loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
    expect(Object.keys(r.history[0].terms).sort()).toEqual(['clip.clip.features', 'clip.clip.summary', 'dino_v2.dino_v2.features', 'dino_v2.dino_v2.summary']);
    expect(r.skipped).toBe(0);
    expect(last).toBeLessThan(0.5 * first);
  } finally {
    await dino.close();
    await clip.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: an "hf" teacher in a teach config writes shards; a bad field is named', async () => {
  const dir = tempDir('hf-teach');
  try {
    const config = {
      teacher: { type: 'hf', dir: path.join(FIXTURES, 'siglip-vit'), inputSize: [64, 64], dtype: 'bf16' },
      data: { type: 'synthetic', seed: 2, images: 4, partitions: [{ height: 32, width: 32, batch: 2 }] },
      images: 4,
      output: 'shards',
    };
    fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify(config));
    const run = () => spawnSync(process.execPath, ['-r', REGISTER, CLI, 'teach', path.join(dir, 'teach.json')], { encoding: 'utf8', timeout: 120_000 });
    const r = run();
    expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stderr).toMatch(/teach siglip: 4\/4 images/);
    const shards = await ShardTeacher.open(path.join(dir, 'shards'));
    expect(shards.images).toBe(4);
    expect(shards.heads).toEqual({ siglip: { summaryDim: 64, featureDim: 64 } });
    await shards.close();
    fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify({ ...config, teacher: { ...config.teacher, dtype: 'f16' } }));
    const bad = run();
    expect({ status: bad.status, stderr: bad.stderr }).toEqual({ status: 1, stderr: 'config.teacher.dtype must be "f32" or "bf16", got "f16"\n' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: am-radio teach --teacher name=DIR --images DIR --out DIR runs one pass over a folder; bad flags are usage errors', async () => {
  const dir = tempDir('hf-teach-flags');
  try {
    const images = path.join(dir, 'images');
    fs.mkdirSync(images);
    await writeDataset(images, 5);
    const run = (...args: string[]) => spawnSync(process.execPath, ['-r', REGISTER, CLI, 'teach', ...args], { encoding: 'utf8', timeout: 120_000 });
    const r = run('--teacher', `dino=${path.join(FIXTURES, 'dinov2-small')}`, '--images', images, '--out', path.join(dir, 'shards'), '--batch', '2');
    expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stderr).toMatch(/teach dino: 5\/5 images/);
    const shards = await ShardTeacher.open(path.join(dir, 'shards'));
    expect(shards.images).toBe(5);
    expect(shards.heads).toEqual({ dino: { summaryDim: 48, featureDim: 48 } });
    await shards.close();
    const bad = run('--teacher', `radio=${path.join(__dirname, '..', 'fixtures', 'radio', 'vit-b16-v2heads')}`, '--images', images, '--out', path.join(dir, 'x'));
    expect({ status: bad.status, stderr: bad.stderr.split('\n')[0] }).toEqual({ status: 2, stderr: expect.stringContaining('teach: --size HxW is required for a RADIO teacher') });
    const unknown = run('--teacher', 'a=b', '--colour', 'red');
    expect({ status: unknown.status, stderr: unknown.stderr.split('\n')[0] }).toEqual({ status: 2, stderr: expect.stringContaining('teach: unknown option --colour') });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
