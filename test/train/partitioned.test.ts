// RADIO's rank/teacher partitioning (distill's rankGroups, ts/train/rankgroups.ts): the groups' validation; one
// process emulating two groups against a training loop written out by hand from the weighting's definition; two
// ranks, one per group, against that one process; a partitioned run stopped and resumed on two ranks (bit for bit),
// and the world size changed on resume: two ranks' checkpoint continued by one process, and one process's by two.
import * as fs from 'fs';
import * as path from 'path';

import { checkSchedule, clipGradNorm, distill, GroupedAdamW, latestCheckpoint, learningRate, loadRadio, ops, RadioModel, RadioTeacher, readMetrics, SyntheticSource, tensor } from '../../ts';
import type { DataSource, DistillOptions, ImageBatch, ProcessGroup, RankGroup, StepMetrics, TeacherSpec } from '../../ts';
import { mixSeed } from '../../ts/train/rng';
import { releaseUnrun } from '../../ts/train/teacher-plan';
import type { Teacher } from '../../ts/teachers/types';
import { teacherImages } from '../../ts/teachers/input';
import { byRank, mpi, mpirunNode, title, withMpi } from './mpi';
import { differingKeys, makeStudent, REGISTER, TEACHER_DIR, tempDir, weightDistance, weightsOf } from './support';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SETUP, setupOptions } = require('./children/partitioned.js') as {
  SETUP: { partitions: Array<{ height: number; width: number; batch: number }>; rankGroups: RankGroup[]; teachers: Array<{ heads: string[] }>; seed: number; lr: number; maxGradNorm: number; dataSeed: number };
  setupOptions: (lib: unknown, dir: string, o?: { lazy?: boolean }) => Promise<Omit<DistillOptions, 'student' | 'steps'> & { teachers: TeacherSpec[]; loaded: string[]; close(): Promise<void> }>;
};
const lib = { RadioTeacher, SyntheticSource };

const STEPS = 3;

