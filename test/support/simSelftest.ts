// Helpers for test/sim.test.ts: device buffers holding exact bytes, raw reads (bit patterns and u32 registers
// come back unconverted), and the references: bf16/f16 decoding in float64 and
// round-to-nearest-even found by searching the representable neighbours (no bit tricks shared with the code
// under test).
import type { Device } from '../../ts';
import type { NativeBuffer } from '../../ts/native';
import { selftestAddon } from './selftestAddon';
import type { SelftestAddon } from './selftestAddon';

// The buffers belong to the test addon, whose self-tests read them (test/sim.test.ts runs only where it is built).
const native = selftestAddon as SelftestAddon;

export function f32Buffer(device: Device, data: Float32Array): NativeBuffer {
  const buf = native.alloc(device, data.byteLength);
  native.upload(buf, data, 'f32');
  return buf;
}

/** The bytes of data as they are (an Int32Array upload is a plain copy). */
export function bitsBuffer(device: Device, data: Int32Array | Uint32Array | Uint16Array): NativeBuffer {
  const words = new Int32Array(Math.ceil(data.byteLength / 4));
  new Uint8Array(words.buffer).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  const buf = native.alloc(device, words.byteLength);
  native.upload(buf, words, 'i32');
  return buf;
}

export const filledF32 = (n: number, value: number): Float32Array => new Float32Array(n).fill(value);

export const readF32 = async (buf: NativeBuffer, n: number) => new Float32Array(await native.readBytes(buf, 4 * n));
export const readI32 = async (buf: NativeBuffer, n: number) => new Int32Array(await native.readBytes(buf, 4 * n));
export const readU32 = async (buf: NativeBuffer, n: number) => new Uint32Array(await native.readBytes(buf, 4 * n));
export const readU16 = async (buf: NativeBuffer, n: number) => new Uint16Array(await native.readBytes(buf, 2 * n));

/** The bit pattern of x rounded to float32, as an int32. */
export function bitsOfF32(x: number): number {
  return new Int32Array(Float32Array.of(x).buffer)[0];
}

export function decodeBf16(h: number): number {
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0xff) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -133 : s * (128 + m) * 2 ** (e - 134);
}

export function decodeF16(h: number): number {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (1024 + m) * 2 ** (e - 25);
}

interface Format16 {
  decode: (h: number) => number;
  maxFinite: number;
  /** The midpoint between the largest finite value and the next power of two: from there on, ±inf. */
  overflowAt: number;
}
export const BF16: Format16 = { decode: decodeBf16, maxFinite: 0x7f7f, overflowAt: 2 ** 128 - 2 ** 119 };
export const F16: Format16 = { decode: decodeF16, maxFinite: 0x7bff, overflowAt: 65520 };

/** Round-to-nearest-even of x to a 16-bit format's bit pattern; NaN gives 0x7fff. */
export function referenceRound(x: number, f: Format16): number {
  if (Number.isNaN(x)) return 0x7fff;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= f.overflowAt) return sign | (f.maxFinite + 1);
  let lo = 0; // largest pattern whose value is <= a (magnitudes grow with the pattern)
  let hi = f.maxFinite;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f.decode(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  let best = lo;
  if (lo < f.maxFinite) {
    const below = a - f.decode(lo);
    const above = f.decode(lo + 1) - a;
    if (above < below || (above === below && ((lo + 1) & 1) === 0)) best = lo + 1;
  }
  return sign | best;
}

/** n bit patterns of uniform [lo, hi) float32 values rounded to the format. */
export function randomBits(n: number, r: () => number, f: Format16, lo = -1, hi = 1): Uint16Array {
  return Uint16Array.from({ length: n }, () => referenceRound(Math.fround(lo + (hi - lo) * r()), f));
}

/** max() that keeps a NaN (Math.max does too; spelled out because the checks rely on it). */
export const worstOf = (worst: number, e: number): number => (Number.isNaN(e) || Number.isNaN(worst) ? NaN : Math.max(worst, e));
