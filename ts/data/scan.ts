// Finding a dataset's images: a folder scanned recursively, or a list file. Both give ids in a stable order, since
// the epoch permutations (and so a resumed run's data) are defined over that order.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];

export interface ImageList {
  /** Stable ids: path relative to the folder with '/' separators, or the list-file line as written. */
  ids: string[];
  /** Absolute path of each image. */
  paths: string[];
}

function isImageName(name: string): boolean {
  const dot = name.lastIndexOf('.');
  return dot > 0 && IMAGE_EXTENSIONS.includes(name.slice(dot).toLowerCase());
}

/**
 * Every .jpg/.jpeg/.png/.webp under `dir`, recursively, sorted by id (UTF-16 order, not locale, so it is the same
 * everywhere). Dot-files and dot-folders are skipped: they are macOS resource forks ("._x.jpg") and VCS metadata,
 * never images. Symlinked folders are followed once each, so a link cycle cannot loop.
 */
export function scanFolder(dir: string, field = 'dir'): ImageList {
  if (typeof dir !== 'string' || dir === '') throw new Error(`${field} must be a non-empty string`);
  const root = resolve(dir);
  if (!existsSync(root)) throw new Error(`${field}: no such folder: ${dir}`);
  if (!statSync(root).isDirectory()) throw new Error(`${field}: not a folder: ${dir}`);
  const found: string[] = [];
  const seen = new Set<string>([realpathSync(root)]);
  const stack: string[] = [''];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const target = join(root, childRel);
        const st = statSafe(target);
        if (!st) continue; // a dangling link is not an image
        isDir = st.isDirectory();
        isFile = st.isFile();
        if (isDir) {
          const real = realpathSync(target);
          if (seen.has(real)) continue;
          seen.add(real);
        }
      }
      if (isDir) stack.push(childRel);
      else if (isFile && isImageName(e.name)) found.push(childRel);
    }
  }
  if (found.length === 0) throw new Error(`no images (${IMAGE_EXTENSIONS.join(', ')}) under ${dir}`);
  found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { ids: found, paths: found.map((id) => join(root, id)) };
}

/** A list file: one image path per line, relative to the list's folder (or absolute); blank lines and `#` lines skipped. */
export function readList(file: string, field = 'list'): ImageList {
  if (typeof file !== 'string' || file === '') throw new Error(`${field} must be a non-empty string`);
  if (!existsSync(file)) throw new Error(`${field}: no such file: ${file}`);
  if (!statSync(file).isFile()) throw new Error(`${field}: not a file: ${file}`);
  const base = dirname(resolve(file));
  const ids: string[] = [];
  const paths: string[] = [];
  const lineOf = new Map<string, number>();
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const path = resolve(base, line);
      const st = statSafe(path);
      if (!st || !st.isFile()) throw new Error(`${field}: ${file}:${i + 1}: no such image file: ${line}`);
      // Ids key feature shards, so two lines naming one image would silently share (or overwrite) an entry.
      const prev = lineOf.get(path);
      if (prev !== undefined) throw new Error(`${field}: ${file}:${i + 1}: ${line} is already listed on line ${prev}`);
      lineOf.set(path, i + 1);
      ids.push(line);
      paths.push(path);
    });
  if (ids.length === 0) throw new Error(`${field}: ${file} lists no images`);
  return { ids, paths };
}

function statSafe(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** FNV-1a over the ids: a cheap fingerprint so restoring a state onto a different dataset is refused. */
export function fingerprint(ids: readonly string[]): string {
  let h = 0x811c9dc5;
  for (const id of ids) {
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 0x0a, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}