interface RankOut {
  rank: number;
  losses: number[];
  gradNorms: number[];
  groups: number[][];
  terms: Array<Record<string, number>>;
  images: number[];
  checksum: number;
  checkpoint: string;
  loaded: string[];
  ran: string[];
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function expectCurvesClose(got: { losses: number[]; gradNorms: number[]; groups?: number[][] }, want: { losses: number[]; gradNorms: number[]; groups?: number[][] }) {
  expect(got.losses).toHaveLength(want.losses.length);
  for (let i = 0; i < want.losses.length; i++) {
    expect(relErr(got.losses[i], want.losses[i])).toBeLessThan(1e-5);
    expect(relErr(got.gradNorms[i], want.gradNorms[i])).toBeLessThan(1e-5);
    if (want.groups) want.groups[i].forEach((g, j) => expect(relErr(got.groups![i][j], g)).toBeLessThan(1e-5));
  }
}

const curves = (h: StepMetrics[]) => ({ losses: h.map((m) => m.loss), gradNorms: h.map((m) => m.gradNorm), groups: h.map((m) => m.groups!) });

/**
 * The partitioned step written out from its definition, in one process, without distill: per step, each group's
 * batch of its own partition, its own teacher's heads at its own resolution, the loss backpropagated with weight
 * w_g·B_g / Σ w·B; then the clip, and AdamW with distill's parameter groups and schedule.
 */
async function byHand(studentDir: string, steps: number) {
  const { teachers, close } = await setupOptions(lib, TEACHER_DIR);
  const model = (await loadRadio(studentDir, { seed: SETUP.seed })) as RadioModel;
  model.train();
  const optimizer = new GroupedAdamW(model.namedParameters(), { lr: SETUP.lr, weightDecay: 0.02 });
  const params = optimizer.groups.flatMap((g) => [...g.optimizer.params]);
  const schedule = checkSchedule({ lr: SETUP.lr, totalSteps: steps, warmupSteps: 0, minLr: 0 });
  const source = new SyntheticSource({ seed: SETUP.dataSeed, partitions: SETUP.partitions });
  const weights = SETUP.rankGroups.map((g) => g.weight ?? 1);
  const total = SETUP.rankGroups.reduce((s, g, i) => s + weights[i] * SETUP.partitions[g.partition].batch, 0);
  const out = { losses: [] as number[], gradNorms: [] as number[], groups: [] as number[][] };
  for (let step = 0; step < steps; step++) {
    optimizer.lr = learningRate(step, schedule);
    let loss = 0;
    const groups: number[] = [];
    for (const [g, group] of SETUP.rankGroups.entries()) {
      const b = await source.next(group.partition);
      const images = tensor(b.images, [b.batch, 3, b.height, b.width]);
      const spec = teachers.find((t) => t.partitions!.includes(group.partition))!;
      const input = teacherImages(images, spec.teacher!);
      const targets = await spec.teacher!.forward(input, b);
      model.seed(g === 0 ? mixSeed(SETUP.seed, step, 0) : mixSeed(SETUP.seed, step, 0, 2, g));
      const o = model.forward(images);
      const r = ops.multiTeacherLoss(
        Object.keys(spec.heads!).map((h) => ({
          student: { features: o[h].features, grid: model.featureGrid(h, b.height, b.width), ...(targets[h].summary ? { summary: o[h].summary } : {}) },
          teacher: { features: targets[h].features, grid: targets[h].grid, ...(targets[h].summary ? { summary: targets[h].summary } : {}) },
        })),
      );
      const c = (weights[g] * b.batch) / total;
      r.total.scale(c).backward();
      const v = await r.total.item();
      loss += c * v;
      groups.push(v);
    }
    out.gradNorms.push(await clipGradNorm(params, SETUP.maxGradNorm));
    out.losses.push(loss);
    out.groups.push(groups);
    optimizer.step();
    optimizer.zeroGrad();
  }
  await close();
  return { ...out, model };
}

/**
 * The setup's distill in this process (a world of one: every group emulated here), its teachers given as load:
 * one process runs both groups, so it loads both teachers.
 */
async function emulated(studentDir: string, extra: Partial<DistillOptions> = {}) {
  const { close, loaded, ...setup } = await setupOptions(lib, TEACHER_DIR, { lazy: true });
  const r = await distill({ ...setup, student: { dir: studentDir }, steps: STEPS, ...extra });
  expect(loaded).toEqual(['a', 'b']);
  expect(r.teachers).toEqual(['a', 'b']);
  await close();
  return r;
}

describe('rankGroups', () => {
  const data = () => new SyntheticSource({ partitions: SETUP.partitions });
  const fake = (size: number) => ({ rank: 0, size, localRank: 0, backend: 'mpi' as const, allReduce: (t: never) => t }) as unknown as ProcessGroup;
  const refused = (rankGroups: unknown, size = 1) =>
    distill({ student: { dir: 'unused' }, teachers: [], steps: 1, progress: false, data: data(), rankGroups: rankGroups as RankGroup[], ...(size > 1 ? { distributed: fake(size) } : {}) });

  test.each([
    ['empty', [], /^distill: rankGroups must be a non-empty array of \{ partition, ranks \| size, weight\? \}$/],
    ['unknown partition', [{ partition: 2, size: 1 }, { partition: 1, size: 1 }], /^distill: rankGroups\[0\]\.partition: 2 is not a partition index of the data source \(0\.\.1\)$/],
    ['both ranks and size', [{ partition: 0, size: 1, ranks: [0] }, { partition: 1, size: 1 }], /^distill: rankGroups\[0\] needs exactly one of ranks \(a list of ranks\) and size/],
    ['neither ranks nor size', [{ partition: 0 }, { partition: 1, size: 1 }], /^distill: rankGroups\[0\] needs exactly one of ranks/],
    ['a bad weight', [{ partition: 0, size: 1, weight: 0 }, { partition: 1, size: 1 }], /^distill: rankGroups\[0\]\.weight must be a finite number > 0, got 0$/],
    ['overlapping groups', [{ partition: 0, ranks: [0, 1] }, { partition: 1, ranks: [1] }], /^distill: rankGroups: rank 1 is in rankGroups\[0\] and rankGroups\[1\] \(a rank belongs to one group\)$/],
    ['ranks that leave a gap', [{ partition: 0, ranks: [0] }, { partition: 1, ranks: [2] }], /^distill: rankGroups: the groups hold 2 ranks but rank 1 is in none \(they must be ranks 0\.\.1, each once\)$/],
    ['a batch the group cannot share', [{ partition: 0, size: 3 }, { partition: 1, size: 1 }], /^distill: rankGroups\[0\]: data partition 0's batch 4 is not divisible by the group's 3 ranks/],
    ['a partition in no group', [{ partition: 0, size: 1 }], /^distill: rankGroups: data partition 1 is in no group \(its batches would never be drawn\)$/],
  ])('%s is refused', async (_name, groups, message) => {
    await expect(refused(groups)).rejects.toThrow(message);
  });

  test('a world that is neither the groups\' ranks nor one process is refused', async () => {
    await expect(refused(SETUP.rankGroups, 3)).rejects.toThrow(/^distill: rankGroups: the groups hold 2 ranks, the world has 3 \(run with 2 ranks, or with 1 to emulate every group in one process\)$/);
  });

  test('a source that does not draw the partition asked for is an Error naming it', async () => {
    const dir = tempDir('part-source');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const inner = new SyntheticSource({ partitions: SETUP.partitions });
    const deaf: DataSource = { partitions: inner.partitions, next: (): Promise<ImageBatch> => inner.next(0), state: () => inner.state(), restore: (s) => inner.restore(s), close: () => inner.close() };
    await expect(emulated(studentDir, { data: deaf })).rejects.toThrow(
      'distill: asked the data source for a batch of partition 1, it gave one of partition 0 (rankGroups need a source whose next(partition) draws that partition)',
    );
  });

  test('a teacher spec on no partition, or with both or neither of teacher and load, is an Error naming it', async () => {
    const dir = tempDir('part-specs');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const { close, loaded, teachers, ...setup } = await setupOptions(lib, TEACHER_DIR, { lazy: true });
    const run = (t: TeacherSpec[]) => distill({ ...setup, teachers: t, student: { dir: studentDir }, steps: 1 });
    const teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'c' });
    await expect(run([...teachers, { teacher, partitions: [] }])).rejects.toThrow(
      /^distill: teachers\[2\]\.partitions must be a non-empty array of data partition indices \(a teacher on no partition never runs\)$/,
    );
    await expect(run([...teachers, { teacher, partitions: [2] }])).rejects.toThrow(/^distill: teachers\[2\]\.partitions: 2 is not a partition index of the data source \(0\.\.1\)$/);
    await expect(run([{ ...teachers[0], teacher }, teachers[1]])).rejects.toThrow(/^distill: teachers\[0\] needs exactly one of teacher \(a Teacher\) and load/);
    await expect(run([teachers[0], { partitions: [1] }])).rejects.toThrow(/^distill: teachers\[1\] needs exactly one of teacher \(a Teacher\) and load/);
    // Refused before any teacher was loaded.
    expect(loaded).toEqual([]);
    await teacher.close();
    await close();
  });

