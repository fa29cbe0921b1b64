import { spawn } from 'child_process';
import { mkdirSync, writeFileSync } from 'fs';
import { join } from 'path';
import { ImageFolderSource, type ImageFolderOptions } from '../../ts/data/folder';
import { checkPartitions } from '../../ts/data/partitions';
import { gradient, tempDir, writeImage } from './helpers';

const tmp = tempDir();
const good = join(tmp.dir, 'good');
const part = [{ height: 8, width: 8, batch: 2 }];

beforeAll(async () => {
  for (let i = 0; i < 3; i++) await writeImage(join(good, `${i}.png`), gradient(12, 10, i), 12, 10, 'png');
});
afterAll(() => tmp.cleanup());

function opts(extra: Record<string, unknown>): ImageFolderOptions {
  return { dir: good, partitions: part, ...extra } as ImageFolderOptions;
}

test('options errors name the field', () => {
  const missing = join(tmp.dir, 'missing');
  expect(() => new ImageFolderSource(opts({ dir: missing }))).toThrow(`dir: no such folder: ${missing}`);
  const empty = join(tmp.dir, 'empty');
  mkdirSync(join(empty, 'sub'), { recursive: true });
  writeFileSync(join(empty, 'sub', 'notes.txt'), 'no images here');
  writeFileSync(join(empty, '._hidden.jpg'), 'resource fork');
  expect(() => new ImageFolderSource(opts({ dir: empty }))).toThrow(`no images (.jpg, .jpeg, .png, .webp) under ${empty}`);
  expect(() => new ImageFolderSource(opts({ dir: join(good, '0.png') }))).toThrow('dir: not a folder');
  expect(() => new ImageFolderSource(opts({ list: 'x.txt' }))).toThrow('exactly one of dir or list');
  expect(() => new ImageFolderSource({ partitions: part } as never)).toThrow('exactly one of dir or list');
  expect(() => new ImageFolderSource(opts({ batchSize: 4 }))).toThrow("unknown option 'batchSize'");
  expect(() => new ImageFolderSource(opts({ augment: { scales: [0.5, 1] } }))).toThrow("augment: unknown option 'scales'");
  expect(() => new ImageFolderSource(opts({ augment: { scale: [0.5, 1.5] } }))).toThrow('augment.scale must be [lo, hi] with 0 < lo <= hi <= 1');
  expect(() => new ImageFolderSource(opts({ augment: { scale: [0.9, 0.5] } }))).toThrow('augment.scale');
  expect(() => new ImageFolderSource(opts({ augment: { ratio: [0, 1] } }))).toThrow('augment.ratio');
  expect(() => new ImageFolderSource(opts({ augment: { flip: 2 } }))).toThrow('augment.flip must be a probability');
  expect(() => new ImageFolderSource(opts({ workers: 0 }))).toThrow('workers must be a positive integer');
  expect(() => new ImageFolderSource(opts({ prefetch: -1 }))).toThrow('prefetch must be an integer >= 0');
  expect(() => new ImageFolderSource(opts({ seed: 1.5 }))).toThrow('seed must be a safe integer');
  expect(() => new ImageFolderSource(opts({ resize: 'fit' }))).toThrow("resize must be one of 'stretch', 'cover', 'contain'");
});

test('partition errors name the partition and field', () => {
  const bad = (p: unknown) => () => new ImageFolderSource(opts({ partitions: p }));
  expect(bad([])).toThrow('partitions must be a non-empty array');
  expect(bad([part[0], { height: 0, width: 8, batch: 1 }])).toThrow('partitions[1].height must be a positive integer, got 0');
  expect(bad([{ height: 8, width: 7.5, batch: 1 }])).toThrow('partitions[0].width must be a positive integer, got 7.5');
  expect(bad([{ height: 8, width: 8, batch: 0 }])).toThrow('partitions[0].batch must be a positive integer, got 0');
  expect(bad([{ height: 8, width: 8, batch: 1, weight: 0 }])).toThrow('partitions[0].weight must be a finite number > 0, got 0');
  expect(bad([{ height: 8, width: 8, batch: 1, weight: -2 }])).toThrow('partitions[0].weight');
  expect(bad([{ height: 8, width: 8, batch: 1, weight: NaN }])).toThrow('partitions[0].weight');
  expect(bad([{ height: 8, width: 8, batch: 1, size: 8 }])).toThrow("partitions[0]: unknown key 'size'");
});

