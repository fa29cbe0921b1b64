// End-to-end distillation on cpu: a tiny random-init student (D 64, depth 2) learns the embedded RADIO checkpoint's
// three adaptor heads from synthetic images; a NaN from a teacher skips exactly that step; bf16 trains from f32
// masters.
import * as fs from 'fs';
import * as path from 'path';
import { Writable } from 'stream';

import { distill, ops, RadioModel, RadioTeacher, readMetrics, SafetensorsFile, SyntheticSource, tensor } from '../../ts';
import { mixSeed } from '../../ts/train/rng';
import type { Device, StepMetrics, Teacher, TeacherBatch, TeacherTargets } from '../../ts';
import { testDevices } from '../support/reference';
import { differingKeys, makeStudent, TEACHER_DIR, tempDir, weightsOf } from './support';

let teacher: RadioTeacher;
beforeAll(async () => {
  teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
});
afterAll(() => teacher.close());

/** Passes the wrapped teacher's targets through, except on its `poisonCall`-th forward, where the clip features are NaN. */
class PoisoningTeacher implements Teacher {
  calls = 0;
  constructor(private readonly inner: Teacher, private readonly poisonCall: number) {}
  get name() { return this.inner.name; }
  get inputSize() { return this.inner.inputSize; }
  get needsImages() { return this.inner.needsImages; }
  get heads() { return this.inner.heads; }
  async forward(images: Parameters<Teacher['forward']>[0], batch: TeacherBatch): Promise<TeacherTargets> {
    const out = await this.inner.forward(images, batch);
    if (this.calls++ === this.poisonCall) {
      const f = out.clip.features;
      const values = await f.toArray();
      values[5] = NaN;
      out.clip.features = tensor(values, f.shape, { device: f.device });
      f.dispose();
    }
    return out;
  }
  async close() {}
}

test('cpu: the loss falls by more than half; metrics JSONL, loss SVG and a loadable checkpoint are written', async () => {
  const dir = tempDir('distill');
  const t0 = Date.now();
  const progress: string[] = [];
  const r = await distill({
    student: { dir: await makeStudent(path.join(dir, 'student')) },
    teachers: [{ teacher, heads: { clip: {}, dino_v2: {}, sam: { featureWeight: 2 } } }],
    data: new SyntheticSource({ seed: 3, partitions: [{ height: 64, width: 64, batch: 8 }] }),
    steps: 40,
    optimizer: { lr: 3e-3, weightDecay: 0.02 },
    schedule: { warmupSteps: 5 },
    maxGradNorm: 5,
    outDir: path.join(dir, 'run'),
    progress: { stream: Object.assign(new Writable({ write: (c: Buffer, _e: string, cb: () => void) => (progress.push(String(c)), cb()) }), { isTTY: false }), every: 10 },
  });
  const seconds = (Date.now() - t0) / 1000;
  const first = r.history[0].loss;
  const last = r.history.slice(-5).reduce((s, m) => s + m.loss, 0) / 5;
  console.log(`distill e2e: loss ${first.toFixed(4)} -> ${last.toFixed(4)} (mean of the last 5 steps) in ${seconds.toFixed(1)} s`);
  expect(last).toBeLessThan(0.5 * first);
  expect(r.skipped).toBe(0);
  // The weighted total is Σ λ·Ls + γ·Lf over the terms, with sam's features weighted 2 and no sam summary.
  const m = r.history[0];
  expect(Object.keys(m.terms).sort()).toEqual(['radio.clip.features', 'radio.clip.summary', 'radio.dino_v2.features', 'radio.dino_v2.summary', 'radio.sam.features']);
  const sum = Object.entries(m.terms).reduce((s, [k, v]) => s + (k === 'radio.sam.features' ? 2 * v : v), 0);
  expect(Math.abs(m.loss - sum) / sum).toBeLessThan(1e-5);
  // lr follows the schedule: warm-up to 3e-3 at step 5, then cosine down.
  expect(r.history[4].lr).toBeCloseTo(3e-3, 12);
  expect(r.history[0].lr).toBeCloseTo(6e-4, 12);
  const metrics = readMetrics(path.join(dir, 'run', 'metrics.jsonl'));
  expect(metrics.map((x) => x.step)).toEqual(r.history.map((x) => x.step));
  expect(metrics.map((x) => x.loss)).toEqual(r.history.map((x) => x.loss));
  const svg = fs.readFileSync(path.join(dir, 'run', 'loss.svg'), 'utf8');
  expect(svg.match(/<polyline /g)?.length).toBe(6);
  expect(svg).toContain('radio.sam.features');
  const lines = progress.join('').trim().split('\n');
  expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['step 1/40', 'step 10/40', 'step 20/40', 'step 30/40', 'step 40/40', 'checkpoint at']);
  expect(lines[0]).toMatch(/img\/s {2}ETA \S+ {2}lr 6\.00e-4 {2}loss \d\.\d{4} .*radio\.clip\.summary/);
  expect(r.checkpoint).toBe(path.join(dir, 'run', 'checkpoints', 'step-00000040'));
  // The saved student is the trained one, readable as a RADIO checkpoint.
  const saved = await RadioModel.load(r.checkpoint!);
  expect(differingKeys(await weightsOf(saved), await weightsOf(r.student))).toEqual([]);
  saved.dispose();
  r.student.dispose();
});

