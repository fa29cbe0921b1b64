// Plain float64 helpers for the tests: seeded data, reference math, error measures, and the devices to test.
import { backends, Device, debug } from '../../ts';

/** Every backend that can run here: cpu always, sim when built, cuda on a GPU machine. */
export function testDevices(): Device[] {
  return backends()
    .filter((b) => b.available)
    .map((b) => b.name);
}

/** Why a compiled backend cannot run here, as a test title says it. */
function skipReason(device: Device, reason?: string): string {
  return device === 'cuda' ? 'skipped: no GPU' : `skipped: ${reason ?? 'unavailable'}`;
}

/**
 * describe(title) once per compiled backend, `%s` in the title standing for the device. A compiled backend that is
 * not usable here (cuda without a GPU) gets a skipped block titled "(skipped: no GPU)", so a run on a machine
 * without a GPU reports those cases as skipped, never as passed, and never silently drops them.
 */
export function describeEachDevice(title: string, body: (device: Device) => void, filter: (d: Device) => boolean = () => true): void {
  for (const b of backends()) {
    if (!b.compiled || !filter(b.name)) continue;
    const named = title.replace('%s', b.name);
    if (b.available) describe(named, () => body(b.name));
    // Registered, not run: the report lists these cases as skipped, with the reason in the title.
    else describe.skip(`${named} (${skipReason(b.name, b.reason)})`, () => body(b.name));
  }
}

/** Turns on output poisoning for the file that calls it. */
export function poisonOutputs(): void {
  beforeAll(() => debug.poisonAllocations(true));
  afterAll(() => debug.poisonAllocations(false));
}

/** Small deterministic PRNG (mulberry32) so each test draws fresh but reproducible inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let seedCounter = (Date.now() ^ (process.pid << 8)) >>> 0;
/** A new seed per call; printed by a failing test through its inputs' description. */
export function freshSeed(): number {
  seedCounter = (seedCounter * 1664525 + 1013904223) >>> 0;
  return seedCounter;
}

export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** ‖out − ref‖ / ‖ref‖, the error measure of the design's tolerances. NaN anywhere gives Infinity. */
export function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length mismatch ${out.length} vs ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    num += (out[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** Round a float64 to the nearest bf16 (ties to even), as the backends store it. */
export function roundBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (Number.isNaN(f[0])) return NaN;
  u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) << 16;
  return f[0];
}

export function roundF32(x: number): number {
  return Math.fround(x);
}

/** Central differences of f at the listed indices of x (all when none are listed); x itself is left unchanged. */
export function centralDifferences(f: (x: Float64Array) => number, x: Float64Array, indices?: number[], h = 1e-6): Float64Array {
  const xp = Float64Array.from(x);
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  return Float64Array.from(idx, (i) => {
    const v = xp[i];
    xp[i] = v + h;
    const fp = f(xp);
    xp[i] = v - h;
    const fm = f(xp);
    xp[i] = v;
    return (fp - fm) / (2 * h);
  });
}

/** Central finite-difference gradient of a float64 scalar function. */
export function finiteDifferenceGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  return centralDifferences(f, x, undefined, h);
}

export function sampledFiniteDifference(
  f: (x: Float64Array) => number,
  x: Float64Array,
  opts: { count?: number; seed?: number; h?: number } = {},
): { indices: number[]; values: Float64Array } {
  const count = opts.count ?? 24;
  const h = opts.h ?? 1e-6;
  let indices: number[];
  if (x.length <= count) indices = Array.from({ length: x.length }, (_, i) => i);
  else {
    const r = rng(opts.seed ?? 12345);
    indices = Array.from({ length: count }, () => Math.floor(r() * x.length));
  }
  return { indices, values: centralDifferences(f, x, indices, h) };
}

/** Relative error of got at the sampled indices against their finite-difference values. */
export function sampledRelativeError(got: ArrayLike<number>, fd: { indices: number[]; values: Float64Array }): number {
  return relativeError(Float64Array.from(fd.indices, (i) => got[i]), fd.values);
}

/** erf(x) by its Taylor series: Abramowitz-Stegun 7.1.26 is too coarse for a 1e-6 reference. */
export function erf(x: number): number {
  let sum = 0;
  let term = x;
  for (let n = 0; n < 200; n++) {
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/**
 * erfc(z) in float64 that keeps its relative precision in the tail: 1 − erf(z) below z = 2, where nothing cancels
 * much; above, the continued fraction erfc(z) = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))), evaluated from
 * its 80th term up (converged to float64 from z = 2 on); erfc(−z) = 2 − erfc(z).
 */
export function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z);
  if (z < 2) return 1 - erf(z);
  let f = z;
  for (let n = 80; n >= 1; n--) f = z + n / 2 / f;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
}

/** The exact (erf) GELU in float64, as 0.5·x·erfc(−x/√2) so that its negative tail keeps every digit. */
export const refGelu = (x: number): number => 0.5 * x * erfc(-x / Math.SQRT2);
