// Sharded Hugging Face checkpoints (model.safetensors.index.json + shards, as save_pretrained writes them past
// max_shard_size): the same teacher from a folder or a hub id as from one file, and an index that disagrees with its
// shards refused by name.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';

import { HfTeacher, loadHfVisionModel, loadSamVisionModel, tensor } from '../../ts';
import { SafetensorsFile, writeSafetensors } from '../../ts/io/safetensors';
import type { SafetensorsDType } from '../../ts/io/safetensors';
import { readIo } from '../support/radio-fixtures';

const ROOT = path.join(__dirname, '..', 'fixtures', 'teachers');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-sharded-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * Copies fixture `name` into dir with its weights split over `parts` shards (tensor i to shard i mod parts, so
 * every shard holds some of every block) and an index; `edit` may change the weight map before it is written.
 */
async function shard(name: string, dir: string, parts: number, edit?: (map: Record<string, string>) => void): Promise<Record<string, string>> {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(ROOT, name, f), path.join(dir, f));
  const src = await SafetensorsFile.open(path.join(ROOT, name, 'model.safetensors'));
  const map: Record<string, string> = {};
  try {
    const shards = Array.from({ length: parts }, () => new Map<string, { dtype: SafetensorsDType; shape: number[]; data: Float32Array }>());
    const keys = src.keys();
    for (let i = 0; i < keys.length; i++) {
      const e = src.entry(keys[i]);
      const file = `model-${String((i % parts) + 1).padStart(5, '0')}-of-${String(parts).padStart(5, '0')}.safetensors`;
      shards[i % parts].set(keys[i], { dtype: e.dtype, shape: e.shape, data: (await src.readFloat(keys[i])).data });
      map[keys[i]] = file;
    }
    for (let p = 0; p < parts; p++)
      await writeSafetensors(path.join(dir, `model-${String(p + 1).padStart(5, '0')}-of-${String(parts).padStart(5, '0')}.safetensors`), shards[p]);
  } finally {
    await src.close();
  }
  edit?.(map);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: map }));
  return map;
}

async function features(model: { forward(x: ReturnType<typeof tensor>): { features: ReturnType<typeof tensor> } }, io: string): Promise<Float32Array> {
  const img = (await readIo(io)).get('images')!;
  const out = model.forward(tensor(img.data, img.shape));
  const f = await out.features.toArray();
  out.features.dispose();
  return f;
}

test('a sharded DINOv2 and SAM load to the same model as their single files, bit for bit', async () => {
  for (const [name, io, load] of [
    ['dinov2-small', 'io-56x56.safetensors', loadHfVisionModel],
    ['sam-vit', 'io-112x112.safetensors', loadSamVisionModel],
  ] as const) {
    const dir = path.join(tmp, `${name}-3`);
    await shard(name, dir, 3);
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);
    const one = await load(path.join(ROOT, name));
    const three = await load(dir);
    try {
      expect(Array.from(await features(three, path.join(ROOT, name, io)))).toEqual(Array.from(await features(one, path.join(ROOT, name, io))));
    } finally {
      one.dispose();
      three.dispose();
    }
  }
});

test('an index that disagrees with its shards is an Error naming the tensor and the shard', async () => {
  const wrong = path.join(tmp, 'wrong-shard');
  const map = await shard('dinov2-small', wrong, 2, (m) => {
    const k = Object.keys(m)[0];
    m[k] = m[k].replace('00001-of', '00002-of');
  });
  const k0 = Object.keys(map)[0];
  await expect(loadHfVisionModel(wrong)).rejects.toThrow(`model.safetensors.index.json: lists tensor '${k0}' in model-00002-of-00002.safetensors, which does not hold it`);

  const unlisted = path.join(tmp, 'unlisted');
  let k1 = '';
  await shard('dinov2-small', unlisted, 2, (m) => {
    k1 = Object.keys(m)[1];
    delete m[k1];
  });
  await expect(loadHfVisionModel(unlisted)).rejects.toThrow(`model-00002-of-00002.safetensors holds tensor '${k1}', which the index does not list`);

  const escape = path.join(tmp, 'escape');
  await shard('dinov2-small', escape, 2, (m) => {
    m[Object.keys(m)[0]] = '../model.safetensors';
  });
  await expect(loadHfVisionModel(escape)).rejects.toThrow('weight_map names "../model.safetensors", not a .safetensors file beside the index');

  const empty = path.join(tmp, 'empty');
  fs.mkdirSync(empty);
  fs.copyFileSync(path.join(ROOT, 'dinov2-small', 'config.json'), path.join(empty, 'config.json'));
  await expect(loadHfVisionModel(empty)).rejects.toThrow(`${empty}: no weights (neither model.safetensors nor model.safetensors.index.json)`);
  fs.writeFileSync(path.join(empty, 'model.safetensors.index.json'), '{"metadata": {}}');
  await expect(loadHfVisionModel(empty)).rejects.toThrow('model.safetensors.index.json: has no weight_map object');
});

test('a sharded hub repo is fetched index first, then its shards, from one commit', async () => {
  const local = path.join(tmp, 'hub-src');
  await shard('dinov2-small', local, 2);
  const files = Object.fromEntries(fs.readdirSync(local).filter((f) => f !== 'preprocessor_config.json').map((f) => [f, fs.readFileSync(path.join(local, f))]));
  const commit = 'd'.repeat(40);
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    const m = new URL(req.url!, 'http://x').pathname.match(/^\/org\/dino-sharded\/resolve\/([^/]+)\/(.+)$/);
    if (req.method === 'GET' && m) asked.push(`${m[1] === commit ? 'commit' : m[1]}:${m[2]}`);
    const body = m && files[m[2]];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'x-repo-commit': commit, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 40)}"`, 'content-length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-sharded-hub-'));
  try {
    const hub = { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, cacheDir: cache, progress: false as const };
    const t = await HfTeacher.fromPretrained('org/dino-sharded', { hub });
    await t.close();
    // config.json at the branch, the rest at the commit it resolved to; the single file and preprocessor are absent.
    expect(asked.sort()).toEqual(['commit:model-00001-of-00002.safetensors', 'commit:model-00002-of-00002.safetensors', 'commit:model.safetensors.index.json', 'main:config.json']);
    const offline = await HfTeacher.fromPretrained('org/dino-sharded', { hub: { ...hub, offline: true } });
    await offline.close();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
