// Reading the reference implementation's eval fixtures (test/fixtures/radio/<case>/) and making edited copies of
// their checkpoints, for the RADIO model tests (jest only).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { SafetensorsFile } from '../../ts';
import type { SafetensorsWriteEntry } from '../../ts';

export const RADIO_FIXTURES = path.join(__dirname, '..', 'fixtures', 'radio');

/** Every tensor of a fixture's io.safetensors (or io-HxW.safetensors), as f32. */
export async function readIo(file: string): Promise<Map<string, { data: Float32Array; shape: number[] }>> {
  const io = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, { data: Float32Array; shape: number[] }>();
    for (const k of io.keys()) out.set(k, await io.readFloat(k));
    return out;
  } finally {
    await io.close();
  }
}

/** A checkpoint's tensors as write entries (floats as F32, integers as I64), to edit and write again. */
export async function readEntries(file: string): Promise<Record<string, SafetensorsWriteEntry>> {
  const src = await SafetensorsFile.open(file);
  try {
    const entries: Record<string, SafetensorsWriteEntry> = {};
    for (const [k, e] of src.entries)
      entries[k] = e.dtype === 'I64' ? { dtype: 'I64', shape: e.shape, data: (await src.readInts(k)).data } : { dtype: 'F32', shape: e.shape, data: (await src.readFloat(k)).data };
    return entries;
  } finally {
    await src.close();
  }
}

/** err ≤ bound, with what, err and bound in the failure's diff. */
export function expectWithin(what: string, err: number, bound: number): void {
  expect({ what, err, bound, ok: err <= bound }).toEqual({ what, err, bound, ok: true });
}

/** A temporary folder for the enclosing describe block (made before its tests, removed after): call dir() inside tests. */
export function useTmpDir(prefix: string): { dir(): string } {
  let tmp = '';
  beforeAll(async () => {
    tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix));
  });
  afterAll(async () => {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  });
  return { dir: () => tmp };
}
