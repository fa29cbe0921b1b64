// Writing safetensors files: everything is checked and encoded before the disk is touched, then the bytes go to a
// temporary file beside the target, which is flushed and renamed over it. A reader therefore sees the old file or
// the new one, whole, even if the writer is killed or two writers race; a killed writer's temporary file is
// removed by the next write to the same target.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import type { Tensor } from '../../tensor';
import { f32BitsToBf16, f64ToF16, fmt, INT_RANGE, isDType, isWellFormed, ITEM_SIZE, quote } from './dtype';
import type { SafetensorsDType } from './dtype';
import { MAX_HEADER_BYTES } from './read';

/**
 * A tensor to write: numbers stored as dtype. Floats are rounded to the nearest value, ties to even (F32 and BF16
 * from f32 bits, F16 and F64 from the number); integers must be integers within the dtype's range.
 */
export interface SafetensorsWriteEntry {
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: ArrayLike<number>;
}

/**
 * A Tensor to write, read back from its device with toArray(); dtype defaults to its own (f32 → F32, bf16 → BF16,
 * i32 → I32). toArray() gives f32 values, so an i32 Tensor is written exactly up to magnitude 2^24.
 */
export interface SafetensorsTensorWriteEntry {
  dtype?: SafetensorsDType;
  /** Defaults to the tensor's shape; another with as many elements stores it reshaped. */
  shape?: readonly number[];
  data: Tensor;
}

export type SafetensorsWriteInput = SafetensorsWriteEntry | SafetensorsTensorWriteEntry | Tensor;

const TENSOR_DTYPE: Record<string, SafetensorsDType> = { f32: 'F32', bf16: 'BF16', i32: 'I32' };
const LITTLE_ENDIAN = os.endianness() === 'LE';

// Duck-typed so that writing files does not load the native addon.
function isTensor(x: unknown): x is Tensor {
  const t = x as Tensor | null;
  return typeof t === 'object' && t !== null && typeof t.toArray === 'function' && Array.isArray(t.shape) && typeof t.dtype === 'string';
}

function encode(file: string, name: string, dtype: SafetensorsDType, data: ArrayLike<number>): Buffer {
  const n = data.length;
  const buf = Buffer.alloc(n * ITEM_SIZE[dtype]);
  const fail = (i: number, why: string) => new Error(`${file}: tensor ${quote(name)} (${dtype}): value ${String(data[i])} at index ${i} ${why}`);
  const numeric = ArrayBuffer.isView(data) && !(data instanceof BigInt64Array || data instanceof BigUint64Array);
  if (!numeric)
    for (let i = 0; i < n; i++)
      if (typeof data[i] !== 'number') throw new Error(`${file}: tensor ${quote(name)}: the value at index ${i} is ${typeof data[i]}, not a number`);
  // Raw copies keep NaN payloads and are what a little-endian host's memory already holds.
  if (LITTLE_ENDIAN && ((dtype === 'F32' && data instanceof Float32Array) || (dtype === 'F64' && data instanceof Float64Array))) {
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(buf);
    return buf;
  }
  if (dtype === 'F32') for (let i = 0; i < n; i++) buf.writeFloatLE(data[i], 4 * i);
  else if (dtype === 'F64') for (let i = 0; i < n; i++) buf.writeDoubleLE(data[i], 8 * i);
  else if (dtype === 'F16') for (let i = 0; i < n; i++) buf.writeUInt16LE(f64ToF16(data[i]), 2 * i);
  else if (dtype === 'BF16') {
    // From the f32 bits themselves when there are any, so a NaN's payload is not lost to a float64 round trip.
    const bits = data instanceof Float32Array ? new Uint32Array(data.buffer, data.byteOffset, n) : null;
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < n; i++) {
      if (bits) u[0] = bits[i];
      else f[0] = data[i];
      buf.writeUInt16LE(f32BitsToBf16(u[0]), 2 * i);
    }
  } else {
    const [lo, hi] = INT_RANGE[dtype];
    const size = ITEM_SIZE[dtype];
    for (let i = 0; i < n; i++) {
      const v = data[i];
      if (!Number.isInteger(v)) throw fail(i, 'is not an integer');
      // `hi` of the 64-bit dtypes rounds up to 2^63 or 2^64, which is itself out of range.
      if (v < lo || v > hi || ((dtype === 'I64' || dtype === 'U64') && v === hi)) throw fail(i, `is out of the ${dtype} range [${lo}, ${hi}]`);
      const at = size * i;
      if (dtype === 'I64') buf.writeBigInt64LE(BigInt(v), at);
      else if (dtype === 'U64') buf.writeBigUInt64LE(BigInt(v), at);
      else if (dtype === 'I32') buf.writeInt32LE(v, at);
      else if (dtype === 'U32') buf.writeUInt32LE(v, at);
      else if (dtype === 'I16') buf.writeInt16LE(v, at);
      else if (dtype === 'U16') buf.writeUInt16LE(v, at);
      else if (dtype === 'I8') buf.writeInt8(v, at);
      else buf.writeUInt8(v, at);
    }
  }
  return buf;
}

