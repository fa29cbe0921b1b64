// Checkpoints from the Hugging Face hub, kept in the hub's own cache layout so Python's huggingface_hub and this
// package share downloads:
//   <cache>/models--<org>--<name>/blobs/<etag>              the file contents
//   <cache>/models--<org>--<name>/snapshots/<commit>/<file>  a relative symlink to its blob
//   <cache>/models--<org>--<name>/refs/<revision>           the commit the revision resolved to
// The download is written here rather than with @huggingface/hub's downloadFileToCacheDir because that one neither
// resumes a partial download nor reports progress, and a RADIO checkpoint is gigabytes: a partial blob is kept as
// blobs/<etag>.incomplete and continued with an HTTP Range request next time.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface HubDownloadOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** The hub cache folder (default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Access token for gated or private repos (default $HF_TOKEN). */
  token?: string;
  /** The hub's address (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Use the cache only, never the network (default: $HF_HUB_OFFLINE is 1 or true). */
  offline?: boolean;
  /** Progress of each download: true (default when stderr is a terminal) prints a line on stderr. */
  progress?: boolean | ((p: DownloadProgress) => void);
}

export interface DownloadProgress {
  file: string;
  received: number;
  total: number;
}

/** The files a RADIO checkpoint folder needs. */
export const CHECKPOINT_FILES = ['config.json', 'model.safetensors'] as const;

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());

export function hubCacheDir(opts: HubDownloadOptions = {}): string {
  if (opts.cacheDir) return opts.cacheDir;
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  if (process.env.HF_HOME) return path.join(process.env.HF_HOME, 'hub');
  return path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

function checkRepoId(repo: string): void {
  if (typeof repo !== 'string' || !/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(repo) || repo.includes('..'))
    throw new Error(`fromPretrained: ${JSON.stringify(repo)} is not a hub model id (expected "org/name", e.g. "nvidia/RADIO-B")`);
}

const isCommit = (rev: string) => /^[0-9a-f]{40}$/.test(rev);

/**
 * Makes sure `files` of model `repo` at `revision` are in the hub cache and returns the snapshot folder holding them.
 * Offline, only the cache is used, and a missing file is an Error naming where it was looked for. `optional` files
 * are fetched from the same commit when the repo has them (the hub answers 404 for one it lacks, and offline a
 * cache without one is passed over); every other failure on them is the Error it is.
 */
export async function downloadCheckpoint(
  repo: string,
  opts: HubDownloadOptions = {},
  files: readonly string[] = CHECKPOINT_FILES,
  optional: readonly string[] = [],
): Promise<string> {
  checkRepoId(repo);
  const revision = opts.revision ?? 'main';
  if (typeof revision !== 'string' || revision === '' || revision.includes('..'))
    throw new Error(`fromPretrained: revision must be a branch, tag or commit, got ${JSON.stringify(opts.revision)}`);
  const root = path.join(hubCacheDir(opts), `models--${repo.replace('/', '--')}`);
  const offline = opts.offline ?? truthy(process.env.HF_HUB_OFFLINE);
  if (offline) return fromCache(repo, root, revision, files);
  if (files.length === 0) throw new Error('fromPretrained: at least one required file is needed (it fixes the commit the optional ones come from)');

  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token ?? process.env.HF_TOKEN;
  // identity: the sizes in the headers must be the file's, not a compressed transfer's.
  const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const progress = progressReporter(opts.progress);
  let commit: string | null = null;
  for (const file of [...files, ...optional]) {
    // Optional files are asked for at the commit the required ones resolved to, so the folder is one snapshot.
    const isOptional = !files.includes(file);
    const url = `${endpoint}/${repo}/resolve/${encodeURIComponent(isOptional ? commit! : revision)}/${file}`;
    const meta = await head(url, headers, repo, revision, file, endpoint, isOptional);
    if (!meta) continue;
    if (commit && meta.commit !== commit) throw new Error(`fromPretrained: ${repo}@${revision} moved to another commit while downloading (${commit} → ${meta.commit}); try again`);
    commit = meta.commit;
    const blob = path.join(root, 'blobs', meta.etag);
    if (!fs.existsSync(blob)) await fetchBlob(url, headers, blob, meta.size, file, progress);
    link(path.join(root, 'snapshots', commit, file), blob);
  }
  if (commit && !isCommit(revision)) {
    fs.mkdirSync(path.join(root, 'refs'), { recursive: true });
    fs.writeFileSync(path.join(root, 'refs', revision), commit);
  }
  return path.join(root, 'snapshots', commit!);
}

function fromCache(repo: string, root: string, revision: string, files: readonly string[]): string {
  let commit = revision;
  if (!isCommit(revision)) {
    const ref = path.join(root, 'refs', revision);
    if (!fs.existsSync(ref)) throw new Error(`fromPretrained: offline (HF_HUB_OFFLINE) and ${repo}@${revision} is not in the cache (no ${ref})`);
    commit = fs.readFileSync(ref, 'utf8').trim();
  }
  const snapshot = path.join(root, 'snapshots', commit);
  for (const f of files)
    if (!fs.existsSync(path.join(snapshot, f))) throw new Error(`fromPretrained: offline (HF_HUB_OFFLINE) and ${repo}@${revision} has no cached ${f} (looked in ${snapshot})`);
  return snapshot;
}

interface FileMeta {
  commit: string;
  etag: string;
  size: number;
}

async function request(url: string, init: RequestInit, what: string, endpoint: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`fromPretrained: cannot reach ${endpoint} for ${what} (${cause?.code ?? cause?.message ?? (e as Error).message}); set HF_HUB_OFFLINE=1 to use the cache only`);
  }
}

