// safetensors files: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the raw little-endian tensor bytes. The reader checks the whole header when the file is opened, as strictly
// as the format's reference implementation, and reads tensors on demand, so a multi-gigabyte checkpoint is never
// held in memory at once. Every Error names the file, and the tensor or field at fault.
import * as fs from 'fs';

import { f16ToF32, FLOAT_DTYPES, fmt, INT_DTYPES, isDType, isWellFormed, ITEM_SIZE, quote } from './dtype';
import type { SafetensorsDType } from './dtype';
import { JsonDuplicateKey, JsonNonInteger, JsonSyntaxError, parseStrictJson } from './json';
import type { JsonValue } from './json';

// The reference implementation's cap: a header larger than this is not a real checkpoint's, and reading it whole
// would let a hostile file ask for gigabytes.
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the data section (after the header). */
  begin: number;
  end: number;
}

// F32 and BF16 decode straight to f32 (exact); every other dtype through float64 numbers.
function decode(dtype: SafetensorsDType, bytes: Buffer, n: number): Float32Array | Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32' || dtype === 'BF16') {
    const out = new Float32Array(n);
    if (dtype === 'F32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
    else {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
    }
    return out;
  }
  const get: Record<Exclude<SafetensorsDType, 'F32' | 'BF16'>, (i: number) => number> = {
    F64: (i) => view.getFloat64(8 * i, true),
    F16: (i) => f16ToF32(view.getUint16(2 * i, true)),
    I64: (i) => Number(view.getBigInt64(8 * i, true)),
    I32: (i) => view.getInt32(4 * i, true),
    I16: (i) => view.getInt16(2 * i, true),
    I8: (i) => view.getInt8(i),
    U64: (i) => Number(view.getBigUint64(8 * i, true)),
    U32: (i) => view.getUint32(4 * i, true),
    U16: (i) => view.getUint16(2 * i, true),
    U8: (i) => view.getUint8(i),
    BOOL: (i) => view.getUint8(i),
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = get[dtype](i);
  return out;
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

const notRegular = (file: string, st: fs.Stats) => new Error(`${file}: cannot open safetensors file: it is ${kindOf(st)}, not a regular file`);

async function readFully(fd: fs.promises.FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fd.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export class SafetensorsFile {
  private constructor(
    /** The path as given, used in every message. */
    readonly file: string,
    private readonly fd: fs.promises.FileHandle,
    private readonly dataStart: number,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Opens the file and validates its header: every entry's dtype, shape and byte range, and their layout. */
  static async open(file: string): Promise<SafetensorsFile> {
    // stat first (following symlinks: hub caches link checkpoints to blobs), because opening a FIFO for reading
    // waits for a writer; O_NONBLOCK keeps that from happening if the path is swapped between stat and open.
    const cannotOpen = (e: unknown) => new Error(`${file}: cannot open safetensors file (${(e as Error).message})`, { cause: e });
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(file);
    } catch (e) {
      throw cannotOpen(e);
    }
    if (!stat.isFile()) throw notRegular(file, stat);
    let fd: fs.promises.FileHandle;
    try {
      fd = await fs.promises.open(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      throw cannotOpen(e);
    }
    try {
      const st = await fd.stat();
      if (!st.isFile()) throw notRegular(file, st);
      const size = st.size;
      if (size < 8) throw new Error(`${file}: truncated safetensors file (${size} bytes, no header length)`);
      const lenBuf = Buffer.alloc(8);
      if ((await readFully(fd, lenBuf, 0)) !== 8) throw new Error(`${file}: truncated while reading the header length`);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER_BYTES))
        throw new Error(`${file}: corrupt safetensors header length ${headerLen} (over the ${MAX_HEADER_BYTES}-byte limit)`);
      if (Number(headerLen) + 8 > size)
        throw new Error(`${file}: truncated safetensors file: the header needs ${headerLen} bytes but the file has ${size - 8} after the length`);
      const headerBuf = Buffer.alloc(Number(headerLen));
      if ((await readFully(fd, headerBuf, 8)) !== headerBuf.length) throw new Error(`${file}: truncated while reading the header`);
      const dataStart = 8 + headerBuf.length;
      const { entries, metadata } = parseHeader(file, headerBuf, size - dataStart);
      return new SafetensorsFile(file, fd, dataStart, entries, metadata);
    } catch (e) {
      await fd.close();
      throw e;
    }
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The entry, or an Error naming the file and the missing tensor. */
  entry(name: string, expectedShape?: readonly number[]): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.file}: missing tensor ${quote(name)}`);
    if (expectedShape && fmt(e.shape) !== fmt(expectedShape))
      throw new Error(`${this.file}: tensor ${quote(name)} has shape ${fmt(e.shape)}, expected ${fmt(expectedShape)}`);
    return e;
  }

  private async bytes(name: string, e: SafetensorsEntry): Promise<Buffer> {
    const buf = Buffer.alloc(e.end - e.begin);
    if ((await readFully(this.fd, buf, this.dataStart + e.begin)) !== buf.length)
      throw new Error(`${this.file}: truncated while reading tensor ${quote(name)} (the file shrank after it was opened)`);
    return buf;
  }

  /** A floating-point tensor's values as f32 (F64, F32, F16 and BF16 are converted), checked against a shape. */
  async readFloat(name: string, expectedShape?: readonly number[]): Promise<{ data: Float32Array; shape: number[] }> {
    const e = this.entry(name, expectedShape);
    if (!FLOAT_DTYPES.includes(e.dtype)) throw new Error(`${this.file}: tensor ${quote(name)} is ${e.dtype}, expected a floating-point dtype`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const values = decode(e.dtype, await this.bytes(name, e), n);
    return { data: values instanceof Float32Array ? values : Float32Array.from(values), shape: e.shape };
  }

  /** An integer tensor's values as numbers (I64 or U64 beyond 2^53 is an Error). */
  async readInts(name: string, expectedShape?: readonly number[]): Promise<{ data: number[]; shape: number[] }> {
    const e = this.entry(name, expectedShape);
    if (!INT_DTYPES.includes(e.dtype)) throw new Error(`${this.file}: tensor ${quote(name)} is ${e.dtype}, expected an integer dtype`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const data = Array.from(decode(e.dtype, await this.bytes(name, e), n));
    if (data.some((v) => !Number.isSafeInteger(v))) throw new Error(`${this.file}: tensor ${quote(name)} holds integers beyond 2^53`);
    return { data, shape: e.shape };
  }

  async close(): Promise<void> {
    await this.fd.close();
  }
}

/** Where the first byte that is not UTF-8 lies, and the JSON string around it, for a message that can name it. */
function describeBadUtf8(bytes: Buffer): string {
  const lossy = Buffer.from(bytes.toString('utf8'));
  let bad = 0;
  while (bad < bytes.length && bytes[bad] === lossy[bad]) bad++;
  // Quotes, backslashes and brackets are ASCII and never occur inside a multi-byte sequence, so a byte scan finds
  // the string that holds the bad byte and how deep it is.
  let depth = 0;
  let start = -1;
  for (let i = 0; i < bad; i++) {
    const c = bytes[i];
    if (start >= 0) {
      if (c === 0x5c) i++;
      else if (c === 0x22) start = -1;
    } else if (c === 0x22) start = i;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  const where = `byte ${bad} of the header`;
  if (start < 0) return `a byte that is not UTF-8 outside any string (${where})`;
  let end = bad;
  while (end < bytes.length && bytes[end] !== 0x22) end += bytes[end] === 0x5c ? 2 : 1;
  let next = end + 1;
  while (next < bytes.length && (bytes[next] === 0x20 || bytes[next] === 0x0a || bytes[next] === 0x0d || bytes[next] === 0x09)) next++;
  const isKey = bytes[next] === 0x3a;
  const shown = JSON.stringify(bytes.subarray(start + 1, Math.min(end, start + 1 + 200)).toString('utf8'));
  const what = isKey && depth === 1 ? 'the tensor name' : isKey ? 'the key' : 'the string';
  return `${what} ${shown} is not valid UTF-8 (${where})`;
}

const typeName = (v: JsonValue): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : v instanceof Map ? 'an object' : v instanceof JsonNonInteger ? 'a number' : `a ${typeof v}`;
const show = (v: JsonValue): string =>
  Array.isArray(v) ? `[${v.map(show).join(', ')}]` : v instanceof Map ? '{…}' : typeof v === 'string' ? JSON.stringify(v) : String(v);

/** Parses and validates a header; dataSize is the number of bytes after it. */
export function parseHeader(file: string, headerBuf: Buffer, dataSize: number): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  const corrupt = (why: string) => new Error(`${file}: corrupt safetensors header: ${why}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch {
    throw corrupt(describeBadUtf8(headerBuf));
  }
  let header: JsonValue;
  try {
    header = parseStrictJson(text);
  } catch (e) {
    if (e instanceof JsonDuplicateKey) {
      const [top, ...rest] = e.path;
      if (top === undefined) throw corrupt(e.key === '__metadata__' ? '__metadata__ is listed twice' : `tensor ${quote(e.key)} is listed twice`);
      if (top === '__metadata__' && rest.length === 0) throw corrupt(`__metadata__ key ${quote(e.key)} is listed twice`);
      throw corrupt(`${top === '__metadata__' ? '__metadata__' : `tensor ${quote(top)}`}: ${[...rest, e.key].join('.')} is listed twice`);
    }
    if (e instanceof JsonSyntaxError) throw new Error(`${file}: corrupt safetensors header (not JSON: ${e.message})`);
    throw e;
  }
  if (!(header instanceof Map)) throw new Error(`${file}: corrupt safetensors header (not a JSON object)`);
  // The reference reader refuses a header that does not begin with the brace, so no other writer relies on it.
  if (headerBuf[0] !== 0x7b) throw corrupt(`the header must begin with '{', not whitespace`);

  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of header) {
    if (!isWellFormed(name)) throw corrupt(`tensor name ${quote(name)} is not valid UTF-8 (it escapes a lone surrogate)`);
    if (name === '__metadata__') metadata = parseMetadata(raw, corrupt);
    else entries.set(name, parseEntry(file, name, raw, dataSize));
  }

  // Like the reference: sorted by offsets, each tensor starts where the one before ends, the first at 0 and the last
  // at the end of the file, so no byte belongs to two tensors and none to no tensor.
  const sorted = [...entries].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: [string, SafetensorsEntry] | undefined;
  const range = (e: SafetensorsEntry) => `[${e.begin}, ${e.end}]`;
  for (const cur of sorted) {
    const [name, e] = cur;
    if (e.begin < pos) throw corrupt(`tensor ${quote(name)}: data_offsets ${range(e)} overlap tensor ${quote(prev![0])} ${range(prev![1])}`);
    if (e.begin > pos)
      throw corrupt(
        prev
          ? `tensor ${quote(name)}: data_offsets ${range(e)} leave a hole of ${e.begin - pos} bytes after tensor ${quote(prev[0])} ${range(prev[1])}`
          : `tensor ${quote(name)}: data_offsets ${range(e)} do not start at 0 (the first ${e.begin} bytes of the data belong to no tensor)`,
      );
    pos = e.end;
    prev = cur;
  }
  if (pos !== dataSize)
    throw corrupt(
      prev
        ? `${dataSize - pos} trailing bytes after the last tensor's data (tensor ${quote(prev[0])} ends at ${pos}, the data section has ${dataSize} bytes)`
        : `no tensors, but ${dataSize} bytes of data follow the header`,
    );
  return { entries, metadata };
}