interface Planned {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data?: ArrayLike<number>;
  tensor?: Tensor;
}

/** Checks one entry's name, dtype and shape, before any value is read. */
function plan(file: string, name: unknown, input: SafetensorsWriteInput, seen: Set<string>): Planned {
  if (typeof name !== 'string' || name === '') throw new Error(`${file}: tensor name ${JSON.stringify(name)} is not a non-empty string`);
  const q = quote(name);
  if (!isWellFormed(name)) throw new Error(`${file}: tensor name ${q} is not valid UTF-8 (it holds a lone surrogate)`);
  if (name === '__metadata__') throw new Error(`${file}: '__metadata__' cannot be a tensor name (the format keeps it for the metadata)`);
  if (seen.has(name)) throw new Error(`${file}: tensor ${q} is given twice`);
  seen.add(name);
  const entry = (isTensor(input) ? { data: input } : input) as Partial<SafetensorsWriteEntry> | Partial<SafetensorsTensorWriteEntry> | null;
  if (typeof entry !== 'object' || entry === null) throw new Error(`${file}: tensor ${q} is ${entry === null ? 'null' : typeof entry}, not an entry {dtype, shape, data}`);
  const tensor = isTensor(entry.data) ? entry.data : undefined;
  const dtype = entry.dtype ?? (tensor ? TENSOR_DTYPE[tensor.dtype] : undefined);
  if (!isDType(dtype)) throw new Error(`${file}: tensor ${q} has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(ITEM_SIZE).join(', ')})`);
  const shape = entry.shape ?? tensor?.shape;
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw new Error(`${file}: tensor ${q} has a bad shape ${Array.isArray(shape) ? fmt(shape) : String(shape)} (expected non-negative integers)`);
  const count = shape.reduce((a: number, b: number) => a * b, 1);
  if (tensor) {
    if (count !== tensor.numel) throw new Error(`${file}: tensor ${q} has shape ${fmt(shape)} (${count} elements), but its Tensor has ${tensor.numel} (${fmt(tensor.shape)})`);
    return { name, dtype, shape: [...shape], tensor };
  }
  const data = entry.data as ArrayLike<number> | undefined;
  if (typeof data !== 'object' || data === null || !Number.isSafeInteger(data.length))
    throw new Error(`${file}: tensor ${q} has no data (expected an array of numbers, a typed array or a Tensor)`);
  if (data.length !== count) throw new Error(`${file}: tensor ${q} has ${data.length} values for shape ${fmt(shape)} (${count} elements)`);
  return { name, dtype, shape: [...shape], data };
}

function checkMetadata(file: string, metadata: unknown): [string, string][] {
  if (metadata === undefined || metadata === null) return [];
  if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new Error(`${file}: metadata must be an object of strings`);
  const out = Object.entries(metadata as Record<string, unknown>);
  for (const [k, v] of out) {
    if (!isWellFormed(k)) throw new Error(`${file}: metadata key ${quote(k)} is not valid UTF-8 (it holds a lone surrogate)`);
    if (typeof v !== 'string') throw new Error(`${file}: metadata ${quote(k)} is ${v === null ? 'null' : typeof v}, not a string`);
    if (!isWellFormed(v)) throw new Error(`${file}: metadata ${quote(k)} is not valid UTF-8 (it holds a lone surrogate)`);
  }
  return out as [string, string][];
}

// Temporary files are `.<target>.<host>.<pid>.<random>.tmp`: the random part keeps concurrent writers in one process
// apart, and host and pid say whose a leftover is, so only a dead local process's file is ever removed (a folder
// shared over the network may hold another machine's write in progress).
const HOST = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
const TEMP_SUFFIX = /^([0-9a-f]{8})\.([0-9]+)\.[0-9a-f]{16}\.tmp$/;

