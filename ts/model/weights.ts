// Fills a module tree from a checkpoint: every parameter and buffer is read under its own key, checked against
// the shape the module has, and uploaded into the module's tensor (converted to its dtype on the way: F32, BF16,
// F16 and F64 checkpoints all load into an f32 or bf16 model).
import * as fs from 'fs';
import * as path from 'path';

import { SafetensorsFile } from '../io/safetensors';
import { native } from '../native';
import type { Module } from '../nn/module';
import { Parameter } from '../nn/parameter';

const quote = (k: string) => `'${k}'`;

/**
 * Reads every parameter and buffer of m from file and returns the file's keys that were not read, for the caller
 * to judge. Missing tensors are one Error naming the file and all of them (a checkpoint of another variant is
 * missing many, and one at a time would take as many attempts to see); a misshapen tensor is an Error naming it.
 */
export async function fillFromCheckpoint(m: Module, file: SafetensorsFile, prefix: string, probe = 'model.patch_generator.embedder.weight'): Promise<string[]> {
  // Keys with or without the prefix: whichever the probe (a key every checkpoint of the architecture has) is stored under.
  const bare = !file.has(`${prefix}${probe}`);
  const wanted = [...m.namedParameters(), ...m.namedBuffers()].map(([key, t]) => ({ k: bare && key.startsWith(prefix) ? key.slice(prefix.length) : key, t }));
  const missing = wanted.filter(({ k }) => !file.has(k)).map(({ k }) => k);
  if (missing.length === 1) throw new Error(`${file.file}: missing tensor ${quote(missing[0])}`);
  if (missing.length > 1) throw new Error(`${file.file}: missing ${missing.length} tensors: ${missing.map(quote).join(', ')}`);
  for (const { k, t } of wanted) {
    const { data } = await file.readFloat(k, t.shape);
    native.upload(t.native('load'), data, t.dtype);
    if (t instanceof Parameter) t.markModified();
  }
  const read = new Set(wanted.map(({ k }) => k));
  return file.keys().filter((k) => !read.has(k));
}

/**
 * dir (a checkpoint folder) checked, then dir/config.json parsed: each problem an Error naming the folder or file.
 * `op` names the loader in the folder errors.
 */
export async function readCheckpointConfig(op: string, dir: unknown): Promise<{ json: unknown; configPath: string }> {
  if (typeof dir !== 'string' || dir === '') throw new Error(`${op}: dir must be a checkpoint folder path, got ${JSON.stringify(dir)}`);
  const dirStat = await fs.promises.stat(dir).catch((e: Error) => {
    throw new Error(`${op}: cannot open the checkpoint folder ${dir} (${e.message})`);
  });
  if (!dirStat.isDirectory()) throw new Error(`${op}: ${dir} is not a folder (expected one holding config.json and model.safetensors)`);
  const configPath = path.join(dir, 'config.json');
  try {
    // Checked first: reading a FIFO or a device would wait forever for a writer.
    if (!(await fs.promises.stat(configPath)).isFile()) throw new Error('not a regular file');
    return { json: JSON.parse(await fs.promises.readFile(configPath, 'utf8')), configPath };
  } catch (e) {
    throw new Error(`${configPath}: cannot read the RADIO config (${(e as Error).message})`);
  }
}

/** Where a loader's warnings go when the caller gives no onWarning: process warnings of type RadioCheckpointWarning. */
export function checkpointWarner(onWarning?: (message: string) => void): (message: string) => void {
  return onWarning ?? ((m: string) => process.emitWarning(m, 'RadioCheckpointWarning'));
}

/** One warning listing every checkpoint tensor no module read (sorted), or none when there are none. */
export function warnUnreadTensors(file: string, unread: readonly string[], warn: (message: string) => void): void {
  if (unread.length)
    warn(`${file}: ${unread.length} tensor${unread.length > 1 ? 's' : ''} that no module reads, ignored: ${[...unread].sort().map(quote).join(', ')}`);
}
