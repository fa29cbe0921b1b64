// Precomputed teachers: shards written from a RadioTeacher over a data source, read back by a ShardTeacher, train
// the student exactly as the RadioTeacher itself does; an interrupted writer resumes without rewriting anything.
import * as fs from 'fs';
import * as path from 'path';

import { distill, RadioTeacher, SafetensorsFile, ShardTeacher, SyntheticSource, writeFeatureShards } from '../../ts';
import { differingKeys, makeStudent, TEACHER_DIR, tempDir, weightsOf } from './support';

// Equal batch sizes: the ids wrap around only between batches, so the first pass sees each id at one resolution.
const partitions = [{ height: 32, width: 32, batch: 2 }, { height: 32, width: 64, batch: 2 }];
const source = () => new SyntheticSource({ seed: 21, images: 12, partitions });

let teacher: RadioTeacher;
beforeAll(async () => {
  teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio', inputSize: null });
});
afterAll(() => teacher.close());

test('shard round trip: training from shards equals training from the RadioTeacher, bit for bit', async () => {
  const dir = tempDir('shards');
  const shardDir = path.join(dir, 'shards');
  const progress: number[] = [];
  // Every id keeps the resolution of its first batch: the training run below sees the ids in the same order.
  const written = await writeFeatureShards({ teacher, data: source(), dir: shardDir, images: 12, shardSize: 5, onProgress: (d) => progress.push(d) });
  expect(written).toBe(12);
  expect(progress[progress.length - 1]).toBe(12);
  const index = JSON.parse(fs.readFileSync(path.join(shardDir, 'index.json'), 'utf8'));
  expect(index.shards.map((s: { ids: string[] }) => s.ids.length)).toEqual([6, 6]);
  const file = await SafetensorsFile.open(path.join(shardDir, index.shards[0].file));
  const id = index.shards[0].ids[0];
  expect(file.entry(`${id}.clip.summary`).shape).toEqual([32]);
  expect(file.has(`${id}.sam.summary`)).toBe(false);
  const grid = JSON.parse(file.metadata.grids)[id].clip;
  expect(file.entry(`${id}.dino_v2.features`).shape).toEqual([grid[0] * grid[1], 48]);
  await file.close();

  const shards = await ShardTeacher.open(shardDir);
  expect(shards.name).toBe('radio');
  expect(shards.heads).toEqual(teacher.heads);
  const studentDir = await makeStudent(path.join(dir, 'student'), { seed: 4 });
  // As many steps as the writer drew batches: every image once, at the resolution its targets were computed at.
  const probe = source();
  const seen = new Set<string>();
  let steps = 0;
  for (; seen.size < 12; steps++) for (const i of (await probe.next()).ids) seen.add(i);
  expect(steps).toBeGreaterThanOrEqual(3);
  const run = async (t: RadioTeacher | ShardTeacher) =>
    distill({ student: { dir: studentDir }, teachers: [{ teacher: t }], data: source(), steps, optimizer: { lr: 2e-3 }, seed: 1, progress: false });
  const direct = await run(teacher);
  const fromShards = await run(shards);
  expect(fromShards.history.map((m) => m.terms)).toEqual(direct.history.map((m) => m.terms));
  expect(fromShards.history.every((m) => Number.isFinite(m.loss))).toBe(true);
  expect(differingKeys(await weightsOf(fromShards.student), await weightsOf(direct.student))).toEqual([]);
  // An id the shards do not hold is an Error naming it.
  const other = new SyntheticSource({ seed: 21, images: 40, partitions });
  await expect(distill({ student: { dir: studentDir }, teachers: [{ teacher: shards }], data: other, steps: 12, progress: false })).rejects.toThrow(/no targets for image "synthetic-1[2-9]"/);
  for (const r of [direct, fromShards]) r.student.dispose();
  await shards.close();
});

test('the shard writer resumes an interrupted run from its index', async () => {
  const dir = tempDir('shards-resume');
  const shardDir = path.join(dir, 'shards');
  await writeFeatureShards({ teacher, data: source(), dir: shardDir, images: 6, shardSize: 3 });
  const first = JSON.parse(fs.readFileSync(path.join(shardDir, 'index.json'), 'utf8'));
  const mtimes = first.shards.map((s: { file: string }) => fs.statSync(path.join(shardDir, s.file)).mtimeMs);
  // A second run asked for 12 continues after the 6 already written, from the data source's saved position.
  const total = await writeFeatureShards({ teacher, data: source(), dir: shardDir, images: 12, shardSize: 3 });
  expect(total).toBe(12);
  const index = JSON.parse(fs.readFileSync(path.join(shardDir, 'index.json'), 'utf8'));
  expect(index.shards.slice(0, first.shards.length)).toEqual(first.shards);
  expect(first.shards.map((s: { file: string }) => fs.statSync(path.join(shardDir, s.file)).mtimeMs)).toEqual(mtimes);
  const ids = index.shards.flatMap((s: { ids: string[] }) => s.ids);
  expect(new Set(ids).size).toBe(12);
  // The same as one uninterrupted run.
  const once = path.join(dir, 'once');
  await writeFeatureShards({ teacher, data: source(), dir: once, images: 12, shardSize: 3 });
  expect(JSON.parse(fs.readFileSync(path.join(once, 'index.json'), 'utf8')).shards.flatMap((s: { ids: string[] }) => s.ids)).toEqual(ids);
  const other = await RadioTeacher.load(TEACHER_DIR, { name: 'other' });
  await expect(writeFeatureShards({ teacher: other, data: source(), dir: shardDir, images: 12 })).rejects.toThrow(/holds shards of teacher "radio" with other heads; use another folder/);
  await other.close();
});
