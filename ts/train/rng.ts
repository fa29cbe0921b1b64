// Small seeded generators for the trainer: everything random in a run derives from one seed through mixSeed, so
// that a resumed run can re-derive any step's draws from (seed, step) instead of saving generator internals.

/** A 32-bit hash of integers (murmur3's finaliser over each word): distinct inputs give unrelated seeds. */
export function mixSeed(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const w of words) {
    if (!Number.isSafeInteger(w) || w < 0) throw new Error(`mixSeed: expected non-negative safe integers, got ${w}`);
    for (const part of [w % 2 ** 32, Math.floor(w / 2 ** 32)]) {
      h = Math.imul(h ^ part, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
    }
  }
  return h >>> 0;
}

/** mulberry32: uniform draws whose stream depends only on the seed. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = mixSeed(seed);
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}
