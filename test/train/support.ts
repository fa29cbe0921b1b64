// Shared pieces of the trainer tests: the embedded RADIO checkpoint as teacher, tiny students made for it, and
// temporary folders.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { createStudent, nn } from '../../ts';
import type { RadioConfig } from '../../ts';
import { parseRadioConfig } from '../../ts/model/config';
import { studentSpecFor } from '../../ts/train/student';

/** D 64, depth 4, adaptors clip (32), dino_v2 (48), sam (40, no summary). */
export const TEACHER_DIR = path.join(__dirname, '..', 'fixtures', 'radio', 'vit-b16-v2heads');
export const REGISTER = path.join(__dirname, '..', 'reliability', 'children', 'register.js');

export function teacherConfig(): RadioConfig {
  return parseRadioConfig(JSON.parse(fs.readFileSync(path.join(TEACHER_DIR, 'config.json'), 'utf8')), 'teacher');
}

/** A random-init student for the embedded teacher's heads: D 64, depth 2 unless told otherwise. */
export async function makeStudent(dir: string, o: { embedDim?: number; depth?: number; heads?: number; seed?: number } = {}): Promise<string> {
  await createStudent(dir, studentSpecFor(teacherConfig(), { embedDim: o.embedDim ?? 64, depth: o.depth ?? 2, heads: o.heads ?? 2 }), { seed: o.seed ?? 1 });
  return dir;
}

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `am-radio-${tag}-`));
}

/** Every parameter and buffer of a model, by key, as plain arrays. */
export async function weightsOf(m: nn.Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, t] of [...m.namedParameters(), ...m.namedBuffers()]) out.set(k, await t.toArray());
  return out;
}

/** Keys whose values differ bit for bit (NaN payloads included) between two weight maps. */
export function differingKeys(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => {
    const x = a.get(k);
    const y = b.get(k);
    if (!x || !y || x.length !== y.length) return true;
    const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const v = new Uint32Array(y.buffer, y.byteOffset, y.length);
    return u.some((w, i) => w !== v[i]);
  });
}

/** How far two weight maps (the same keys and sizes) are apart: relative RMS over all values, and the worst absolute difference. */
export function weightDistance(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { rms: number; worst: number } {
  let num = 0;
  let den = 0;
  let worst = 0;
  for (const [k, x] of b) {
    const y = a.get(k);
    if (!y || y.length !== x.length) throw new Error(`weightDistance: ${k} is ${y ? `${y.length} values against ${x.length}` : 'missing'}`);
    for (let j = 0; j < x.length; j++) {
      num += (x[j] - y[j]) ** 2;
      den += x[j] ** 2;
      worst = Math.max(worst, Math.abs(x[j] - y[j]));
    }
  }
  if (a.size !== b.size) throw new Error(`weightDistance: ${a.size} keys against ${b.size}`);
  return { rms: Math.sqrt(num / den), worst };
}