test('a NaN in a teacher target skips that step: counted, reported, weights and optimizer state unchanged', async () => {
  const dir = tempDir('nan');
  const messages: string[] = [];
  const stream = Object.assign(new Writable({ write: (c: Buffer, _e: string, cb: () => void) => (messages.push(String(c)), cb()) }), { isTTY: false });
  const snapshots: Array<{ m: StepMetrics; weights: Map<string, Float32Array>; state: Map<string, Float32Array>; adamSteps: number[] }> = [];
  const r = await distill({
    student: { dir: await makeStudent(path.join(dir, 'student')) },
    teachers: [{ teacher: new PoisoningTeacher(teacher, 2) }],
    data: new SyntheticSource({ seed: 4, partitions: [{ height: 32, width: 48, batch: 4 }] }),
    steps: 5,
    optimizer: { lr: 1e-3 },
    outDir: path.join(dir, 'run'),
    progress: { stream, every: 1 },
    onStep: async (m, { student, optimizer }) => {
      const state = new Map<string, Float32Array>();
      for (const g of optimizer.groups)
        for (const [i, s] of g.optimizer.stateTensors().entries()) {
          if (!s) continue;
          state.set(`${g.keys[i]}.m`, await s.m.toArray());
          state.set(`${g.keys[i]}.v`, await s.v.toArray());
        }
      snapshots.push({ m, weights: await weightsOf(student), state, adamSteps: optimizer.groups.map((g) => g.optimizer.steps) });
    },
  });
  expect(r.skipped).toBe(1);
  expect(snapshots.map((s) => s.m.skipped)).toEqual([false, false, true, false, false]);
  expect(snapshots[2].m.loss).toBeNaN();
  // Step 3 changed nothing; the steps around it did change the weights.
  expect(differingKeys(snapshots[2].weights, snapshots[1].weights)).toEqual([]);
  expect(differingKeys(snapshots[2].state, snapshots[1].state)).toEqual([]);
  expect(snapshots[2].adamSteps).toEqual(snapshots[1].adamSteps);
  expect(differingKeys(snapshots[3].weights, snapshots[2].weights).length).toBeGreaterThan(50);
  expect(differingKeys(snapshots[1].weights, snapshots[0].weights).length).toBeGreaterThan(50);
  expect(snapshots[4].adamSteps).toEqual([4, 4]);
  expect(Number.isFinite(snapshots[3].m.loss)).toBe(true);
  expect(messages.join('')).toMatch(/step 3: skipped \(loss NaN, gradient norm NaN\); weights and optimizer state unchanged/);
  const metrics = readMetrics(path.join(dir, 'run', 'metrics.jsonl'));
  expect(metrics.map((m) => m.skipped)).toEqual([false, false, true, false, false]);
  expect(metrics[2].loss).toBeNaN();
  r.student.dispose();
});

test('bf16 student: trains from f32 masters, and the checkpoint holds the masters as F32', async () => {
  const dir = tempDir('bf16');
  const r = await distill({
    student: { dir: await makeStudent(path.join(dir, 'student')), dtype: 'bf16' },
    teachers: [{ teacher }],
    data: new SyntheticSource({ seed: 5, partitions: [{ height: 64, width: 64, batch: 4 }] }),
    steps: 12,
    optimizer: { lr: 3e-3 },
    outDir: path.join(dir, 'run'),
    progress: false,
  });
  expect(r.history[11].loss).toBeLessThan(0.7 * r.history[0].loss);
  const g = r.optimizer.groups[0];
  const masters = g.optimizer.stateTensors();
  expect(masters.every((s) => s?.master?.dtype === 'f32')).toBe(true);
  const file = await SafetensorsFile.open(path.join(r.checkpoint!, 'model.safetensors'));
  const key = g.keys[0];
  expect(file.entry(key).dtype).toBe('F32');
  expect((await file.readFloat(key)).data).toEqual(await masters[0]!.master!.toArray());
  await file.close();
  r.student.dispose();
});