  test("releaseUnrun closes each loaded teacher this process does not run once, never one that a spec run here also holds", async () => {
    const closed: string[] = [];
    const fakeTeacher = (name: string) => ({ name, close: async () => void closed.push(name) }) as unknown as Teacher;
    const [a, b, c] = ['a', 'b', 'c'].map(fakeTeacher);
    // b is given twice, unheld both times; a is held here under one spec and not under the other.
    const specs: TeacherSpec[] = [{ teacher: a }, { teacher: b }, { teacher: a }, { teacher: b }, { load: async () => c }, { teacher: c }];
    expect(await releaseUnrun(specs, [{ teacher: a }, { teacher: c }])).toEqual(['b']);
    expect(closed).toEqual(['b']);
    await expect(releaseUnrun([{ teacher: {} as Teacher }], [])).rejects.toThrow('distill: teachers[0].teacher must be a Teacher (it has no close())');
  });

  test('one group of every rank is the unpartitioned run, bit for bit', async () => {
    const dir = tempDir('part-one');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
    const run = (extra: Partial<DistillOptions>) =>
      distill({ student: { dir: studentDir }, teachers: [{ teacher }], data: new SyntheticSource({ seed: 3, partitions: [SETUP.partitions[0]] }), steps: 2, accumulate: 2, seed: 1, progress: false, ...extra });
    const [plain, grouped] = [await run({}), await run({ rankGroups: [{ partition: 0, size: 1 }] })];
    expect(grouped.history.map((m) => [m.loss, m.gradNorm, m.terms])).toEqual(plain.history.map((m) => [m.loss, m.gradNorm, m.terms]));
    expect(grouped.history.map((m) => m.groups)).toEqual(plain.history.map((m) => [m.loss]));
    expect(differingKeys(await weightsOf(grouped.student), await weightsOf(plain.student))).toEqual([]);
    plain.student.dispose();
    grouped.student.dispose();
    await teacher.close();
  });

