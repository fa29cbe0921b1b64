// Checkpoints: N steps, save, resume, N steps equals 2N steps bit for bit (weights, optimizer state, every loss
// value); a process killed in the middle of a save leaves the previous checkpoint complete, pointed to and
// loadable, and a resumed run cleans up after it.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { distill, latestCheckpoint, RadioModel, RadioTeacher, readMetrics, SafetensorsFile, SyntheticSource } from '../../ts';
import type { DistillOptions, DistillResult } from '../../ts';
import { differingKeys, makeStudent, TEACHER_DIR, tempDir, weightsOf } from './support';

let teacher: RadioTeacher;
let teacher64: RadioTeacher;
beforeAll(async () => {
  teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
  // A second teacher at its own input size (the batch is resized to it on the device), on partition 0 only.
  teacher64 = await RadioTeacher.load(TEACHER_DIR, { name: 'radio64', inputSize: [64, 64], heads: { clip: 'clip' } });
});
afterAll(async () => {
  await teacher.close();
  await teacher64.close();
});

const options = (studentDir: string, outDir?: string): DistillOptions => ({
  student: { dir: studentDir },
  teachers: [{ teacher }, { teacher: teacher64, partitions: [0], featureWeight: 0.5 }],
  data: new SyntheticSource({ seed: 11, partitions: [{ height: 32, width: 32, batch: 4 }, { height: 48, width: 32, batch: 2, weight: 0.5 }] }),
  steps: 6,
  optimizer: { lr: 2e-3, weightDecay: 0.05 },
  schedule: { warmupSteps: 2, minLr: 1e-5 },
  accumulate: 2,
  maxGradNorm: 0.5,
  seed: 5,
  outDir,
  progress: false,
});

async function optimizerState(r: DistillResult): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const g of r.optimizer.groups)
    for (const [i, s] of g.optimizer.stateTensors().entries()) {
      out.set(`${g.keys[i]}.m`, await s!.m.toArray());
      out.set(`${g.keys[i]}.v`, await s!.v.toArray());
    }
  return out;
}