test('checkPartitions names the partition whose size is not a multiple of the patch size', () => {
  const ps = [
    { height: 432, width: 432, batch: 32 },
    { height: 1000, width: 1024, batch: 2 },
  ];
  expect(() => checkPartitions(ps, 16)).toThrow('partitions[1].height = 1000 is not a multiple of 16 (try 992 or 1008)');
  expect(() => checkPartitions([ps[0], { height: 1024, width: 1020, batch: 2 }], 16)).toThrow('partitions[1].width = 1020');
  expect(() => checkPartitions([ps[0], { height: 1024, width: 1024, batch: 2 }], 16)).not.toThrow();
  expect(() => checkPartitions(ps, 0)).toThrow('multiple must be a positive integer');
});

test('a corrupt image fails next() naming the file; state() stays before the failed batch', async () => {
  const dir = join(tmp.dir, 'corrupt');
  await writeImage(join(dir, 'a.png'), gradient(12, 10, 1), 12, 10, 'png');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'b.jpg'), Buffer.from('this is not a JPEG at all'));
  const s = new ImageFolderSource({ dir, partitions: [{ height: 8, width: 8, batch: 2 }], workers: 1 });
  try {
    const before = s.state();
    await expect(s.next()).rejects.toThrow(`cannot decode ${join(dir, 'b.jpg')}`);
    expect(s.state()).toEqual(before);
    // The same batch is planned again, so the retry fails the same way rather than silently skipping it.
    await expect(s.next()).rejects.toThrow('b.jpg');
  } finally {
    await s.close();
  }
});

test('state errors: foreign, malformed or for another dataset', async () => {
  const s = new ImageFolderSource(opts({ workers: 1 }));
  try {
    const st = s.state();
    expect(() => s.restore({ ...st, kind: 'synthetic' })).toThrow('not an image-folder state');
    expect(() => s.restore({ ...st, position: -1 })).toThrow('state.position is invalid');
    expect(() => s.restore({ ...st, rng: [0, 0, 0, 0] })).toThrow('state.rng must be four 32-bit words');
    expect(() => s.restore({ ...st, images: 4 })).toThrow('the state is for a different dataset');
    expect(() => s.restore({ ...st, position: 3 })).toThrow('state.position 3 is past the 3 images');
    const pending = s.next();
    expect(() => s.restore(st)).toThrow('while a next() is pending');
    await pending;
  } finally {
    await s.close();
  }
  await expect(s.next()).rejects.toThrow('next() after close()');
  await s.close();
});

test('close() while a batch is being decoded rejects the pending next() instead of leaving it hanging', async () => {
  const s = new ImageFolderSource(opts({ workers: 1, prefetch: 0, partitions: [{ height: 1024, width: 1024, batch: 2 }] }));
  const pending = s.next();
  // One turn of the event loop: next() has planned and dispatched its batch, and two 1024 px decodes take longer.
  await new Promise((r) => setImmediate(r));
  await s.close();
  await expect(pending).rejects.toThrow('the image source is closed');
});

function runChild(args: string[], timeoutMs: number): Promise<{ code: number | null; signal: string | null; out: string; err: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [join(__dirname, 'children', 'take-one.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs); // a hang shows as SIGKILL
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, ms: Date.now() - t0 });
    });
  });
}

test.each([['close'], ['idle-close'], ['no-close']])('a process that takes a batch (%s) exits by itself with code 0', async (mode) => {
  const r = await runChild([good, mode], 20_000);
  expect({ code: r.code, signal: r.signal, err: r.err }).toEqual({ code: 0, signal: null, err: '' });
  expect(JSON.parse(r.out)).toEqual({ batch: 3, values: 3 * 3 * 16 * 16 });
  // Start-up (TypeScript compile, sharp load in 2 workers) is most of this; a lingering worker would hit the timeout.
  expect(r.ms).toBeLessThan(15_000);
});
