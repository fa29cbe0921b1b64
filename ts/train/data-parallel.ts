// The data-parallel pieces of the distillation step (ts/train/distill.ts): a rank's share of a global batch and of
// its CPE crop, the checks that every rank runs the same job, and the step's loss sums with the gradient reduction
// over the ranks (weighted as ts/train/rankgroups.ts defines).
import type { ImageBatch } from '../data/types';
import type { CpeCrop } from '../model/cpe';
import { tensor, Tensor, zeros } from '../tensor';
import { allReduceBuckets } from './buckets';
import type { ProcessGroup } from './distributed';
import type { GroupLayout } from './rankgroups';

export interface Shard {
  rank: number;
  size: number;
}

/** Errors unless every rank passes the same value for every key (options that must agree, or the collectives would not pair up). */
export async function agree(group: ProcessGroup, values: Record<string, number>): Promise<void> {
  const keys = Object.keys(values);
  const all = await group.allGatherScalars(keys.map((k) => values[k]));
  for (const [i, k] of keys.entries()) {
    const v = all.map((r) => r[i]);
    if (v.some((x) => !Object.is(x, v[0]))) throw new Error(`distill: the ranks disagree on ${k} (${v.map((x, r) => `rank ${r}: ${x}`).join(', ')}); every rank must run with the same options and checkpoint`);
  }
}

/** FNV-1a over the bits of every tensor: equal on two ranks exactly when the replicas are bit-identical (but for collisions). */
export async function checksum(tensors: readonly Tensor[]): Promise<number> {
  let h = 0x811c9dc5;
  for (const t of tensors) {
    const v = await t.toArray();
    for (const w of new Uint32Array(v.buffer, v.byteOffset, v.length)) h = Math.imul(h ^ w, 0x01000193) >>> 0;
  }
  return h;
}

/** This rank's rows of a global batch: rows rank·B/size up to (rank+1)·B/size. */
export function shardOf(b: ImageBatch, s: Shard): ImageBatch {
  if (b.batch % s.size !== 0) throw new Error(`distill: the data source gave a batch of ${b.batch}, not divisible by the ${s.size} ranks`);
  const per = b.batch / s.size;
  const chw = 3 * b.height * b.width;
  return {
    ...b,
    images: b.images.subarray(s.rank * per * chw, (s.rank + 1) * per * chw),
    ids: b.ids.slice(s.rank * per, (s.rank + 1) * per),
    batch: per,
  };
}

/** The rows [from, from + n) of a crop drawn for the global batch (keep [B], scale and offset [B, 2]). */
export async function cropRows(crop: CpeCrop, from: number, n: number): Promise<CpeCrop> {
  const rows = async (t: Tensor | undefined, width: number) => {
    if (!t) return undefined;
    const v = (await t.toArray()).slice(from * width, (from + n) * width);
    t.dispose();
    return tensor(v, width === 1 ? [n] : [n, width], { device: t.device });
  };
  return { keep: (await rows(crop.keep, 1))!, scale: await rows(crop.scale, 2), offset: await rows(crop.offset, 2) };
}

export interface MicroResult {
  loss: number;
  terms: Record<string, number>;
  images: number;
}

/** A step's losses as they are summed up over its micro-batches (and then over the ranks). */
export interface StepSums {
  /** Σ c·L over the contributions (ts/train/rankgroups.ts): the step's weighted loss once every rank's is in. */
  loss: number;
  /** Per group, the mean loss over its images (averaged over the micro-batches). */
  groups: number[];
  /** Per term key, Σ c·value and Σ c over the contributions that hold it: the term's mean over its images. */
  termKeys: string[];
  termSum: number[];
  termWeight: number[];
  terms: Record<string, number>;
  stepImages: number;
}

export function newSums(layout: GroupLayout, termKeys: string[]): StepSums {
  const zero = () => termKeys.map(() => 0);
  return { loss: 0, groups: layout.groups.map(() => 0), termKeys, termSum: zero(), termWeight: zero(), terms: {}, stepImages: 0 };
}

/** Adds one micro-batch of group g: c its weight in the step's loss, share the fraction of the group's mean it is. */
export function addMicro(s: StepSums, g: number, c: number, share: number, r: MicroResult): void {
  s.loss += c * r.loss;
  s.groups[g] += share * r.loss;
  s.stepImages += r.images;
  for (const [k, v] of Object.entries(r.terms)) {
    const i = s.termKeys.indexOf(k);
    s.termSum[i] += c * v;
    s.termWeight[i] += c;
  }
  finishTerms(s);
}

function finishTerms(s: StepSums): void {
  s.terms = Object.fromEntries(s.termKeys.flatMap((k, i) => (s.termWeight[i] > 0 ? [[k, s.termSum[i] / s.termWeight[i]]] : [])));
}

/**
 * Sums the ranks' losses and mean-reduces the gradients. A parameter that only some ranks' loss reaches (an adaptor
 * of a teacher another group runs) counts with a zero gradient on the others, as DDP's unused parameters do; one
 * that no rank's reaches keeps no gradient, as in one process. Returns the number of all-reduces (buckets).
 */
export async function reduceGradients(group: ProcessGroup, params: readonly Tensor[], s: StepSums, bucketBytes: number): Promise<number> {
  const mask = params.map((p) => (p.grad ? 1 : 0));
  const mine = [s.loss, s.stepImages, ...s.groups, ...s.termSum, ...s.termWeight, ...mask];
  const all = await group.allGatherScalars(mine);
  const total = (i: number) => all.reduce((a, r) => a + r[i], 0);
  s.loss = total(0);
  s.stepImages = total(1);
  let i = 2;
  s.groups = s.groups.map(() => total(i++));
  s.termSum = s.termSum.map(() => total(i++));
  s.termWeight = s.termWeight.map(() => total(i++));
  finishTerms(s);
  const reduced = params.filter((_, j) => all.some((r) => r[i + j] === 1));
  for (const p of reduced) p.grad ??= zeros(p.shape, { device: p.device, dtype: p.dtype });
  return allReduceBuckets(group, reduced, bucketBytes);
}

/** FNV-1a of a string (32 bits). */
export function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Every rank's JSON value, by rank. allGatherScalars carries numbers only, the same count from every rank: the
 * text's UTF-16 code units go as numbers, padded to the longest rank's with -1 (no code unit) after the lengths.
 */
export async function allGatherJson(group: ProcessGroup, value: unknown): Promise<unknown[]> {
  const text = JSON.stringify(value);
  const lengths = (await group.allGatherScalars([text.length])).map((r) => r[0]);
  const n = Math.max(...lengths);
  const codes = Array.from({ length: n }, (_, i) => (i < text.length ? text.charCodeAt(i) : -1));
  const all = await group.allGatherScalars(codes);
  return all.map((r, rank) => JSON.parse(String.fromCharCode(...r.slice(0, lengths[rank]))));
}