// sim runs the CUDA kernels' sources on the CPU (cuda itself where a GPU exists): the same run must follow cpu.
describe.each(testDevices().filter((d) => d !== 'cpu'))('%s: three steps follow cpu', (device) => {
  test('loss curve, gradient norms and weights within f32 tolerance of the cpu run', async () => {
    const dir = tempDir(`device-${device}`);
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const run = async (d: Device) => {
      const t = await RadioTeacher.load(TEACHER_DIR, { name: 'radio', device: d });
      const r = await distill({
        student: { dir: studentDir, device: d },
        teachers: [{ teacher: t }],
        data: new SyntheticSource({ seed: 1, partitions: [{ height: 32, width: 32, batch: 2 }] }),
        steps: 3,
        accumulate: 2,
        maxGradNorm: 1,
        progress: false,
      });
      await t.close();
      return r;
    };
    const [ref, dev] = [await run('cpu'), await run(device)];
    for (const [i, m] of dev.history.entries()) {
      expect(Math.abs(m.loss - ref.history[i].loss) / ref.history[i].loss).toBeLessThan(1e-5);
      expect(Math.abs(m.gradNorm - ref.history[i].gradNorm) / ref.history[i].gradNorm).toBeLessThan(1e-4);
    }
    const [a, b] = [await weightsOf(dev.student), await weightsOf(ref.student)];
    let num = 0;
    let den = 0;
    for (const [k, x] of b) {
      const y = a.get(k)!;
      for (let j = 0; j < x.length; j++) {
        num += (x[j] - y[j]) ** 2;
        den += x[j] ** 2;
      }
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-4);
    for (const r of [ref, dev]) r.student.dispose();
  });
});

test('gradient accumulation: the step uses the mean of the micro-batch gradients (checked by replaying them by hand)', async () => {
  const dir = tempDir('accumulate');
  const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
  const data = () => new SyntheticSource({ seed: 8, partitions: [{ height: 32, width: 48, batch: 2 }] });
  const r = await distill({ student: { dir: studentDir }, teachers: [{ teacher }], data: data(), steps: 1, accumulate: 3, seed: 4, progress: false });
  // By hand: the same batches, the same crop seeds, each micro-batch's loss backward unscaled, then averaged.
  const model = (await RadioModel.load(studentDir)).train();
  const source = data();
  const sums = new Map<string, Float64Array>();
  const losses: number[] = [];
  for (let micro = 0; micro < 3; micro++) {
    const b = await source.next();
    const images = tensor(b.images, [b.batch, 3, b.height, b.width]);
    const t = await teacher.forward(images, b);
    model.seed(mixSeed(4, 0, micro));
    const out = model.forward(images);
    const { total } = ops.multiTeacherLoss(
      (['clip', 'dino_v2', 'sam'] as const).map((h) => ({
        student: { features: out[h].features, grid: [2, 3] as [number, number], ...(h === 'sam' ? {} : { summary: out[h].summary }) },
        teacher: { features: t[h].features, grid: t[h].grid, ...(h === 'sam' ? {} : { summary: t[h].summary }) },
      })),
    );
    total.backward();
    losses.push(await total.item());
    for (const [k, p] of model.namedParameters()) {
      if (!p.grad) continue;
      const g = await p.grad.toArray();
      const acc = sums.get(k) ?? new Float64Array(g.length);
      g.forEach((v, i) => (acc[i] += v));
      sums.set(k, acc);
      p.zeroGrad();
    }
  }
  let sq = 0;
  for (const acc of sums.values()) for (const v of acc) sq += (v / 3) ** 2;
  const mean = losses.reduce((s, v) => s + v, 0) / 3;
  expect(Math.abs(r.history[0].loss - mean) / mean).toBeLessThan(1e-6);
  expect(Math.abs(r.history[0].gradNorm - Math.sqrt(sq)) / Math.sqrt(sq)).toBeLessThan(1e-5);
  model.dispose();
  r.student.dispose();
});
