// The safetensors reader against hand-built hostile files, and the writer: exact round trips of every dtype, its
// refusals, and atomicity under concurrent writers and a writer killed mid-write. Files are decoded here
// independently of the reader, so a reader and writer that agree on a mistake still fail.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { tensor } from '../../ts';
import { MAX_HEADER_BYTES, SafetensorsFile, writeSafetensors } from '../../ts/io/safetensors';
import type { SafetensorsDType, SafetensorsWriteInput } from '../../ts/io/safetensors';

const CHILDREN = path.join(__dirname, 'children');

let tmp: string;
beforeAll(async () => {
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-safetensors-'));
});
afterAll(async () => {
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

let counter = 0;
/** A fresh folder per test, so listing it shows exactly what one write left behind. */
async function freshDir(label: string): Promise<string> {
  const dir = path.join(tmp, `${label}-${counter++}`);
  await fs.promises.mkdir(dir);
  return dir;
}

/** A file laid out by hand: 8-byte length (the header's unless given), header bytes, then `data` bytes. */
function stBytes(header: object | string | Buffer, data: number | Buffer = 0, headerLen?: bigint): Buffer {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(h.length));
  return Buffer.concat([len, h, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

const f32 = (offsets: [number, number], shape = [2]) => ({ dtype: 'F32', shape, data_offsets: offsets });

/** The tensor bytes of `name`, located by this file's own reading of the header. */
function rawTensor(file: string, name: string): { dtype: string; shape: number[]; bytes: Buffer } {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const { dtype, shape, data_offsets: [s, e] } = header[name];
  return { dtype, shape, bytes: b.subarray(8 + n + s, 8 + n + e) };
}

function u16s(bytes: Buffer): number[] {
  return Array.from({ length: bytes.length / 2 }, (_, i) => bytes.readUInt16LE(2 * i));
}

function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1024 + f) * 2 ** (e - 25);
}

function tempsIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));
}