test('3 steps + checkpoint + resume + 3 steps equals 6 steps exactly (two partitions, two teachers, accumulation, clipping)', async () => {
  const dir = tempDir('resume');
  const studentDir = await makeStudent(path.join(dir, 'student'), { seed: 2 });
  const whole = await distill(options(studentDir));
  const firstHalf = await distill({ ...options(studentDir, path.join(dir, 'run')), stopAfter: 3 });
  expect(firstHalf.step).toBe(3);
  firstHalf.student.dispose();
  const secondHalf = await distill({ ...options(studentDir, path.join(dir, 'run')), resume: true });
  expect(secondHalf.resumedFrom).toBe(path.join(dir, 'run', 'checkpoints', 'step-00000003'));
  expect(secondHalf.history.map((m) => m.step)).toEqual([4, 5, 6]);
  const curve = (ms: Array<{ loss: number; terms: Record<string, number>; gradNorm: number; lr: number }>) => ms.map((m) => ({ loss: m.loss, terms: m.terms, gradNorm: m.gradNorm, lr: m.lr }));
  const resumed = [...firstHalf.history, ...secondHalf.history];
  expect(curve(resumed)).toEqual(curve(whole.history));
  // Both partitions were drawn, and the 64 px teacher trained only on partition 0's batches.
  expect(whole.history.some((m) => 'radio64.clip.features' in m.terms)).toBe(true);
  const drawn = options(studentDir).data;
  const parts = new Set(await Promise.all(Array.from({ length: 12 }, () => drawn.next().then((b) => b.partition))));
  expect([...parts].sort()).toEqual([0, 1]);
  expect(whole.history.every((m) => Number.isFinite(m.loss) && !m.skipped)).toBe(true);
  expect(whole.history.filter((m) => m.gradNorm > 0.5).length).toBeGreaterThan(0);
  expect(differingKeys(await weightsOf(secondHalf.student), await weightsOf(whole.student))).toEqual([]);
  expect(differingKeys(await optimizerState(secondHalf), await optimizerState(whole))).toEqual([]);
  expect(secondHalf.optimizer.steps).toBe(whole.optimizer.steps);
  // The metrics file holds the whole curve once.
  expect(readMetrics(path.join(dir, 'run', 'metrics.jsonl')).map((m) => m.loss)).toEqual(whole.history.map((m) => m.loss));
  // The saved checkpoint is the trained student, in the source's layout: same keys, same config.json.
  const saved = await RadioModel.load(secondHalf.checkpoint!);
  expect(differingKeys(await weightsOf(saved), await weightsOf(whole.student))).toEqual([]);
  saved.dispose();
  const [src, out] = await Promise.all([studentDir, secondHalf.checkpoint!].map((d) => SafetensorsFile.open(path.join(d, 'model.safetensors'))));
  expect(out.keys().sort()).toEqual(src.keys().sort());
  expect(out.keys().map((k) => [k, out.entry(k).dtype, out.entry(k).shape])).toEqual(out.keys().map((k) => [k, src.entry(k).dtype, src.entry(k).shape]));
  await Promise.all([src.close(), out.close()]);
  expect(fs.readFileSync(path.join(secondHalf.checkpoint!, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(studentDir, 'config.json'), 'utf8'));
  // Only the newest two checkpoints are kept.
  expect(fs.readdirSync(path.join(dir, 'run', 'checkpoints')).sort()).toEqual(['latest', 'step-00000003', 'step-00000006']);
  // A fresh run into the same folder would mix two runs' checkpoints: refused, the folder untouched.
  await expect(distill(options(studentDir, path.join(dir, 'run')))).rejects.toThrow(/run already holds checkpoints \(latest .*step-00000006\); pass resume to continue that run/);
  expect(readMetrics(path.join(dir, 'run', 'metrics.jsonl')).length).toBe(6);
  for (const r of [whole, secondHalf]) r.student.dispose();
});

test('SIGKILL during a checkpoint save leaves the previous checkpoint loadable; resuming continues from it and cleans up', async () => {
  const dir = tempDir('kill');
  const studentDir = await makeStudent(path.join(dir, 'student'), { seed: 3 });
  const outDir = path.join(dir, 'run');
  const child = spawn(process.execPath, [path.join(__dirname, 'children', 'save-kill.js'), studentDir, outDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const t0 = Date.now();
  while (!out.includes('paused')) {
    if (child.exitCode !== null || Date.now() - t0 > 60_000) throw new Error(`the child did not pause: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const root = path.join(outDir, 'checkpoints');
  // Midway: the step-4 weights are in the temporary folder, the pointer still names step 2.
  const tmp = fs.readdirSync(root).find((n) => n.startsWith('step-00000004.tmp-'));
  expect(tmp).toBeDefined();
  expect(fs.existsSync(path.join(root, tmp!, 'model.safetensors'))).toBe(true);
  child.kill('SIGKILL');
  expect(await exited).toEqual({ code: null, signal: 'SIGKILL' });
  expect(err).toBe('');
  const latest = await latestCheckpoint(root);
  expect(latest).toBe(path.join(root, 'step-00000002'));
  const model = await RadioModel.load(latest!);
  expect(model.config.depth).toBe(2);
  model.dispose();
  const r = await distill({
    student: { dir: studentDir },
    teachers: [{ teacher }],
    data: new SyntheticSource({ seed: 9, partitions: [{ height: 32, width: 32, batch: 2 }] }),
    steps: 4,
    outDir,
    resume: true,
    progress: false,
  });
  expect(r.resumedFrom).toBe(latest);
  expect(r.history.map((m) => m.step)).toEqual([3, 4]);
  expect(fs.readdirSync(root).sort()).toEqual(['latest', 'step-00000002', 'step-00000004']);
  r.student.dispose();
});