function tempPrefix(file: string): string {
  const base = path.basename(file);
  // A long target name is hashed, so the temporary name stays under the usual 255-byte limit.
  return `.${Buffer.byteLength(base) <= 160 ? base : crypto.createHash('sha256').update(base).digest('hex').slice(0, 32)}.`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Removes the temporary files that writers of `file` killed on this machine left behind. */
async function removeOrphans(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = tempPrefix(file);
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch {
    return; // creating the temporary file will report the real problem
  }
  for (const n of names) {
    const m = n.startsWith(prefix) ? TEMP_SUFFIX.exec(n.slice(prefix.length)) : null;
    if (m && m[1] === HOST && !alive(Number(m[2]))) await fs.promises.unlink(path.join(dir, n)).catch(() => {});
  }
}

/** An fs error's code and description, without the temporary file's path. */
function reason(e: unknown): string {
  const message = String((e as Error)?.message ?? e);
  const m = /^([A-Z][A-Z0-9_]*): ([^,]*)/.exec(message);
  return m ? `${m[1]}: ${m[2]}` : message;
}

/**
 * Writes a safetensors file atomically: a reader, a crash or a concurrent writer sees the old file or a complete new
 * one. Tensors are written in the order given; metadata is an object of strings. Every Error names `file`.
 */
export async function writeSafetensors(
  file: string,
  tensors: Readonly<Record<string, SafetensorsWriteInput>> | ReadonlyMap<string, SafetensorsWriteInput>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  if (typeof tensors !== 'object' || tensors === null) throw new Error(`${file}: tensors must be an object or a Map of entries`);
  const seen = new Set<string>();
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const planned = list.map(([name, input]) => plan(file, name, input, seen));
  const meta = checkMetadata(file, metadata);

  const items: string[] = [];
  if (metadata !== undefined && metadata !== null) items.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  const parts: Buffer[] = [];
  let offset = 0;
  for (const p of planned) {
    let data = p.data;
    if (p.tensor) {
      try {
        data = await p.tensor.toArray();
      } catch (e) {
        throw new Error(`${file}: tensor ${quote(p.name)}: cannot read the Tensor's values (${(e as Error).message})`, { cause: e });
      }
      if (data.length !== p.shape.reduce((a, b) => a * b, 1)) throw new Error(`${file}: tensor ${quote(p.name)}: its Tensor gave ${data.length} values`);
    }
    const bytes = encode(file, p.name, p.dtype, data!);
    items.push(`${JSON.stringify(p.name)}:${JSON.stringify({ dtype: p.dtype, shape: p.shape, data_offsets: [offset, offset + bytes.length] })}`);
    parts.push(bytes);
    offset += bytes.length;
  }
  // Built as text rather than through an object, where a tensor named '__proto__' would vanish.
  let json = `{${items.join(',')}}`;
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data section starts 8-byte aligned
  const header = Buffer.from(json);
  if (header.length > MAX_HEADER_BYTES) throw new Error(`${file}: the header would be ${header.length} bytes, over the readers' ${MAX_HEADER_BYTES}-byte limit`);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));

  await removeOrphans(file);
  const tmp = path.join(path.dirname(file), `${tempPrefix(file)}${HOST}.${process.pid}.${crypto.randomBytes(8).toString('hex')}.tmp`);
  let step = 'creating a temporary file beside it';
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(tmp, 'wx');
    step = 'writing';
    let pos = 0;
    for (const b of [len, header, ...parts])
      for (let done = 0; done < b.length; ) {
        const { bytesWritten } = await fh.write(b, done, b.length - done, pos);
        done += bytesWritten;
        pos += bytesWritten;
      }
    step = 'flushing it to disk';
    await fh.sync();
    await fh.close();
    fh = undefined;
    step = 'renaming the temporary file over it';
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fh?.close().catch(() => {});
    if (step !== 'creating a temporary file beside it') await fs.promises.unlink(tmp).catch(() => {});
    throw new Error(`${file}: cannot write safetensors file: ${step} failed (${reason(e)})`, { cause: e });
  }
  await syncDir(path.dirname(file));
}

/** Makes the rename itself durable where the platform allows it. */
async function syncDir(dir: string): Promise<void> {
  let h: fs.promises.FileHandle | undefined;
  try {
    h = await fs.promises.open(dir, 'r');
    await h.sync();
  } catch {
    // Windows cannot open a folder and some file systems refuse to fsync one; the rename has happened either way.
  } finally {
    await h?.close().catch(() => {});
  }
}
