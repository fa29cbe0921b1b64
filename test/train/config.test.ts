// `am-radio distill config.json`: bad configs are Errors naming the field path; the CLI end to end in a child
// process on a tiny config (a student created from the embedded teacher's heads, synthetic images) writes a
// loadable checkpoint, the metrics JSONL and the loss SVG, and `--resume` continues it.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { createDataSource, parseDistillConfig, RadioModel, readMetrics, ShardTeacher } from '../../ts';
import type { ProcessGroup } from '../../ts';
import { writeDataset } from '../data/helpers';
import { makeStudent, REGISTER, TEACHER_DIR, tempDir } from './support';

const CLI = path.join(__dirname, '..', '..', 'ts', 'cli.ts');

const good = (student: string) => ({
  student: { dir: student },
  teachers: [{ type: 'radio', dir: TEACHER_DIR, summaryWeight: 1, featureWeight: 1 }],
  data: { type: 'synthetic', seed: 1, partitions: [{ height: 32, width: 32, batch: 2 }] },
  steps: 2,
});

describe('distill config errors name the field', () => {
  let dir: string;
  let student: string;
  beforeAll(async () => {
    dir = tempDir('config');
    student = await makeStudent(path.join(dir, 'student'));
  });

  const prepareError = async (mutate: (c: Record<string, any>) => void): Promise<string> => {
    const c: Record<string, any> = JSON.parse(JSON.stringify(good(student)));
    mutate(c);
    try {
      const parsed = parseDistillConfig(c, dir);
      const p = await parsed.prepare();
      await p.close();
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };

  test.each([
    ['unknown teacher type', (c: any) => c.teachers.push({ type: 'clip', dir: 'x' }), /^config\.teachers\[1\]\.type: unknown teacher type "clip" \(expected "radio", "hf" or "shards"\)$/],
    ['missing teacher dir', (c: any) => delete c.teachers[0].dir, /^config\.teachers\[0\]\.dir must be a non-empty string \(missing\)$/],
    ['unknown key', (c: any) => (c.optimizer = { lr: 1e-3, lrr: 2 }), /^config\.optimizer\.lrr: unknown key \(expected one of lr, weightDecay, betas, eps\)$/],
    ['unknown top-level key', (c: any) => (c.epochs = 3), /^config\.epochs: unknown key/],
    ['empty teachers', (c: any) => (c.teachers = []), /^config\.teachers must be a non-empty array$/],
    ['missing steps', (c: any) => delete c.steps, /^config\.steps must be an integer > 0 \(missing\)$/],
    ['fractional steps', (c: any) => (c.steps = 2.5), /^config\.steps must be an integer > 0, got 2\.5$/],
    ['missing student', (c: any) => delete c.student, /^config\.student must be an object$/],
    ['resolution not a multiple of the patch', (c: any) => (c.data.partitions[0].width = 40), /^config\.data\.partitions\[0\]\.width: 40 is not a multiple of the student's patch size 16$/],
    ['teacher input size not a multiple of its patch', (c: any) => (c.teachers[0].inputSize = [32, 50]), /^config\.teachers\[0\]: RadioTeacher .*inputSize must be \[h, w\] in pixels, multiples of 16, got \[32,50\]$/],
    ['bad partition field', (c: any) => (c.data.partitions[0].batch = 0), /^config\.data\.partitions\[0\]\.batch must be an integer > 0, got 0$/],
    ['empty partitions', (c: any) => (c.data.partitions = []), /^config\.data\.partitions must be a non-empty array$/],
    ['unknown data type', (c: any) => (c.data.type = 'webdataset'), /^config\.data\.type: unknown data type "webdataset" \(expected "synthetic" or "folder"\)$/],
    ['bad loss mode', (c: any) => (c.loss = { mode: 'l2' }), /^config\.loss\.mode must be "cosine\+smoothl1" or "mse", got "l2"$/],
    ['bad betas', (c: any) => (c.optimizer = { betas: [0.9, 1] }), /^config\.optimizer\.betas must be \[beta1, beta2\] in \[0, 1\), got \[0\.9,1\]$/],
    ['warm-up longer than the run', (c: any) => (c.schedule = { warmupSteps: 3 }), /^config\.schedule\.warmupSteps 3 is more than config\.steps 2$/],
    ['bad head weight', (c: any) => (c.teachers[0].headWeights = { clip: { featureWeight: -1 } }), /^config\.teachers\[0\]\.headWeights\.clip\.featureWeight must be a finite number >= 0, got -1$/],
    ['shards folder without an index', (c: any) => (c.teachers[0] = { type: 'shards', dir: 'nowhere' }), /^config\.teachers\[0\]: .*nowhere: no index\.json/],
    ['student folder without a config', (c: any) => (c.student.dir = 'empty'), /^config\.student\.dir: .*empty holds no config\.json \(give config\.student\.init/],
    ['bad device', (c: any) => (c.student.device = 'tpu'), /^config\.student\.device must be cpu, sim or cuda, got "tpu"$/],
    ['unknown rank group key', (c: any) => (c.rankGroups = [{ partition: 0, sizes: 1 }]), /^config\.rankGroups\[0\]\.sizes: unknown key \(expected one of partition, ranks, size, weight\)$/],
    ['rank group without a partition', (c: any) => (c.rankGroups = [{ size: 1 }]), /^config\.rankGroups\[0\]\.partition must be an integer >= 0 \(missing\)$/],
    ['a rank that is not one', (c: any) => (c.rankGroups = [{ partition: 0, ranks: [0, -1] }]), /^config\.rankGroups\[0\]\.ranks\[1\] must be a rank \(an integer >= 0\), got -1$/],
    // A teacher named by no partition never runs: the config refuses it (and distill does too, ts/train/distill.ts).
    ['a teacher on no partition', (c: any) => (c.teachers[0].partitions = []), /^config\.teachers\[0\]\.partitions must be a non-empty array$/],
    ['resume options that are not', (c: any) => (c.resume = { allowRankGroupsChange: true }), /^config\.resume\.allowRankGroupsChange: unknown key \(expected one of allowRankGroupChange\)$/],
  ])('%s', async (_name, mutate, expected) => {
    expect(await prepareError(mutate)).toMatch(expected);
  });

  test('rankGroups pass to distill as given (distill checks them against the world and the data)', () => {
    const c = { ...good(student), rankGroups: [{ partition: 0, ranks: [1, 0], weight: 2 }] };
    expect(parseDistillConfig(c, dir).options.rankGroups).toEqual([{ partition: 0, ranks: [1, 0], weight: 2 }]);
    expect(parseDistillConfig(good(student), dir).options.rankGroups).toBeUndefined();
  });

  test('resume is true / false or { allowRankGroupChange }, passed to distill as given', () => {
    expect(parseDistillConfig({ ...good(student), resume: { allowRankGroupChange: true } }, dir).options.resume).toEqual({ allowRankGroupChange: true });
    expect(parseDistillConfig({ ...good(student), resume: true }, dir).options.resume).toBe(true);
    expect(() => parseDistillConfig({ ...good(student), resume: 'yes' }, dir)).toThrow('config.resume must be true, false or { allowRankGroupChange }, got "yes"');
    expect(() => parseDistillConfig({ ...good(student), resume: { allowRankGroupChange: 1 } }, dir)).toThrow('config.resume.allowRankGroupChange must be true or false, got 1');
  });

  test('with rankGroups, prepare loads only the teachers of the partitions this rank runs; one process loads all', async () => {
    const c = {
      ...good(student),
      teachers: [
        { type: 'radio', dir: TEACHER_DIR, name: 'a', partitions: [0] },
        { type: 'radio', dir: TEACHER_DIR, name: 'b', partitions: [1] },
        { type: 'radio', dir: TEACHER_DIR, name: 'both' },
      ],
      data: { type: 'synthetic', seed: 1, partitions: [{ height: 32, width: 32, batch: 2 }, { height: 48, width: 48, batch: 1 }] },
      rankGroups: [{ partition: 0, size: 1 }, { partition: 1, size: 1 }],
    };
    const held = async (group?: { rank: number; size: number }) => {
      const p = await parseDistillConfig(c, dir).prepare(group ? { distributed: group as unknown as ProcessGroup } : {});
      const out = p.teachers.map((t) => (t.teacher ? `${t.teacher.name} loaded` : typeof t.load));
      await p.close();
      return out;
    };
    expect(await held({ rank: 1, size: 2 })).toEqual(['function', 'b loaded', 'both loaded']);
    expect(await held({ rank: 0, size: 2 })).toEqual(['a loaded', 'function', 'both loaded']);
    expect(await held()).toEqual(['a loaded', 'b loaded', 'both loaded']);
    // What a rank did not load, distill can still load (it would on a world of one).
    const p = await parseDistillConfig(c, dir).prepare({ distributed: { rank: 1, size: 2 } as unknown as ProcessGroup });
    const a = await p.teachers[0].load!();
    expect(a.name).toBe('a');
    await a.close();
    await p.close();
  });

  test('a good config parses and prepares', async () => {
    expect(await prepareError(() => {})).toBe('no error');
  });

  test('"folder" data: an image folder relative to the config becomes an ImageFolderSource; its errors name config.data', async () => {
    const images = path.join(dir, 'images');
    fs.mkdirSync(images, { recursive: true });
    await writeDataset(images, 3);
    const src = createDataSource({ type: 'folder', dir: 'images', partitions: [{ height: 32, width: 48, batch: 2 }], seed: 1, workers: 1 }, 'config.data', dir);
    try {
      const b = await src.next();
      expect([b.batch, b.height, b.width, b.images.length]).toEqual([2, 32, 48, 2 * 3 * 32 * 48]);
      expect(b.images.every((v) => v >= 0 && v <= 1)).toBe(true);
    } finally {
      await src.close();
    }
    fs.mkdirSync(path.join(dir, 'empty-images'), { recursive: true });
    expect(() => createDataSource({ type: 'folder', dir: 'empty-images', partitions: [{ height: 32, width: 32, batch: 1 }] }, 'config.data', dir)).toThrow(
      /^config\.data: no images .* under .*empty-images/,
    );
    expect(() => createDataSource({ type: 'folder', dir: 'images', partitions: [{ height: 32, width: 32, batch: 1 }], colour: 1 }, 'config.data', dir)).toThrow(
      /^config\.data: unknown option 'colour'/,
    );
  });
});

test('CLI: am-radio distill on a tiny config exits 0 and writes a checkpoint, metrics.jsonl and loss.svg; --resume continues', async () => {
  const dir = tempDir('cli');
  const config = {
    student: { dir: 'student', init: { embedDim: 32, depth: 1, heads: 1, seed: 3 } },
    teachers: [{ type: 'radio', dir: TEACHER_DIR, name: 'radio', headWeights: { sam: { featureWeight: 0.5 } } }],
    data: { type: 'synthetic', seed: 2, partitions: [{ height: 32, width: 32, batch: 2 }] },
    optimizer: { lr: 2e-3, weightDecay: 0.02 },
    schedule: { warmupSteps: 2 },
    steps: 6,
    maxGradNorm: 1,
    checkpointEvery: 3,
    output: 'run',
    logEvery: 3,
  };
  fs.writeFileSync(path.join(dir, 'distill.json'), JSON.stringify(config));
  const run = (...args: string[]) => spawnSync(process.execPath, ['-r', REGISTER, CLI, 'distill', path.join(dir, 'distill.json'), ...args], { encoding: 'utf8', timeout: 120_000 });
  const r = run();
  expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  expect(r.stdout).toMatch(/^distilled 6 steps \(to step 6, 0 skipped\) in \d+\.\d s; loss \d+\.\d{4} -> \d+\.\d{4}\ncheckpoint: .*step-00000006\nmetrics: /);
  // Not a terminal: plain lines at the first step and every 3rd, and one per checkpoint.
  expect(r.stderr.trim().split('\n').map((l) => /^(step \d+\/\d+  |checkpoint at step \d+: )/.exec(l)?.[1] ?? l)).toEqual([
    'step 1/6  ',
    'step 3/6  ',
    'checkpoint at step 3: ',
    'step 6/6  ',
    'checkpoint at step 6: ',
  ]);
  const out = path.join(dir, 'run');
  expect(readMetrics(path.join(out, 'metrics.jsonl')).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(fs.readFileSync(path.join(out, 'loss.svg'), 'utf8')).toMatch(/^<svg [^]*<polyline [^]*radio\.sam\.features[^]*<\/svg>\n$/);
  const model = await RadioModel.load(path.join(out, 'checkpoints', 'step-00000006'));
  expect(model.config.embedDim).toBe(32);
  expect(model.config.adaptors.map((a) => [a.name, a.feature.outputDim, a.useSummary])).toEqual([['clip', 32, true], ['dino_v2', 48, true], ['sam', 40, false]]);
  model.dispose();
  // The same config with more steps and --resume continues from step 6.
  fs.writeFileSync(path.join(dir, 'distill.json'), JSON.stringify({ ...config, steps: 8 }));
  const again = run('--resume');
  expect({ status: again.status, stderr: again.status === 0 ? '' : again.stderr }).toEqual({ status: 0, stderr: '' });
  expect(again.stderr).toMatch(/^resumed from .*step-00000006 at step 6\n/);
  expect(again.stdout).toMatch(/^distilled 2 steps \(to step 8, 0 skipped\)/);
  expect(readMetrics(path.join(out, 'metrics.jsonl')).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  // A bad config exits 1 with the field named.
  fs.writeFileSync(path.join(dir, 'distill.json'), JSON.stringify({ ...config, teachers: [{ type: 'dino', dir: 'x' }] }));
  const bad = run();
  expect({ status: bad.status, stderr: bad.stderr }).toEqual({ status: 1, stderr: 'config.teachers[0].type: unknown teacher type "dino" (expected "radio", "hf" or "shards")\n' });
});

test('CLI: am-radio teach writes shards a shards teacher reads, and a rerun finds them complete', async () => {
  const dir = tempDir('teach');
  const config = {
    teacher: { type: 'radio', dir: TEACHER_DIR, name: 'radio', heads: { clip: 'clip', sam: 'sam' } },
    data: { type: 'synthetic', seed: 2, images: 6, partitions: [{ height: 32, width: 32, batch: 2 }] },
    images: 6,
    shardSize: 4,
    output: 'shards',
  };
  fs.writeFileSync(path.join(dir, 'teach.json'), JSON.stringify(config));
  const run = () => spawnSync(process.execPath, ['-r', REGISTER, CLI, 'teach', path.join(dir, 'teach.json')], { encoding: 'utf8', timeout: 120_000 });
  const r = run();
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
  expect(r.stderr).toMatch(/teach radio: 6\/6 images, [\d.]+ img\/s, ETA 0s\n$/);
  const shards = await ShardTeacher.open(path.join(dir, 'shards'));
  expect(shards.images).toBe(6);
  expect(Object.keys(shards.heads)).toEqual(['clip', 'sam']);
  await shards.close();
  const index = fs.readFileSync(path.join(dir, 'shards', 'index.json'), 'utf8');
  expect(run().status).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'shards', 'index.json'), 'utf8')).toBe(index);
});
