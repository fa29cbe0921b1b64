// safetensors files: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the raw little-endian tensor bytes. The reader checks the whole header when the file is opened and reads
// tensors on demand, so a multi-gigabyte checkpoint is never held in memory at once. Every Error names the file.
import * as fs from 'fs';
import * as path from 'path';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const ITEM_SIZE: Record<SafetensorsDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const FLOAT_DTYPES: readonly SafetensorsDType[] = ['F64', 'F32', 'F16', 'BF16'];
const INT_DTYPES: readonly SafetensorsDType[] = ['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];
// A header larger than this is not a real checkpoint's (the format's own reference caps it at 100 MB).
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the data section (after the header). */
  begin: number;
  end: number;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
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
    U8: (i) => view.getUint8(i),
    BOOL: (i) => view.getUint8(i),
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = get[dtype](i);
  return out;
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

  /** Opens the file and validates its header: every entry's dtype, shape and byte range. */
  static async open(file: string): Promise<SafetensorsFile> {
    let fd: fs.promises.FileHandle;
    try {
      fd = await fs.promises.open(file, 'r');
    } catch (e) {
      throw new Error(`${file}: cannot open safetensors file (${(e as Error).message})`);
    }
    try {
      const size = (await fd.stat()).size;
      if (size < 8) throw new Error(`${file}: truncated safetensors file (${size} bytes, no header length)`);
      const lenBuf = Buffer.alloc(8);
      await fd.read(lenBuf, 0, 8, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: corrupt safetensors header length ${headerLen}`);
      if (Number(headerLen) + 8 > size)
        throw new Error(`${file}: truncated safetensors file: the header needs ${headerLen} bytes but the file has ${size - 8} after the length`);
      const headerBuf = Buffer.alloc(Number(headerLen));
      await fd.read(headerBuf, 0, headerBuf.length, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (e) {
        throw new Error(`${file}: corrupt safetensors header (not JSON: ${(e as Error).message})`);
      }
      if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error(`${file}: corrupt safetensors header (not a JSON object)`);
      const dataStart = 8 + Number(headerLen);
      const dataSize = size - dataStart;
      const entries = new Map<string, SafetensorsEntry>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') {
          metadata = raw as Record<string, string>;
          continue;
        }
        entries.set(name, parseEntry(file, name, raw, dataSize));
      }
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
    if (!e) throw new Error(`${this.file}: missing tensor '${name}'`);
    if (expectedShape && fmt(e.shape) !== fmt(expectedShape))
      throw new Error(`${this.file}: tensor '${name}' has shape ${fmt(e.shape)}, expected ${fmt(expectedShape)}`);
    return e;
  }

  private async bytes(e: SafetensorsEntry): Promise<Buffer> {
    const buf = Buffer.alloc(e.end - e.begin);
    const { bytesRead } = await this.fd.read(buf, 0, buf.length, this.dataStart + e.begin);
    if (bytesRead !== buf.length) throw new Error(`${this.file}: truncated while reading tensor data`);
    return buf;
  }

  /** A floating-point tensor's values as f32 (F64, F32, F16 and BF16 are converted), checked against a shape. */
  async readFloat(name: string, expectedShape?: readonly number[]): Promise<{ data: Float32Array; shape: number[] }> {
    const e = this.entry(name, expectedShape);
    if (!FLOAT_DTYPES.includes(e.dtype)) throw new Error(`${this.file}: tensor '${name}' is ${e.dtype}, expected a floating-point dtype`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const values = decode(e.dtype, await this.bytes(e), n);
    return { data: values instanceof Float32Array ? values : Float32Array.from(values), shape: e.shape };
  }

  /** An integer tensor's values as numbers (I64 beyond 2^53 is an Error). */
  async readInts(name: string, expectedShape?: readonly number[]): Promise<{ data: number[]; shape: number[] }> {
    const e = this.entry(name, expectedShape);
    if (!INT_DTYPES.includes(e.dtype)) throw new Error(`${this.file}: tensor '${name}' is ${e.dtype}, expected an integer dtype`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const data = Array.from(decode(e.dtype, await this.bytes(e), n));
    if (data.some((v) => !Number.isSafeInteger(v))) throw new Error(`${this.file}: tensor '${name}' holds integers beyond 2^53`);
    return { data, shape: e.shape };
  }

  async close(): Promise<void> {
    await this.fd.close();
  }
}

function parseEntry(file: string, name: string, raw: unknown, dataSize: number): SafetensorsEntry {
  const bad = (why: string) => new Error(`${file}: corrupt safetensors header: tensor '${name}' ${why}`);
  if (!raw || typeof raw !== 'object') throw bad('is not an object');
  const { dtype, shape, data_offsets: offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string' || !(dtype in ITEM_SIZE)) throw bad(`has unsupported dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(`has a bad shape ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((o) => !Number.isSafeInteger(o) || o < 0) || offsets[1] < offsets[0])
    throw bad(`has bad data_offsets ${JSON.stringify(offsets)}`);
  const [begin, end] = offsets as [number, number];
  const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * ITEM_SIZE[dtype as SafetensorsDType];
  if (end - begin !== bytes) throw bad(`spans ${end - begin} bytes, but ${dtype} ${fmt(shape as number[])} needs ${bytes}`);
  if (end > dataSize) throw new Error(`${file}: truncated safetensors file: tensor '${name}' ends at byte ${end} of a ${dataSize}-byte data section`);
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end };
}

/** A tensor to write: f32 values stored as dtype (F32, BF16 rounded to nearest even, or I64/I32 integers). */
export interface SafetensorsWriteEntry {
  dtype: 'F32' | 'BF16' | 'I64' | 'I32';
  shape: readonly number[];
  data: ArrayLike<number>;
}

function encode(file: string, name: string, t: SafetensorsWriteEntry): Buffer {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new Error(`${file}: tensor '${name}' has ${t.data.length} values for shape ${fmt(t.shape)}`);
  const buf = Buffer.alloc(n * ITEM_SIZE[t.dtype]);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    const v = t.data[i];
    if (t.dtype === 'F32') buf.writeFloatLE(v, 4 * i);
    else if (t.dtype === 'I32') buf.writeInt32LE(v, 4 * i);
    else if (t.dtype === 'I64') buf.writeBigInt64LE(BigInt(v), 8 * i);
    else {
      f[0] = v;
      buf.writeUInt16LE(((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) & 0xffff, 2 * i);
    }
  }
  return buf;
}

/** Writes a safetensors file atomically (a temporary file in the same folder, then a rename). */
export async function writeSafetensors(file: string, tensors: Record<string, SafetensorsWriteEntry>, metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = encode(file, name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data section starts 8-byte aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await fs.promises.writeFile(tmp, Buffer.concat([len, Buffer.from(json), ...parts]));
  await fs.promises.rename(tmp, file);
}