  test('one process emulating both groups follows the step written out by hand: losses, group losses, norms, weights', async () => {
    const dir = tempDir('part-hand');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const r = await emulated(studentDir);
    const ref = await byHand(studentDir, STEPS);
    expectCurvesClose(curves(r.history), ref);
    // Both groups' terms are reported, each the mean over the images that have it.
    expect(Object.keys(r.history[0].terms).sort()).toEqual(['a.clip.features', 'a.clip.summary', 'a.dino_v2.features', 'a.dino_v2.summary', 'b.sam.features']);
    expect(r.history.map((m) => m.images)).toEqual([6, 12, 18]);
    // The clip was active, so it saw the combined gradient.
    expect(ref.gradNorms[0]).toBeGreaterThan(SETUP.maxGradNorm);
    const d = weightDistance(await weightsOf(r.student), await weightsOf(ref.model));
    expect(d.rms).toBeLessThan(1e-5);
    expect(d.worst).toBeLessThan(1e-5);
    r.student.dispose();
    ref.model.dispose();
  });
});

describe('checkpoints record the rank groups', () => {
  const stateOf = (ckpt: string) => {
    const buf = fs.readFileSync(path.join(ckpt, 'training.safetensors'));
    const n = Number(buf.readBigUInt64LE(0));
    return { buf, n, header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as { __metadata__: { state: string } } };
  };
  /** Rewrites a checkpoint's training state as an older version wrote it: without the rankGroups record. */
  const forget = (ckpt: string) => {
    const { buf, n, header } = stateOf(ckpt);
    const state = JSON.parse(header.__metadata__.state);
    delete state.rankGroups;
    header.__metadata__.state = JSON.stringify(state);
    // Same header length, padded with spaces (the format allows them), so that the tensor offsets stay valid.
    const text = JSON.stringify(header).padEnd(n, ' ');
    expect(Buffer.byteLength(text)).toBe(n);
    fs.writeFileSync(path.join(ckpt, 'training.safetensors'), Buffer.concat([buf.subarray(0, 8), Buffer.from(text), buf.subarray(8 + n)]));
  };
  const messages = () => {
    let text = '';
    const stream = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
    return { progress: { stream, tty: false }, text: () => text };
  };

  test('resuming with other partitions or weights is an Error naming them unless allowRankGroupChange; ranks and world may change; old checkpoints resume unchecked', async () => {
    const dir = tempDir('part-record');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const whole = await emulated(studentDir);
    const base = path.join(dir, 'base');
    (await emulated(studentDir, { outDir: base, stopAfter: 1 })).student.dispose();
    const ckpt = path.join(base, 'checkpoints', 'step-00000001');
    expect(JSON.parse(stateOf(ckpt).header.__metadata__.state).rankGroups).toEqual({
      world: 1,
      groups: [{ partition: 0, ranks: [0], weight: 1 }, { partition: 1, ranks: [1], weight: 1.5 }],
    });
    const copy = (name: string) => {
      fs.cpSync(base, path.join(dir, name), { recursive: true });
      return path.join(dir, name);
    };
    const [g0, g1] = SETUP.rankGroups;
    const resume = (outDir: string, rankGroups: RankGroup[] | undefined, resume: DistillOptions['resume'] = true, extra: Partial<DistillOptions> = {}) =>
      emulated(studentDir, { outDir, resume, rankGroups, ...extra });

    const other = copy('weight');
    await expect(resume(other, [g0, { ...g1, weight: 2 }])).rejects.toThrow(
      `distill: ${ckpt.replace(base, other)} was trained with other rank groups (rankGroups[1].weight: 1.5 in the checkpoint, 2 in this run); resuming would change the objective: pass resume: { allowRankGroupChange: true } to continue with this run's`,
    );
    await expect(resume(other, [{ ...g1, weight: 1 }, { ...g0, weight: 1.5 }])).rejects.toThrow(
      /\(rankGroups\[0\]\.partition: 0 in the checkpoint, 1 in this run; rankGroups\[1\]\.partition: 1 in the checkpoint, 0 in this run\)/,
    );
    await expect(resume(other, undefined)).rejects.toThrow(/\(the checkpoint's run had 2 rank groups, this run has no rankGroups \(unpartitioned\)\)/);
    await expect(resume(other, [g0, g1], { allowRankGroupChange: 1 } as never)).rejects.toThrow('distill: resume.allowRankGroupChange must be true or false, got 1');
    await expect(resume(other, [g0, g1], { allowRankGroupsChange: true } as never)).rejects.toThrow('distill: resume.allowRankGroupsChange: unknown option (expected allowRankGroupChange)');
    // Refused before a step ran: the folder still ends at step 1.
    expect(await latestCheckpoint(path.join(other, 'checkpoints'))).toBe(ckpt.replace(base, other));

    // Allowed: it runs on with the new weight, says so, and its checkpoints record the new groups.
    const m = messages();
    const changed = await resume(other, [g0, { ...g1, weight: 2 }], { allowRankGroupChange: true }, { progress: m.progress });
    expect(changed.history.map((h) => h.step)).toEqual([2, 3]);
    expect(m.text()).toMatch(/resumed with other rank groups than .*step-00000001's \(rankGroups\[1\]\.weight: 1\.5 in the checkpoint, 2 in this run\), as allowRankGroupChange allows/);
    expect(JSON.parse(stateOf(changed.checkpoint!).header.__metadata__.state).rankGroups.groups[1].weight).toBe(2);
    changed.student.dispose();

    // The same partitions and weights on other ranks: the same objective, resumed (and the same run, to rounding).
    const moved = await resume(copy('ranks'), [{ ...g0, size: undefined, ranks: [1] }, { ...g1, size: undefined, ranks: [0] }]);
    expectCurvesClose(curves(moved.history), { losses: whole.history.slice(1).map((h) => h.loss), gradNorms: whole.history.slice(1).map((h) => h.gradNorm) });
    moved.student.dispose();

    // A checkpoint from before the record: resumed unchecked, with a message, bit for bit the unbroken run.
    const old = copy('old');
    forget(ckpt.replace(base, old));
    expect(JSON.parse(stateOf(ckpt.replace(base, old)).header.__metadata__.state).rankGroups).toBeUndefined();
    const mo = messages();
    const tail = await resume(old, [g0, g1], true, { progress: mo.progress });
    expect(mo.text()).toMatch(/step-00000001 does not record its rank groups \(written before checkpoints recorded them\): resumed without checking them; the next checkpoints record this run's/);
    expect(tail.history.map((h) => [h.loss, h.gradNorm])).toEqual(whole.history.slice(1).map((h) => [h.loss, h.gradNorm]));
    expect(JSON.parse(stateOf(tail.checkpoint!).header.__metadata__.state).rankGroups.world).toBe(1);
    tail.student.dispose();
    whole.student.dispose();
  });
});

withMpi(title('rankGroups under mpirun -np 2'), () => {
  test('am-radio distill with rankGroups in its config: each rank its group, per-group losses in the metrics', async () => {
    const dir = tempDir('part-cli');
    const config = {
      student: { dir: 'student', init: { embedDim: 32, depth: 1, heads: 1, seed: 3 } },
      teachers: [
        { type: 'radio', dir: TEACHER_DIR, name: 'a', headWeights: { clip: {}, dino_v2: {} }, partitions: [0] },
        { type: 'radio', dir: TEACHER_DIR, name: 'b', headWeights: { sam: {} }, partitions: [1] },
      ],
      data: { type: 'synthetic', seed: 2, partitions: SETUP.partitions },
      rankGroups: [{ partition: 1, ranks: [1] }, { partition: 0, ranks: [0] }],
      steps: 2,
      output: 'run',
    };
    fs.writeFileSync(path.join(dir, 'distill.json'), JSON.stringify(config));
    const r = await mpirunNode(['-r', REGISTER, path.join(__dirname, '..', '..', 'ts', 'cli.ts'), 'distill', path.join(dir, 'distill.json')]);
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const metrics = readMetrics(path.join(dir, 'run', 'metrics.jsonl'));
    expect(metrics.map((m) => [m.step, m.images, m.groups!.length])).toEqual([[1, 6, 2], [2, 12, 2]]);
    expect(Object.keys(metrics[0].terms).sort()).toEqual(['a.clip.features', 'a.clip.summary', 'a.dino_v2.features', 'a.dino_v2.summary', 'b.sam.features']);
    // The step's loss is the image-weighted mean of the groups' (group 0: partition 1, 2 images; group 1: 4).
    for (const m of metrics) expect(relErr(m.loss, (2 * m.groups![0] + 4 * m.groups![1]) / 6)).toBeLessThan(1e-6);
  });

  test('teachers given as { teacher }: each rank closes the one its partition does not run (rank 0 says so once) and trains as with { load }, bit for bit', async () => {
    const dir = tempDir('part-eager');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const [lazy, eager] = [await mpi('partitioned.js', ['run', studentDir, path.join(dir, 'lazy'), String(STEPS)]), await mpi('partitioned.js', ['eager', studentDir, path.join(dir, 'eager'), String(STEPS)])];
    expect({ code: lazy.code, stderr: lazy.code === 0 ? '' : lazy.stderr }).toEqual({ code: 0, stderr: '' });
    expect(eager.code).toBe(0);
    type EagerOut = RankOut & { disposed: Record<string, boolean>; works: Record<string, number[]>; releasedForward: string | null };
    const [l, e] = [byRank<RankOut>(lazy), byRank<EagerOut>(eager)];
    expect(e.map((x) => x.rank)).toEqual([0, 1]);
    for (const rank of [0, 1]) {
      expect([e[rank].losses, e[rank].groups, e[rank].checksum, e[rank].ran]).toEqual([l[rank].losses, l[rank].groups, l[rank].checksum, l[rank].ran]);
      expect(e[rank].loaded).toEqual(['a', 'b']);  // the child loaded both itself, on every rank
    }
    // Rank 0 (partition 0) runs a and released b; rank 1 the other way round. The kept one still runs afterwards,
    // the released one refuses to.
    expect(e.map((x) => x.disposed)).toEqual([{ a: false, b: true }, { a: true, b: false }]);
    for (const x of e) {
      expect(Object.keys(x.works).sort()).toEqual(['clip', 'dino_v2', 'sam']);
      expect(x.releasedForward).toBe('RadioModel.forward: the model was disposed');
    }
    expect(eager.stderr.split('\n').filter((line) => line.startsWith('released'))).toEqual([
      "released the teachers that their rank's partitions do not run (given as { teacher }; { load } would not load them): rank 0: b; rank 1: a",
    ]);
    // With { load } nothing is loaded in the first place, so nothing is released or said.
    expect(lazy.stderr).not.toMatch(/released/);
  });

  test('one rank per group follows the single-process emulation; resumed on 2 ranks bit for bit, from 2 ranks on 1 process and from 1 on 2', async () => {
    const dir = tempDir('part-mpi');
    const studentDir = await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 });
    const r = await mpi('partitioned.js', ['run', studentDir, path.join(dir, 'ranks'), String(STEPS)]);
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const ranks = byRank<RankOut>(r);
    expect(ranks.map((x) => x.rank)).toEqual([0, 1]);
    expect(ranks[1].checksum).toBe(ranks[0].checksum);
    expect(ranks[1].losses).toEqual(ranks[0].losses);
    expect(ranks[1].groups).toEqual(ranks[0].groups);
    expect(ranks[0].images).toEqual([6, 12, 18]);
    // Each rank loaded (and ran) only its own group's teacher: a on partition 0's rank, b on partition 1's.
    expect(ranks.map((x) => [x.loaded, x.ran])).toEqual([[['a'], ['a']], [['b'], ['b']]]);

    const one = await emulated(studentDir);
    expectCurvesClose(ranks[0], curves(one.history));
    for (const [i, m] of one.history.entries())
      for (const [k, v] of Object.entries(m.terms)) expect(relErr(ranks[0].terms[i][k], v)).toBeLessThan(1e-5);
    const final = path.join(dir, 'ranks', 'checkpoints', `step-${String(STEPS).padStart(8, '0')}`);
    expect(ranks.map((x) => x.checkpoint)).toEqual([final, final]);
    const saved = await RadioModel.load(final);
    const d = weightDistance(await weightsOf(saved), await weightsOf(one.student));
    expect(d.rms).toBeLessThan(1e-5);
    expect(d.worst).toBeLessThan(1e-5);
    saved.dispose();

    // Stopped after 2 steps and resumed on the same world: the same run, bit for bit.
    const resumed = path.join(dir, 'resumed');
    const first = await mpi('partitioned.js', ['run', studentDir, resumed, String(STEPS), '2']);
    const alone = path.join(dir, 'alone');
    fs.cpSync(resumed, alone, { recursive: true });
    const second = await mpi('partitioned.js', ['resume', studentDir, resumed, String(STEPS)]);
    expect([first.code, second.code]).toEqual([0, 0]);
    const [a1, a2] = [byRank<RankOut>(first), byRank<RankOut>(second)];
    for (const rank of [0, 1]) {
      expect([...a1[rank].losses, ...a2[rank].losses]).toEqual(ranks[0].losses);
      expect(a2[rank].checksum).toBe(ranks[0].checksum);
      expect(a2[rank].loaded).toEqual([['a'], ['b']][rank]);
    }

    // The 2-rank checkpoint at step 2 resumed by one process, which then runs both groups: the same run to rounding.
    const tail = await emulated(studentDir, { outDir: alone, resume: true });
    expect(tail.resumedFrom).toBe(path.join(alone, 'checkpoints', 'step-00000002'));
    expectCurvesClose(curves(tail.history), { losses: ranks[0].losses.slice(2), gradNorms: ranks[0].gradNorms.slice(2), groups: ranks[0].groups.slice(2) });
    const d2 = weightDistance(await weightsOf(tail.student), await weightsOf(one.student));
    expect(d2.rms).toBeLessThan(1e-5);
    expect(d2.worst).toBeLessThan(1e-5);
    tail.student.dispose();

    // And the other way: one process's checkpoint at step 2 continued by the two ranks.
    const grown = path.join(dir, 'grown');
    (await emulated(studentDir, { outDir: grown, stopAfter: 2 })).student.dispose();
    const more = await mpi('partitioned.js', ['resume', studentDir, grown, String(STEPS)]);
    expect({ code: more.code, stderr: more.code === 0 ? '' : more.stderr }).toEqual({ code: 0, stderr: '' });
    const m = byRank<RankOut>(more);
    expectCurvesClose(m[0], { losses: ranks[0].losses.slice(2), gradNorms: ranks[0].gradNorms.slice(2), groups: ranks[0].groups.slice(2) });
    expect(m[1].checksum).toBe(m[0].checksum);
    const grownFinal = await RadioModel.load(path.join(grown, 'checkpoints', `step-${String(STEPS).padStart(8, '0')}`));
    const d3 = weightDistance(await weightsOf(grownFinal), await weightsOf(one.student));
    expect(d3.rms).toBeLessThan(1e-5);
    expect(d3.worst).toBeLessThan(1e-5);
    grownFinal.dispose();
    one.student.dispose();
  });
});