describe('SafetensorsFile.open refuses a hostile file, naming the file and the field', () => {
  test('a hand-built valid file opens (so each refusal below is about its one defect)', async () => {
    const file = path.join(await freshDir('valid'), 'valid.safetensors');
    const header = { __metadata__: { format: 'pt' }, a: f32([0, 8]), __proto__x: f32([8, 16]), empty: f32([16, 16], [0, 3]), b: { dtype: 'U16', shape: [2], data_offsets: [16, 20] } };
    const data = Buffer.alloc(20);
    data.writeFloatLE(1.5, 0);
    data.writeUInt16LE(65535, 16);
    fs.writeFileSync(file, stBytes(header, data));
    const st = await SafetensorsFile.open(file);
    expect(st.keys()).toEqual(['a', '__proto__x', 'empty', 'b']);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(Array.from((await st.readFloat('a')).data)).toEqual([1.5, 0]);
    expect((await st.readInts('b')).data).toEqual([65535, 0]);
    await st.close();
  });

  const cases: [string, Buffer, string][] = [
    ['overlap', stBytes({ a: f32([0, 8]), b: f32([4, 12]) }, 12), "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"],
    ['hole', stBytes({ a: f32([0, 8]), b: f32([12, 20]) }, 20), "tensor 'b': data_offsets [12, 20] leave a hole of 4 bytes after tensor 'a' [0, 8]"],
    ['trailing', stBytes({ a: f32([0, 8]) }, 12), "4 trailing bytes after the last tensor's data (tensor 'a' ends at 8, the data section has 12 bytes)"],
    ['no-tensors-trailing', stBytes({}, 4), 'no tensors, but 4 bytes of data follow the header'],
    ['not-from-zero', stBytes({ a: f32([4, 12]) }, 12), "tensor 'a': data_offsets [4, 12] do not start at 0"],
    ['end-before-begin', stBytes({ a: f32([8, 4]) }, 8), "tensor 'a' has bad data_offsets [8, 4]: the end is before the begin"],
    ['float-offset', stBytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', 8), "tensor 'a' has bad data_offsets [0, 8.0]: 8.0 is not a non-negative integer"],
    ['one-offset', stBytes({ a: { dtype: 'F32', shape: [0], data_offsets: [0] } }), "tensor 'a' has bad data_offsets [0] (expected [begin, end])"],
    ['duplicate', stBytes(`{"a":${JSON.stringify(f32([0, 8]))},"a":${JSON.stringify(f32([8, 16]))}}`, 16), "tensor 'a' is listed twice"],
    ['duplicate-field', stBytes('{"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}}', 8), "tensor 'a': dtype is listed twice"],
    ['duplicate-metadata-key', stBytes('{"__metadata__":{},"__metadata__":{}}'), '__metadata__ is listed twice'],
    ['duplicate-metadata', stBytes('{"__metadata__":{"k":"1","k":"2"}}'), "__metadata__ key 'k' is listed twice"],
    ['metadata-number', stBytes({ __metadata__: { epoch: 3 }, a: f32([0, 8]) }, 8), "__metadata__ 'epoch' is a number (3), not a string"],
    ['metadata-array', stBytes({ __metadata__: ['x'] }), '__metadata__ is an array, not an object of strings'],
    ['name-bad-utf8', stBytes(Buffer.concat([Buffer.from('{"w'), Buffer.from([0xff]), Buffer.from(`x":${JSON.stringify(f32([0, 8]))}}`)]), 8), 'the tensor name "w\ufffdx" is not valid UTF-8 (byte 3 of the header)'],
    ['name-overlong-utf8', stBytes(Buffer.concat([Buffer.from('{"a'), Buffer.from([0xc0, 0xaf]), Buffer.from(`":${JSON.stringify(f32([0, 8]))}}`)]), 8), 'the tensor name "a\ufffd\ufffd" is not valid UTF-8'],
    ['metadata-bad-utf8', stBytes(Buffer.concat([Buffer.from('{"__metadata__":{"k":"v'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}}')])), 'the string "v\ufffd\ufffd\ufffd" is not valid UTF-8'],
    ['name-lone-surrogate', stBytes(`{"\\ud800":${JSON.stringify(f32([0, 8]))}}`, 8), 'tensor name "\\ud800" is not valid UTF-8 (it escapes a lone surrogate)'],
    ['header-past-eof', stBytes('{}', 0, 1000n), 'truncated safetensors file: the header needs 1000 bytes but the file has 2 after the length'],
    ['header-over-cap', stBytes('{}', 0, BigInt(MAX_HEADER_BYTES + 1)), `corrupt safetensors header length ${MAX_HEADER_BYTES + 1} (over the 100000000-byte limit)`],
    ['not-json', stBytes('{"a":', 0), 'corrupt safetensors header (not JSON: unexpected end of input'],
    ['not-object', stBytes('[1]'), 'corrupt safetensors header (not a JSON object)'],
    ['leading-space', stBytes(' {}'), "the header must begin with '{', not whitespace"],
    ['too-deep', stBytes(`{"__metadata__":${'['.repeat(200)}${']'.repeat(200)}}`), 'not JSON: nesting deeper than 128'],
    ['size-mismatch', stBytes({ a: f32([0, 8], [3]) }, 8), "tensor 'a' spans 8 bytes, but F32 [3] needs 12"],
    ['size-overflow', stBytes({ a: { dtype: 'U8', shape: [2 ** 31, 2 ** 31, 2 ** 31], data_offsets: [0, 0] } }), "tensor 'a' spans 0 bytes, but U8 [2147483648, 2147483648, 2147483648] needs 9903520314283042199192993792"],
    ['negative-shape', stBytes({ a: f32([0, 8], [-2]) }, 8), "tensor 'a' has a bad shape [-2]: dimension 0 is negative"],
    ['fractional-shape', stBytes({ a: f32([0, 8], [1.5, 4]) }, 8), "tensor 'a' has a bad shape [1.5, 4]: dimension 0 (1.5) is not an integer"],
    ['float-shape', stBytes('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', 8), "tensor 'a' has a bad shape [2.0]: dimension 0 (2.0) is not an integer"],
    ['string-shape', stBytes({ a: f32([0, 8], ['2'] as never) }, 8), "tensor 'a' has a bad shape [\"2\"]: dimension 0 is a string"],
    ['no-shape', stBytes({ a: { dtype: 'F32', data_offsets: [0, 8] } }, 8), "tensor 'a' has no shape"],
    ['unknown-dtype', stBytes({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, 8), "tensor 'a' has unsupported dtype \"Q4\""],
    ['entry-not-object', stBytes({ a: 7 }), "tensor 'a' is a number, not an object"],
    ['data-past-eof', stBytes({ a: f32([0, 8]) }, 4), "truncated safetensors file: tensor 'a' ends at byte 8 of a 4-byte data section"],
  ];
  test.each(cases)('%s', async (label, bytes, message) => {
    const file = path.join(tmp, `${label}.safetensors`);
    fs.writeFileSync(file, bytes);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: `);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(message);
  });

  test('a directory', async () => {
    const dir = await freshDir('a-directory.safetensors');
    await expect(SafetensorsFile.open(dir)).rejects.toThrow(`${dir}: cannot open safetensors file: it is a directory, not a regular file`);
  });

  test('a FIFO, directly and through a symlink, is refused at once instead of waiting for a writer', async () => {
    const dir = await freshDir('fifo');
    const fifo = path.join(dir, 'model.safetensors');
    execFileSync('mkfifo', [fifo]);
    const link = path.join(dir, 'link.safetensors');
    fs.symlinkSync(fifo, link);
    for (const p of [fifo, link]) {
      const t0 = Date.now();
      const r = spawnSync(process.execPath, [path.join(CHILDREN, 'open.js'), p], { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' });
      expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
      expect(JSON.parse(r.stdout)).toEqual({ error: `${p}: cannot open safetensors file: it is a FIFO, not a regular file` });
      expect(Date.now() - t0).toBeLessThan(20_000);
    }
  });

  test('a missing file', async () => {
    const file = path.join(tmp, 'missing.safetensors');
    await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: cannot open safetensors file (ENOENT`);
  });
});

describe('writeSafetensors round trips', () => {
  test('every dtype it writes, bit for bit, with NaN, ±Infinity, -0 and range ends', async () => {
    const file = path.join(await freshDir('dtypes'), 'all.safetensors');
    const bf16In = new Float32Array(10);
    new Uint32Array(bf16In.buffer).set([0x3f800000, 0x3f808000, 0x3f818000, 0x80000000, 0x7f800000, 0xff800000, 0x7f7fffff, 0x7f800001, 0x7fffffff, 0xffc00000]);
    const ints: Record<string, number[]> = {
      I64: [-(2 ** 63), 2 ** 63 - 1024, -1, 0, 2 ** 53 + 2],
      I32: [-(2 ** 31), 2 ** 31 - 1, -1, 0],
      I16: [-32768, 32767, -1],
      I8: [-128, 127, -1],
      U64: [0, 2 ** 64 - 2048, 2 ** 53],
      U32: [0, 2 ** 32 - 1],
      U16: [0, 65535],
      U8: [0, 255],
      BOOL: [0, 1, 1, 0],
    };
    const f64 = [0, -0, 1 / 3, -1e308, 5e-324, Infinity, -Infinity, NaN];
    const f32In = Float32Array.from([0, -0, 1 / 3, 3.4028234663852886e38, 1e-45, Infinity, -Infinity, NaN]);
    await writeSafetensors(
      file,
      {
        f64: { dtype: 'F64', shape: [2, 4], data: f64 },
        f32: { dtype: 'F32', shape: [8], data: f32In },
        f32FromNumbers: { dtype: 'F32', shape: [8], data: Array.from(f32In) },
        bf16: { dtype: 'BF16', shape: [10], data: bf16In },
        f16: { dtype: 'F16', shape: [14], data: [0, -0, 1, 65504, 65519, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, NaN, -Infinity, 0.1] },
        ...Object.fromEntries(Object.entries(ints).map(([d, v]) => [d.toLowerCase(), { dtype: d as SafetensorsDType, shape: [v.length], data: v }])),
      },
      Object.fromEntries([['note', 'round trip'], ['__proto__', 'a key like any other']]),
    );
    const r = (n: string) => rawTensor(file, n);
    expect(Array.from({ length: 8 }, (_, i) => r('f64').bytes.readDoubleLE(8 * i))).toEqual(f64);
    expect(r('f64').shape).toEqual([2, 4]);
    for (const n of ['f32', 'f32FromNumbers']) expect(Array.from({ length: 8 }, (_, i) => r(n).bytes.readFloatLE(4 * i))).toEqual(Array.from(f32In));
    // Ties go to even; the largest f32 overflows to Infinity; NaNs stay NaN (quiet, with their sign and top payload).
    expect(u16s(r('bf16').bytes)).toEqual([0x3f80, 0x3f80, 0x3f82, 0x8000, 0x7f80, 0xff80, 0x7f80, 0x7fc0, 0x7fff, 0xffc0]);
    expect(u16s(r('f16').bytes)).toEqual([0x0000, 0x8000, 0x3c00, 0x7bff, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0002, 0x3c00, 0x3c02, 0x7e00, 0xfc00, 0x2e66]);
    const b = r('i64').bytes;
    expect(Array.from({ length: 5 }, (_, i) => b.readBigInt64LE(8 * i))).toEqual([-(2n ** 63n), 2n ** 63n - 1024n, -1n, 0n, 2n ** 53n + 2n]);
    const u = r('u64').bytes;
    expect(Array.from({ length: 3 }, (_, i) => u.readBigUInt64LE(8 * i))).toEqual([0n, 2n ** 64n - 2048n, 2n ** 53n]);
    const read: Record<string, (b: Buffer, i: number) => number> = {
      I32: (b, i) => b.readInt32LE(4 * i), I16: (b, i) => b.readInt16LE(2 * i), I8: (b, i) => b.readInt8(i),
      U32: (b, i) => b.readUInt32LE(4 * i), U16: (b, i) => b.readUInt16LE(2 * i), U8: (b, i) => b.readUInt8(i), BOOL: (b, i) => b.readUInt8(i),
    };
    for (const [d, get] of Object.entries(read)) {
      const t = r(d.toLowerCase());
      expect([t.dtype, Array.from({ length: ints[d].length }, (_, i) => get(t.bytes, i))]).toEqual([d, ints[d]]);
    }
    // And the reader agrees.
    const st = await SafetensorsFile.open(file);
    expect(st.metadata).toEqual(Object.fromEntries([['note', 'round trip'], ['__proto__', 'a key like any other']]));
    expect(Array.from((await st.readFloat('bf16')).data).map((v) => (Number.isNaN(v) ? 'NaN' : v))).toEqual([1, 1, 1 + 2 ** -6, -0, Infinity, -Infinity, Infinity, 'NaN', 'NaN', 'NaN']);
    expect((await st.readInts('i32')).data).toEqual(ints.I32);
    await expect(st.readInts('i64')).rejects.toThrow(`${file}: tensor 'i64' holds integers beyond 2^53`);
    await st.close();
  });

  test('F16 rounds every half-way point to even and keeps every half exactly', async () => {
    const file = path.join(await freshDir('f16'), 'f16.safetensors');
    const halves: number[] = [];
    for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0) halves.push(h);
    // Between adjacent positive finite halves h and h + 1 the midpoint goes to the even one, and a hair above it up.
    const mids: number[] = [];
    const expected: number[] = [];
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (halfToNumber(h) + halfToNumber(h + 1)) / 2;
      mids.push(mid, -mid, mid + 2 ** -40 * mid);
      const even = h % 2 === 0 ? h : h + 1;
      expected.push(even, even | 0x8000, h + 1);
    }
    await writeSafetensors(file, {
      exact: { dtype: 'F16', shape: [halves.length], data: halves.map(halfToNumber) },
      mids: { dtype: 'F16', shape: [mids.length], data: mids },
    });
    const bad = (got: number[], want: number[]) => got.flatMap((g, i) => (g === want[i] ? [] : [`#${i}: ${g.toString(16)} != ${want[i].toString(16)}`])).slice(0, 5);
    expect(bad(u16s(rawTensor(file, 'exact').bytes), halves)).toEqual([]);
    expect(bad(u16s(rawTensor(file, 'mids').bytes), expected)).toEqual([]);
  });

  test('Tensors as data, as the whole entry, converted and reshaped; a Map; no tensors at all', async () => {
    const dir = await freshDir('tensors');
    const file = path.join(dir, 'tensors.safetensors');
    const values = Float32Array.from([1, 1 + 2 ** -8, -0, Infinity, NaN, -2.5]);
    const f = tensor(values, [2, 3]);
    const b = tensor(values, [6], { dtype: 'bf16' });
    const i = tensor([7, -8, 2 ** 20], [3], { dtype: 'i32' });
    await writeSafetensors(
      file,
      new Map<string, SafetensorsWriteInput>([
        ['f', { data: f }],
        ['bare', f],
        ['asBf16', { data: f, dtype: 'BF16', shape: [3, 2] }],
        ['b', b],
        ['i', { data: i }],
      ]),
    );
    const st = await SafetensorsFile.open(file);
    expect([...st.entries].map(([k, e]) => [k, e.dtype, e.shape])).toEqual([
      ['f', 'F32', [2, 3]], ['bare', 'F32', [2, 3]], ['asBf16', 'BF16', [3, 2]], ['b', 'BF16', [6]], ['i', 'I32', [3]],
    ]);
    for (const k of ['f', 'bare']) expect(Array.from((await st.readFloat(k)).data)).toEqual(Array.from(values));
    for (const k of ['asBf16', 'b']) expect(u16s(rawTensor(file, k).bytes)).toEqual([0x3f80, 0x3f80, 0x8000, 0x7f80, 0x7fc0, 0xc020]);
    expect((await st.readInts('i')).data).toEqual([7, -8, 2 ** 20]);
    await st.close();

    const empty = path.join(dir, 'empty.safetensors');
    await writeSafetensors(empty, {});
    const e = await SafetensorsFile.open(empty);
    expect([e.keys(), e.metadata]).toEqual([[], {}]);
    await e.close();
    expect(fs.readdirSync(dir).sort()).toEqual(['empty.safetensors', 'tensors.safetensors']);
  });
});

describe('writeSafetensors refuses what it cannot write exactly, naming the file and the tensor, and writes nothing', () => {
  const lone = 'w\ud800';
  type Args = [Parameters<typeof writeSafetensors>[1], Record<string, string>?];
  const cases: [string, () => Args, string][] = [
    ['empty name', () => [{ '': { dtype: 'F32', shape: [0], data: [] } }], 'tensor name "" is not a non-empty string'],
    ['lone surrogate', () => [{ [lone]: { dtype: 'F32', shape: [0], data: [] } }], 'tensor name "w\\ud800" is not valid UTF-8 (it holds a lone surrogate)'],
    ['__metadata__', () => [{ __metadata__: { dtype: 'F32', shape: [0], data: [] } }], "'__metadata__' cannot be a tensor name"],
    ['F8 dtype', () => [{ w: { dtype: 'F8_E4M3' as never, shape: [1], data: [1] } }], "tensor 'w' has unsupported dtype \"F8_E4M3\""],
    ['lower-case dtype', () => [{ w: { dtype: 'f32' as never, shape: [1], data: [1] } }], "tensor 'w' has unsupported dtype \"f32\""],
    ['negative dim', () => [{ w: { dtype: 'F32', shape: [-1], data: [] } }], "tensor 'w' has a bad shape [-1] (expected non-negative integers)"],
    ['fractional dim', () => [{ w: { dtype: 'F32', shape: [1.5], data: [1] } }], "tensor 'w' has a bad shape [1.5]"],
    ['shape not an array', () => [{ w: { dtype: 'F32', shape: 3 as never, data: [1, 2, 3] } }], "tensor 'w' has a bad shape 3"],
    ['too few values', () => [{ w: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] } }], "tensor 'w' has 3 values for shape [2, 2] (4 elements)"],
    ['no data', () => [{ w: { dtype: 'F32', shape: [1] } as never }], "tensor 'w' has no data"],
    ['a string as data', () => [{ w: { dtype: 'U8', shape: [2], data: 'ab' as never } }], "tensor 'w' has no data"],
    ['non-number value', () => [{ w: { dtype: 'F32', shape: [2], data: [1, '2' as never] } }], "tensor 'w': the value at index 1 is string, not a number"],
    ['fractional I32', () => [{ idx: { dtype: 'I32', shape: [3], data: [1, 2, 2.5] } }], "tensor 'idx' (I32): value 2.5 at index 2 is not an integer"],
    ['NaN I64', () => [{ idx: { dtype: 'I64', shape: [1], data: [NaN] } }], "tensor 'idx' (I64): value NaN at index 0 is not an integer"],
    ['I32 overflow', () => [{ idx: { dtype: 'I32', shape: [1], data: [2 ** 31] } }], "tensor 'idx' (I32): value 2147483648 at index 0 is out of the I32 range [-2147483648, 2147483647]"],
    ['I64 overflow', () => [{ idx: { dtype: 'I64', shape: [1], data: [2 ** 63] } }], "tensor 'idx' (I64): value 9223372036854776000 at index 0 is out of the I64 range"],
    ['negative U8', () => [{ idx: { dtype: 'U8', shape: [1], data: Int32Array.from([-1]) } }], "tensor 'idx' (U8): value -1 at index 0 is out of the U8 range [0, 255]"],
    ['BOOL 2', () => [{ m: { dtype: 'BOOL', shape: [2], data: [1, 2] } }], "tensor 'm' (BOOL): value 2 at index 1 is out of the BOOL range [0, 1]"],
    ['metadata number', () => [{}, { epoch: 3 as never }], "metadata 'epoch' is number, not a string"],
    ['metadata lone surrogate', () => [{}, { k: lone }], "metadata 'k' is not valid UTF-8"],
    ['Tensor shape mismatch', () => [{ t: { data: tensor([1, 2, 3], [3]), shape: [2, 2] } }], "tensor 't' has shape [2, 2] (4 elements), but its Tensor has 3 ([3])"],
    ['disposed Tensor', () => {
      const t = tensor([1], [1]);
      t.dispose();
      return [{ t }];
    }, "tensor 't': cannot read the Tensor's values (toArray: tensor was disposed)"],
  ];
  test.each(cases)('%s', async (label, args, message) => {
    const dir = await freshDir('refuse');
    const file = path.join(dir, `${label.replace(/\W/g, '_')}.safetensors`);
    const [tensors, metadata] = args();
    const err = await writeSafetensors(file, tensors, metadata).then(() => null, (e: Error) => e);
    expect(err?.message).toContain(`${file}: `);
    expect(err?.message).toContain(message);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a write that fails on disk names the target, not its temporary file, and removes the temporary file', async () => {
    const dir = await freshDir('disk-fail');
    const missing = path.join(dir, 'no-such-folder', 'x.safetensors');
    await expect(writeSafetensors(missing, {})).rejects.toThrow(`${missing}: cannot write safetensors file: creating a temporary file beside it failed (ENOENT: no such file or directory)`);
    const target = path.join(dir, 'taken.safetensors');
    fs.mkdirSync(path.join(target, 'inside'), { recursive: true });
    const err = await writeSafetensors(target, { w: { dtype: 'F32', shape: [1], data: [1] } }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot write safetensors file: renaming the temporary file over it failed \\((EISDIR|ENOTEMPTY|EEXIST)`));
    expect(err?.message).not.toContain('.tmp');
    expect(fs.readdirSync(dir)).toEqual(['taken.safetensors']);
    expect(fs.readdirSync(target)).toEqual(['inside']);
  });
});

/** A child process, its output so far, and its exit. */
function startChild(args: string[]): { child: ChildProcess; out: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  // 'close' comes after the output has been read to its end.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr: err })),
  );
  return { child, out: () => out, exited };
}

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** The file's single tensor 'big' holds `fill` everywhere and the metadata says so; anything else fails. */
async function expectWholeFill(file: string, fill: number, mib: number): Promise<void> {
  const st = await SafetensorsFile.open(file);
  try {
    expect([st.keys(), st.metadata]).toEqual([['big'], { fill: String(fill) }]);
    const { data } = await st.readFloat('big');
    expect(data.length).toBe((mib * 2 ** 20) / 4);
    expect(data.every((v) => v === fill)).toBe(true);
  } finally {
    await st.close();
  }
}

describe('writeSafetensors is atomic', () => {
  test('concurrent writes in one process: the file is one of them, whole, and no temporary file is left', async () => {
    const dir = await freshDir('concurrent');
    const file = path.join(dir, 'model.safetensors');
    const fills = [1, 2, 3, 4, 5, 6];
    const data = (fill: number) => new Float32Array(2 ** 18).fill(fill);
    await Promise.all(fills.map((fill) => writeSafetensors(file, { big: { dtype: 'F32', shape: [2 ** 18], data: data(fill) } }, { fill: String(fill) })));
    const st = await SafetensorsFile.open(file);
    const fill = Number(st.metadata.fill);
    await st.close();
    expect(fills).toContain(fill);
    await expectWholeFill(file, fill, 1);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('concurrent writer processes: the file is one of them, whole, and no temporary file is left', async () => {
    const dir = await freshDir('concurrent-processes');
    const file = path.join(dir, 'model.safetensors');
    const fills = [1, 2, 3];
    const children = fills.map((fill) => startChild([path.join(CHILDREN, 'write.js'), file, '16', String(fill), 'wait']));
    await until('the writers to be ready', () => children.every((c) => c.out().includes('ready')));
    for (const c of children) c.child.stdin!.write('go\n');
    for (const c of children) expect(await c.exited).toEqual({ code: 0, signal: null, stderr: '' });
    const st = await SafetensorsFile.open(file);
    const fill = Number(st.metadata.fill);
    await st.close();
    expect(fills).toContain(fill);
    await expectWholeFill(file, fill, 16);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  async function oldFile(dir: string): Promise<{ file: string; bytes: Buffer }> {
    const file = path.join(dir, 'model.safetensors');
    await writeSafetensors(file, { old: { dtype: 'I64', shape: [3], data: [1, 2, 3] } }, { version: 'old' });
    return { file, bytes: fs.readFileSync(file) };
  }

  test('a writer killed halfway through the data leaves the old file whole; the next write removes its temporary file', async () => {
    const dir = await freshDir('killed-paused');
    const { file, bytes } = await oldFile(dir);
    const c = startChild([path.join(CHILDREN, 'write.js'), file, '64', '2', 'pause']);
    await until('the writer to pause', () => c.out().includes('paused'));
    c.child.kill('SIGKILL');
    expect(await c.exited).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    const orphans = tempsIn(dir);
    expect(orphans).toHaveLength(1);
    expect(orphans[0]).toMatch(new RegExp(`^\\.model\\.safetensors\\.[0-9a-f]{8}\\.${c.child.pid}\\.[0-9a-f]{16}\\.tmp$`));
    // Partial: half the tensor data and the header.
    expect(fs.statSync(path.join(dir, orphans[0])).size).toBeLessThan(64 * 2 ** 20);
    await writeSafetensors(file, { next: { dtype: 'U8', shape: [1], data: [9] } });
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    const st = await SafetensorsFile.open(file);
    expect(st.keys()).toEqual(['next']);
    await st.close();
  });

  test('a writer SIGKILLed as soon as its temporary file appears leaves the old file or the new one, never a mix', async () => {
    const dir = await freshDir('killed-racing');
    const { file, bytes } = await oldFile(dir);
    const c = startChild([path.join(CHILDREN, 'write.js'), file, '128', '3']);
    await until('the temporary file', () => tempsIn(dir).length > 0 || c.out().includes('done'));
    c.child.kill('SIGKILL');
    const exit = await c.exited;
    // Killed, or (if it won the race) finished normally.
    expect([{ code: null, signal: 'SIGKILL', stderr: '' }, { code: 0, signal: null, stderr: '' }]).toContainEqual(exit);
    if (fs.readFileSync(file).equals(bytes)) {
      expect(tempsIn(dir)).toHaveLength(1);
    } else {
      await expectWholeFill(file, 3, 128);
      expect(tempsIn(dir)).toEqual([]);
    }
    await writeSafetensors(file, {});
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('a temporary file of a live process, or of another machine, is never removed', async () => {
    const dir = await freshDir('live-temps');
    const file = path.join(dir, 'model.safetensors');
    const host = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const other = host === '00000000' ? '11111111' : '00000000';
    const dead = spawnSync(process.execPath, ['-e', '']);
    expect(dead.status).toBe(0);
    const keep = [`.model.safetensors.${host}.${process.pid}.0123456789abcdef.tmp`, `.model.safetensors.${other}.${dead.pid}.0123456789abcdef.tmp`, `.other.safetensors.${host}.${dead.pid}.0123456789abcdef.tmp`];
    const gone = `.model.safetensors.${host}.${dead.pid}.0123456789abcdef.tmp`;
    for (const n of [...keep, gone]) fs.writeFileSync(path.join(dir, n), 'x');
    await writeSafetensors(file, {});
    expect(fs.readdirSync(dir).sort()).toEqual([...keep, 'model.safetensors'].sort());
  });
});