function statusError(status: number, repo: string, revision: string, file: string): Error {
  if (status === 401 || status === 403)
    return new Error(`fromPretrained: ${repo} refused access (HTTP ${status}): a gated or private repo needs a token with access (HF_TOKEN or { token })`);
  if (status === 404) return new Error(`fromPretrained: ${repo}@${revision} has no ${file}, or the repo does not exist (HTTP 404)`);
  return new Error(`fromPretrained: ${repo}@${revision}/${file}: the hub answered HTTP ${status}`);
}

// The first response's headers describe the file even when it redirects to storage (large files do): the commit
// the revision resolved to, the content hash (the blob's name) and the size.
// null when the file is optional and the repo has none.
async function head(url: string, headers: Record<string, string>, repo: string, revision: string, file: string, endpoint: string, optional = false): Promise<FileMeta | null> {
  const r = await request(url, { method: 'HEAD', headers, redirect: 'manual' }, `${repo}/${file}`, endpoint);
  if (optional && r.status === 404) return null;
  if (r.status >= 400) throw statusError(r.status, repo, revision, file);
  const commit = r.headers.get('x-repo-commit');
  const etag = (r.headers.get('x-linked-etag') ?? r.headers.get('etag'))?.replace(/^W\//, '').replace(/"/g, '');
  const size = Number(r.headers.get('x-linked-size') ?? r.headers.get('content-length'));
  if (!commit || !isCommit(commit)) throw new Error(`fromPretrained: ${url} gave no commit (X-Repo-Commit header): is ${endpoint} a Hugging Face hub?`);
  if (!etag || !/^[\w.-]+$/.test(etag)) throw new Error(`fromPretrained: ${url} gave no usable ETag`);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`fromPretrained: ${url} gave no file size`);
  return { commit, etag, size };
}

async function fetchBlob(
  url: string,
  headers: Record<string, string>,
  blob: string,
  size: number,
  file: string,
  progress: (p: DownloadProgress) => void,
): Promise<void> {
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  const partial = `${blob}.incomplete`;
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  if (have > size) {
    fs.rmSync(partial);
    have = 0;
  }
  const endpoint = new URL(url).origin;
  if (have < size) {
    const r = await request(url, { headers: have > 0 ? { ...headers, range: `bytes=${have}-` } : headers }, file, endpoint);
    if (r.status !== 200 && r.status !== 206) throw new Error(`fromPretrained: downloading ${file} failed (HTTP ${r.status})`);
    if (r.status === 200) have = 0;  // the server ignored the range: start over
    const out = fs.openSync(partial, have > 0 ? 'a' : 'w');
    try {
      const reader = r.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read().catch((e: Error) => {
          throw new Error(`fromPretrained: the download of ${file} broke off at ${have} of ${size} bytes (${e.message}); call again to resume`);
        });
        if (done) break;
        fs.writeSync(out, value);
        have += value.byteLength;
        progress({ file, received: have, total: size });
      }
      fs.fsyncSync(out);
    } finally {
      fs.closeSync(out);
    }
  }
  const got = fs.statSync(partial).size;
  if (got !== size) throw new Error(`fromPretrained: the download of ${file} ended at ${got} of ${size} bytes; call again to resume`);
  fs.renameSync(partial, blob);
}

function link(at: string, blob: string): void {
  fs.mkdirSync(path.dirname(at), { recursive: true });
  const target = path.relative(path.dirname(at), blob);
  try {
    if (fs.readlinkSync(at) === target) return;
    fs.rmSync(at);
  } catch {
    // not there yet
  }
  fs.symlinkSync(target, at);
}

function progressReporter(p: HubDownloadOptions['progress']): (e: DownloadProgress) => void {
  if (typeof p === 'function') return p;
  if (p === false || (p === undefined && !process.stderr.isTTY)) return () => {};
  let last = 0;
  const t0 = Date.now();
  return (e) => {
    const now = Date.now();
    if (now - last < 200 && e.received < e.total) return;
    last = now;
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    const rate = e.received / 2 ** 20 / Math.max((now - t0) / 1000, 1e-3);
    process.stderr.write(`\r${e.file}: ${mb(e.received)} / ${mb(e.total)} MiB (${rate.toFixed(1)} MiB/s)${e.received >= e.total ? '\n' : ''}`);
  };
}
