// A small seeded PRNG whose whole state is four 32-bit words, so a data source can save it as JSON and resume
// bit-exactly. xoshiro128** (Blackman & Vigna): fast in 32-bit JS integer arithmetic and good enough for sampling.

export type RngState = [number, number, number, number];

/** splitmix32 step: spreads a seed (or seed + stream index) over the 128-bit state so nearby seeds diverge. */
function splitmix32(x: number): [number, number] {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [x, (z ^ (z >>> 16)) >>> 0];
}

export class Rng {
  private s: Uint32Array;

  /** `seed` is any safe integer; `stream` picks an independent sequence for the same seed (e.g. one per epoch). */
  constructor(seed: number, stream = 0) {
    this.s = new Uint32Array(4);
    // Mix the high and low halves of the seed and the stream, so seeds above 2^32 and different streams differ.
    let x = (seed % 0x100000000) >>> 0;
    x = splitmix32(x ^ Math.floor(seed / 0x100000000))[1];
    x = splitmix32(x ^ Math.imul(stream | 0, 0x27d4eb2f))[1];
    for (let i = 0; i < 4; i++) {
      const [nx, out] = splitmix32(x);
      x = nx;
      this.s[i] = out;
    }
    // The all-zero state is the one fixed point of xoshiro; splitmix cannot produce it for all four words, but be sure.
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.s.set(state);
    return r;
  }

  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Next 32 random bits as an unsigned integer. */
  u32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits, so integer draws stay unbiased for datasets far beyond 2^32 / n. */
  uniform(): number {
    const hi = this.u32() >>> 5;
    const lo = this.u32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export function isRngState(v: unknown): v is RngState {
  return (
    Array.isArray(v) &&
    v.length === 4 &&
    v.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff) &&
    v.some((w) => w !== 0)
  );
}

/** Fisher–Yates permutation of 0..n-1 drawn from `rng`. */
export function permutation(n: number, rng: Rng): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
