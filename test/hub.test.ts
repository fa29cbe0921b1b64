// RadioModel.fromPretrained against a local server on 127.0.0.1 that answers the way the Hugging Face hub does:
// /<repo>/resolve/<revision>/<file>, X-Repo-Commit and ETag on every answer, large files redirected to storage with
// X-Linked-Etag / X-Linked-Size on the redirect, Range requests for resuming. Nothing here leaves the machine.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';

import { downloadCheckpoint, RadioModel, tensor } from '../ts';

const FIXTURE = path.join(__dirname, 'fixtures', 'radio', 'vit-b16-v2heads');
const COMMIT = 'a'.repeat(39) + '1';
const REPO = 'test-org/RADIO-tiny';

interface Hub {
  url: string;
  log: { method: string; path: string; range?: string; auth?: string }[];
  /** When set, the next GET of the blob sends this many bytes and then breaks the connection. */
  cutAfter: number | null;
  requireToken: string | null;
  close(): Promise<void>;
}

async function startHub(): Promise<Hub> {
  const files: Record<string, Buffer> = {
    'config.json': fs.readFileSync(path.join(FIXTURE, 'config.json')),
    'model.safetensors': fs.readFileSync(path.join(FIXTURE, 'model.safetensors')),
  };
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const hub = { log: [], cutAfter: null, requireToken: null } as unknown as Hub;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    hub.log.push({ method: req.method!, path: u.pathname, range: req.headers.range, auth: req.headers.authorization });
    if (hub.requireToken && req.headers.authorization !== `Bearer ${hub.requireToken}`) return void res.writeHead(401).end();
    const resolve = u.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const lfs = u.pathname.match(/^\/lfs\/([0-9a-f]{64})$/);
    if (resolve) {
      const [, repo, rev, file] = resolve;
      const body = files[file];
      if (repo !== REPO || !body || (rev !== 'main' && rev !== COMMIT)) return void res.writeHead(404).end();
      if (file.endsWith('.safetensors')) {
        // Large files: the hub redirects to storage, describing the file on the redirect itself.
        res.writeHead(302, { location: `/lfs/${sha(body)}`, 'x-repo-commit': COMMIT, 'x-linked-etag': `"${sha(body)}"`, 'x-linked-size': String(body.length) });
        return void res.end();
      }
      res.writeHead(200, { 'x-repo-commit': COMMIT, etag: `"${sha(body).slice(0, 40)}"`, 'content-length': String(body.length) });
      return void res.end(req.method === 'HEAD' ? undefined : body);
    }
    if (lfs) {
      const body = files['model.safetensors'];
      const m = req.headers.range?.match(/^bytes=(\d+)-$/);
      const from = m ? Number(m[1]) : 0;
      res.writeHead(m ? 206 : 200, { 'content-length': String(body.length - from), ...(m ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
      if (req.method === 'HEAD') return void res.end();
      if (hub.cutAfter !== null) {
        const n = hub.cutAfter;
        hub.cutAfter = null;
        res.write(body.subarray(from, from + n), () => res.destroy());
        return;
      }
      return void res.end(body.subarray(from));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hub.close = () => new Promise((r) => server.close(() => r()));
  return hub;
}

let hub: Hub;
let cache: string;
beforeAll(async () => {
  hub = await startHub();
});
afterAll(() => hub.close());
beforeEach(() => {
  cache = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-hub-'));
  hub.log.length = 0;
  hub.cutAfter = null;
  hub.requireToken = null;
});
afterEach(() => fs.rmSync(cache, { recursive: true, force: true }));

const opts = () => ({ endpoint: hub.url, cacheDir: cache, progress: false as const });

test('downloads into the hub cache layout and loads the same model as the folder', async () => {
  const model = await RadioModel.fromPretrained(REPO, opts());
  const root = path.join(cache, 'models--test-org--RADIO-tiny');
  expect(fs.readFileSync(path.join(root, 'refs', 'main'), 'utf8')).toBe(COMMIT);
  for (const f of ['config.json', 'model.safetensors']) {
    const at = path.join(root, 'snapshots', COMMIT, f);
    expect(fs.lstatSync(at).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(at).startsWith(path.join('..', '..', 'blobs'))).toBe(true);
    expect(fs.readFileSync(at).equals(fs.readFileSync(path.join(FIXTURE, f)))).toBe(true);
  }
  const direct = await RadioModel.load(FIXTURE);
  const x = tensor(Float32Array.from({ length: 3 * 32 * 32 }, (_, i) => (i % 17) / 17), [1, 3, 32, 32]);
  const [a, b] = [model.forward(x), direct.forward(x)];
  expect(Array.from(await a.backbone.summary.toArray())).toEqual(Array.from(await b.backbone.summary.toArray()));
  model.dispose();
  direct.dispose();
});

test('a second call finds everything in the cache and downloads no file again', async () => {
  await downloadCheckpoint(REPO, opts());
  hub.log.length = 0;
  await downloadCheckpoint(REPO, opts());
  expect(hub.log.filter((r) => r.method === 'GET')).toEqual([]);
});

test('a download that breaks off resumes from where it stopped with a Range request', async () => {
  hub.cutAfter = 100_000;
  await expect(downloadCheckpoint(REPO, opts())).rejects.toThrow(/download of model\.safetensors broke off|ended at 100000 of/);
  const blobs = path.join(cache, 'models--test-org--RADIO-tiny', 'blobs');
  const partial = fs.readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
  expect(fs.statSync(path.join(blobs, partial)).size).toBe(100_000);
  hub.log.length = 0;
  const dir = await downloadCheckpoint(REPO, opts());
  // The resolve request and its redirect to storage both carry the range; storage sends only the missing bytes.
  expect(hub.log.filter((r) => r.method === 'GET' && r.path.startsWith('/lfs/')).map((r) => r.range)).toEqual(['bytes=100000-']);
  expect(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(fs.readFileSync(path.join(FIXTURE, 'model.safetensors')))).toBe(true);
  expect(fs.readdirSync(blobs).some((f) => f.endsWith('.incomplete'))).toBe(false);
});

test('offline mode uses the cache only, and says what is missing', async () => {
  await expect(downloadCheckpoint(REPO, { ...opts(), offline: true })).rejects.toThrow(/offline \(HF_HUB_OFFLINE\) and test-org\/RADIO-tiny@main is not in the cache/);
  await downloadCheckpoint(REPO, opts());
  hub.log.length = 0;
  const saved = process.env.HF_HUB_OFFLINE;
  process.env.HF_HUB_OFFLINE = '1';
  try {
    const dir = await downloadCheckpoint(REPO, { cacheDir: cache, endpoint: hub.url });
    expect(dir).toBe(path.join(cache, 'models--test-org--RADIO-tiny', 'snapshots', COMMIT));
    expect(hub.log).toEqual([]);
    await expect(downloadCheckpoint(REPO, { cacheDir: cache, revision: 'v2' })).rejects.toThrow(/@v2 is not in the cache/);
  } finally {
    if (saved === undefined) delete process.env.HF_HUB_OFFLINE;
    else process.env.HF_HUB_OFFLINE = saved;
  }
});

test('gated repos: the token is sent, and a refusal says to set HF_TOKEN', async () => {
  hub.requireToken = 'hf_secret';
  await expect(downloadCheckpoint(REPO, opts())).rejects.toThrow(/refused access \(HTTP 401\).*HF_TOKEN/);
  hub.log.length = 0;
  await downloadCheckpoint(REPO, { ...opts(), token: 'hf_secret' });
  expect(hub.log.filter((r) => r.path.includes('/resolve/')).every((r) => r.auth === 'Bearer hf_secret')).toBe(true);
});

test('a missing repo or revision, a bad id, an unreachable hub: each an Error naming it', async () => {
  await expect(downloadCheckpoint('test-org/nothing', opts())).rejects.toThrow(/test-org\/nothing@main has no config\.json, or the repo does not exist \(HTTP 404\)/);
  await expect(downloadCheckpoint(REPO, { ...opts(), revision: 'v9' })).rejects.toThrow(/@v9 has no config\.json/);
  await expect(downloadCheckpoint('no-slash', opts())).rejects.toThrow(/"no-slash" is not a hub model id/);
  await expect(downloadCheckpoint('../x/y', opts())).rejects.toThrow(/is not a hub model id/);
  // A port nothing listens on (the server's own, after it closed).
  const dead = await startHub();
  const url = dead.url;
  await dead.close();
  await expect(downloadCheckpoint(REPO, { ...opts(), endpoint: url })).rejects.toThrow(/cannot reach http:\/\/127\.0\.0\.1:\d+ .*HF_HUB_OFFLINE=1/);
});