function parseMetadata(raw: JsonValue, corrupt: (why: string) => Error): Record<string, string> {
  // The reference reads __metadata__ as an optional map, so null means none.
  if (raw === null) return {};
  if (!(raw instanceof Map)) throw corrupt(`__metadata__ is ${typeName(raw)}, not an object of strings`);
  for (const [k, v] of raw) {
    if (!isWellFormed(k)) throw corrupt(`__metadata__ key ${quote(k)} is not valid UTF-8 (it escapes a lone surrogate)`);
    if (typeof v !== 'string') throw corrupt(`__metadata__ ${quote(k)} is ${typeName(v)} (${show(v)}), not a string`);
    if (!isWellFormed(v)) throw corrupt(`__metadata__ ${quote(k)} is not valid UTF-8 (it escapes a lone surrogate)`);
  }
  // fromEntries defines own properties, so a '__proto__' key stays a key rather than replacing the prototype.
  return Object.fromEntries(raw as Map<string, string>);
}

function parseEntry(file: string, name: string, raw: JsonValue, dataSize: number): SafetensorsEntry {
  const bad = (why: string) => new Error(`${file}: corrupt safetensors header: tensor ${quote(name)} ${why}`);
  if (!(raw instanceof Map)) throw bad(`is ${typeName(raw)}, not an object`);
  const dtype = raw.get('dtype');
  const shape = raw.get('shape');
  const offsets = raw.get('data_offsets');
  if (dtype === undefined) throw bad('has no dtype');
  if (!isDType(dtype)) throw bad(`has unsupported dtype ${show(dtype)}`);
  if (shape === undefined) throw bad('has no shape');
  if (!Array.isArray(shape)) throw bad(`has a bad shape ${show(shape)} (not an array)`);
  shape.forEach((d, i) => {
    if (typeof d !== 'number' && !(d instanceof JsonNonInteger)) throw bad(`has a bad shape ${show(shape)}: dimension ${i} is ${typeName(d)}`);
    if (typeof d !== 'number' || !Number.isSafeInteger(d)) throw bad(`has a bad shape ${show(shape)}: dimension ${i} (${show(d)}) is not an integer`);
    if (d < 0) throw bad(`has a bad shape ${show(shape)}: dimension ${i} is negative`);
  });
  if (offsets === undefined) throw bad('has no data_offsets');
  if (!Array.isArray(offsets) || offsets.length !== 2) throw bad(`has bad data_offsets ${show(offsets)} (expected [begin, end])`);
  for (const o of offsets)
    if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) throw bad(`has bad data_offsets ${show(offsets)}: ${show(o)} is not a non-negative integer`);
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw bad(`has bad data_offsets ${show(offsets)}: the end is before the begin`);
  // Exact, so a product past 2^53 (or 2^53 × 0) cannot round into a match.
  const dims = shape as number[];
  const bytes = dims.reduce((a, d) => a * BigInt(d), 1n) * BigInt(ITEM_SIZE[dtype]);
  if (BigInt(end - begin) !== bytes) throw bad(`spans ${end - begin} bytes, but ${dtype} ${fmt(dims)} needs ${bytes}`);
  if (end > dataSize) throw new Error(`${file}: truncated safetensors file: tensor ${quote(name)} ends at byte ${end} of a ${dataSize}-byte data section`);
  return { dtype, shape: dims, begin, end };
}
