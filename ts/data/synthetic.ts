// A deterministic synthetic DataSource: smooth random images (a few low-frequency plane waves per channel), the
// same for a given seed and image index at any resolution, so tests and the CLI demo can train without a dataset.
import { mixSeed, Rng } from '../train/rng';
import type { DataSource, DataState, ImageBatch, Partition } from './types';

export interface SyntheticSourceOptions {
  partitions: Partition[];
  /** Default 0. */
  seed?: number;
  /** Distinct images; the ids cycle after this many (default: never). */
  images?: number;
  /** Plane waves per channel; default 4. */
  waves?: number;
}

const TAG_PARTITION = 1;

export class SyntheticSource implements DataSource {
  readonly partitions: readonly Partition[];
  private readonly seed: number;
  private readonly size: number;
  private readonly waves: number;
  private batches = 0;
  private cursor = 0;
  private closed = false;

  constructor(opts: SyntheticSourceOptions) {
    const where = 'SyntheticSource';
    if (!opts || !Array.isArray(opts.partitions) || opts.partitions.length === 0) throw new Error(`${where}: partitions must be a non-empty array`);
    for (const [i, p] of opts.partitions.entries()) {
      for (const k of ['height', 'width', 'batch'] as const)
        if (!Number.isInteger(p[k]) || p[k] <= 0) throw new Error(`${where}: partitions[${i}].${k} must be a positive integer, got ${JSON.stringify(p[k])}`);
      if (p.weight !== undefined && !(Number.isFinite(p.weight) && p.weight > 0)) throw new Error(`${where}: partitions[${i}].weight must be a positive number, got ${JSON.stringify(p.weight)}`);
    }
    this.partitions = opts.partitions.map((p) => ({ ...p }));
    this.seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new Error(`${where}: seed must be a non-negative integer, got ${opts.seed}`);
    this.size = opts.images ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(this.size) || this.size <= 0) throw new Error(`${where}: images must be a positive integer, got ${opts.images}`);
    this.waves = opts.waves ?? 4;
    if (!Number.isInteger(this.waves) || this.waves <= 0) throw new Error(`${where}: waves must be a positive integer, got ${opts.waves}`);
  }

  /** Image `index` at height × width, [3, H, W] in [0, 1]. */
  image(index: number, height: number, width: number): Float32Array {
    const out = new Float32Array(3 * height * width);
    const rng = new Rng(mixSeed(this.seed, index));
    for (let c = 0; c < 3; c++) {
      const waves = Array.from({ length: this.waves }, () => ({
        a: 0.2 + rng.next(),
        fx: 3 * (2 * rng.next() - 1),
        fy: 3 * (2 * rng.next() - 1),
        phase: 2 * Math.PI * rng.next(),
      }));
      const norm = waves.reduce((s, w) => s + w.a, 0);
      const base = c * height * width;
      for (let y = 0; y < height; y++) {
        // Pixel centres in [0, 1): the same continuous image whatever the resolution.
        const v = (y + 0.5) / height;
        for (let x = 0; x < width; x++) {
          const u = (x + 0.5) / width;
          let s = 0;
          for (const w of waves) s += w.a * Math.sin(2 * Math.PI * (w.fx * u + w.fy * v) + w.phase);
          out[base + y * width + x] = 0.5 + (0.5 * s) / norm;
        }
      }
    }
    return out;
  }

  async next(only?: number): Promise<ImageBatch> {
    if (this.closed) throw new Error('SyntheticSource.next: the source was closed');
    if (only !== undefined && !(Number.isInteger(only) && only >= 0 && only < this.partitions.length))
      throw new Error(`SyntheticSource.next: ${JSON.stringify(only)} is not a partition index (0..${this.partitions.length - 1})`);
    const k = this.batches++;
    const partition = only ?? this.pickPartition(k);
    const { height, width, batch } = this.partitions[partition];
    const images = new Float32Array(batch * 3 * height * width);
    const ids: string[] = [];
    for (let b = 0; b < batch; b++) {
      const index = this.cursor++ % this.size;
      images.set(this.image(index, height, width), b * 3 * height * width);
      ids.push(`synthetic-${index}`);
    }
    return { images, batch, height, width, ids, partition };
  }

  private pickPartition(k: number): number {
    if (this.partitions.length === 1) return 0;
    const weights = this.partitions.map((p) => p.weight ?? 1);
    let r = new Rng(mixSeed(this.seed, TAG_PARTITION, k)).next() * weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < weights.length; i++) if ((r -= weights[i]) < 0) return i;
    return weights.length - 1;
  }

  state(): DataState {
    return { type: 'synthetic', seed: this.seed, batches: this.batches, cursor: this.cursor };
  }

  restore(state: DataState): void {
    const s = state as { type?: unknown; seed?: unknown; batches?: unknown; cursor?: unknown };
    if (!s || s.type !== 'synthetic') throw new Error(`SyntheticSource.restore: not a synthetic source's state: ${JSON.stringify(state)}`);
    if (s.seed !== this.seed) throw new Error(`SyntheticSource.restore: the state is of seed ${JSON.stringify(s.seed)}, this source has seed ${this.seed}`);
    for (const k of ['batches', 'cursor'] as const)
      if (!Number.isSafeInteger(s[k]) || (s[k] as number) < 0) throw new Error(`SyntheticSource.restore: state.${k} must be a non-negative integer, got ${JSON.stringify(s[k])}`);
    this.batches = s.batches as number;
    this.cursor = s.cursor as number;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
