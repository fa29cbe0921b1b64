// Distillation from Hugging Face teachers in the trainer's process: a tiny student learns a DINOv2 and a CLIP
// encoder, and a SigLIP2 NaFlex one (test/fixtures/teachers, their outputs checked against the original
// implementations in test/teachers/hf-teachers.test.ts and siglip2-naflex.test.ts) from synthetic images, through the API and through `am-radio teach` / an "hf"
// teacher entry of a config.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { createStudent, distill, HfTeacher, ShardTeacher, SyntheticSource } from '../../ts';
import type { Teacher } from '../../ts';
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

/**
 * 40 steps of distillation from the teachers on synthetic images of one size, with the terms of the first step,
 * its loss and the mean of the last five.
 */
async function distilBriefly(dir: string, teachers: Teacher[], partition: { height: number; width: number }, seed: number) {
  const r = await distill({
    student: { dir },
    teachers: teachers.map((teacher) => ({ teacher })),
    data: new SyntheticSource({ seed, partitions: [{ ...partition, batch: 8 }] }),
    steps: 40,
    optimizer: { lr: 3e-3, weightDecay: 0.02 },
    schedule: { warmupSteps: 5 },
    maxGradNorm: 5,
    outDir: path.join(path.dirname(dir), 'run'),
    progress: false,
  });
  expect(r.skipped).toBe(0);
  return { terms: Object.keys(r.history[0].terms).sort(), first: r.history[0].loss, last: r.history.slice(-5).reduce((s, m) => s + m.loss, 0) / 5 };
}

test('cpu: a student distils a DINOv2 and a CLIP teacher; the loss falls by more than half', async () => {
  const dir = tempDir('hf-distill');
  const dino = await HfTeacher.load(path.join(FIXTURES, 'dinov2-small'));
  const clip = await HfTeacher.load(path.join(FIXTURES, 'clip-vit'), { inputSize: [70, 70] });
  try {
    const { terms, first, last } = await distilBriefly(await student(path.join(dir, 'student')), [dino, clip], { height: 64, width: 64 }, 4);
    console.log(`hf teachers distill: loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
    expect(terms).toEqual(['clip.clip.features', 'clip.clip.summary', 'dino_v2.dino_v2.features', 'dino_v2.dino_v2.summary']);
    expect(last).toBeLessThan(0.5 * first);
  } finally {
    await dino.close();
    await clip.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('cpu: a student distils a SigLIP2 NaFlex teacher on its own (aspect-kept) grid; the loss falls by more than half', async () => {
  const dir = tempDir('hf-distill-naflex');
  // 64x96 images with a budget of 6 patches: the teacher resizes each batch to 32x48 (a 2x3 grid), the student
  // sees 4x6; the loss aligns the two grids.
  const teacher = await HfTeacher.load(path.join(FIXTURES, 'siglip2-naflex'), { maxNumPatches: 6 });
  try {
    const studentDir = path.join(dir, 'student');
    await createStudent(studentDir, { embedDim: 64, depth: 2, heads: 2, adaptors: [{ name: 'siglip2', summaryDim: 64, featureDim: 64 }] }, { seed: 6 });
    const { terms, first, last } = await distilBriefly(studentDir, [teacher], { height: 64, width: 96 }, 7);
    console.log(`siglip2 naflex teacher distill: loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
    expect(terms).toEqual(['siglip2.siglip2.features', 'siglip2.siglip2.summary']);
    expect(last).toBeLessThan(0.5 * first);
  } finally {
    await teacher.close();
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
    // A SigLIP2 NaFlex entry takes its patch budget (the student's 32x32 images, resized to fit 2 patches: 1x1).
    const naflex = { ...config, teacher: { type: 'hf', dir: path.join(FIXTURES, 'siglip2-naflex'), maxNumPatches: 2 }, output: 'naflex' };
    fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify(naflex));
    const ok = run();
    expect({ status: ok.status, stderr: ok.status === 0 ? '' : ok.stderr }).toEqual({ status: 0, stderr: '' });
    const targets = await ShardTeacher.open(path.join(dir, 'naflex'));
    expect(targets.heads).toEqual({ siglip2: { summaryDim: 64, featureDim: 64 } });
    await targets.close();
    fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify({ ...naflex, teacher: { ...naflex.teacher, maxNumPatches: 0 } }));
    const zero = run();
    expect({ status: zero.status, stderr: zero.stderr }).toEqual({ status: 1, stderr: 'config.teacher.maxNumPatches must be an integer > 0, got 0\n' });
    fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify({ ...config, teacher: { ...config.teacher, maxNumPatches: 4 } }));
    const other = run();
    expect({ status: other.status, stderr: other.stderr }).toEqual({ status: 1, stderr: expect.stringContaining('maxNumPatches is for SigLIP2 NaFlex encoders') });
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
