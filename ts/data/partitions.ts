import type { Partition } from './types';

const PARTITION_KEYS = ['height', 'width', 'batch', 'weight'];

/** Checks a partition list (shape and values only) and returns copies with `weight` filled in. */
export function validatePartitions(partitions: unknown, field = 'partitions'): Required<Partition>[] {
  if (!Array.isArray(partitions) || partitions.length === 0) {
    throw new Error(`${field} must be a non-empty array of { height, width, batch, weight? }`);
  }
  return partitions.map((p: unknown, i) => {
    const at = `${field}[${i}]`;
    if (typeof p !== 'object' || p === null) throw new Error(`${at} must be an object { height, width, batch, weight? }`);
    for (const k of Object.keys(p)) {
      if (!PARTITION_KEYS.includes(k)) throw new Error(`${at}: unknown key '${k}' (expected height, width, batch, weight)`);
    }
    const q = p as Partition;
    for (const k of ['height', 'width', 'batch'] as const) {
      if (!Number.isInteger(q[k]) || q[k] < 1) throw new Error(`${at}.${k} must be a positive integer, got ${JSON.stringify(q[k])}`);
    }
    const weight = q.weight ?? 1;
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
      throw new Error(`${at}.weight must be a finite number > 0, got ${JSON.stringify(q.weight)}`);
    }
    return { height: q.height, width: q.width, batch: q.batch, weight };
  });
}

/**
 * Throws unless every partition's height and width are multiples of `multiple` (the student's patch size, or
 * patch size × window size in ViTDet mode). The source itself does not know the student, so the trainer calls this.
 */
export function checkPartitions(partitions: readonly Partition[], multiple: number, field = 'partitions'): void {
  if (!Number.isInteger(multiple) || multiple < 1) throw new Error(`checkPartitions: multiple must be a positive integer, got ${multiple}`);
  const ps = validatePartitions(partitions, field);
  ps.forEach((p, i) => {
    for (const k of ['height', 'width'] as const) {
      if (p[k] % multiple !== 0) {
        const lo = Math.floor(p[k] / multiple) * multiple;
        const near = lo === 0 ? `${multiple}` : `${lo} or ${lo + multiple}`;
        throw new Error(`${field}[${i}].${k} = ${p[k]} is not a multiple of ${multiple} (try ${near})`);
      }
    }
  });
}

/** Index of the partition a uniform draw `u` in [0, 1) selects, each with probability weight / total. */
export function pickPartition(cumulative: readonly number[], u: number): number {
  const x = u * cumulative[cumulative.length - 1];
  for (let i = 0; i < cumulative.length - 1; i++) if (x < cumulative[i]) return i;
  return cumulative.length - 1;
}

export function cumulativeWeights(partitions: readonly Required<Partition>[]): number[] {
  let sum = 0;
  return partitions.map((p) => (sum += p.weight));
}
