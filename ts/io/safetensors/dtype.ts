// The dtypes this package reads and writes, their sizes, and the float conversions the format's narrow floats need.

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export const ITEM_SIZE: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};
export const FLOAT_DTYPES: readonly SafetensorsDType[] = ['F64', 'F32', 'F16', 'BF16'];
export const INT_DTYPES: readonly SafetensorsDType[] = ['I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL'];

/** The inclusive range of each integer dtype, as numbers (the 64-bit bounds are exact powers of two). */
export const INT_RANGE: Readonly<Record<string, readonly [number, number]>> = {
  I64: [-(2 ** 63), 2 ** 63 - 1], I32: [-(2 ** 31), 2 ** 31 - 1], I16: [-32768, 32767], I8: [-128, 127],
  U64: [0, 2 ** 64 - 1], U32: [0, 2 ** 32 - 1], U16: [0, 65535], U8: [0, 255], BOOL: [0, 1],
};

export function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

export const fmt = (shape: readonly unknown[]) => `[${shape.map(String).join(', ')}]`;

/** True when a JS string is valid UTF-16 (no lone surrogate), i.e. it has a UTF-8 encoding. */
export function isWellFormed(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/** A name as messages show it: quoted, escaped when it holds control characters or lone surrogates. */
export function quote(s: string): string {
  // eslint-disable-next-line no-control-regex
  return isWellFormed(s) && !/[\u0000-\u001f\u007f']/.test(s) ? `'${s}'` : JSON.stringify(s);
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/**
 * A number rounded to the nearest F16, ties to even, straight from float64 (going through f32 first would round
 * twice). Overflow gives ±Infinity as IEEE rounding does; NaN gives the canonical quiet NaN, since a JS number's
 * NaN sign and payload cannot be read.
 */
export function f64ToF16(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  if (Number.isNaN(v)) return 0x7e00;
  const a = Math.abs(v);
  // 65520 is halfway between the largest half (65504, odd significand) and 2^16, so it rounds up to infinity.
  if (a >= 65520) return sign | 0x7c00;
  // Subnormals are multiples of 2^-24; scaling by a power of two is exact, so one rounding happens.
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  let frac = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (frac === 1024) {
    frac = 0;
    e++;
  }
  return sign | ((e + 15) << 10) | frac;
}

/**
 * f32 bits to BF16 bits, ties to even. A NaN stays a NaN: rounding could carry its payload into the exponent
 * (giving ±Infinity or -0), so NaNs keep their sign and top payload bits and get the quiet bit, as hardware
 * conversions do.
 */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
