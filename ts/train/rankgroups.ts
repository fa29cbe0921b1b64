// RADIO's rank/teacher partitioning (paper §4, spec §3 "Rank/Teacher Partitioning"): the ranks are split into
// groups, each bound to one data partition, which fixes its student resolution, its batch and (through
// TeacherSpec.partitions) the teachers it runs. The paper's 64-GPU run is two groups: 32 ranks on CLIP + DINOv2 at
// 432 px with 32 images each (partition batch 1024), 32 ranks on SAM at 1024 px with 2 each (partition batch 64).
//
// The weighting. A micro-step of every group holds S = Σ_g w_g·B_g weighted images (B_g the group's partition
// batch, w_g its weight, default 1). A process that runs b images of group g (its share B_g / n_g on one of the
// group's n_g ranks; all B_g when one process emulates the whole world) with mean loss L over them contributes
// c = w_g·b / S, and the step's loss is Σ c·L over every contribution of the world: with every w_g = 1 that is the
// mean loss over all S images, exactly as if they were one batch (each image's loss holds only its own group's
// teacher terms). Gradients follow: each rank backpropagates N·c·L (N ranks) and the gradients are mean-reduced, so
// the reduced gradient is Σ c·∇L, the gradient of that one big batch. An unpartitioned run is one implicit group of
// every rank on the source's weighted partition draws: there c = 1/N and the backward scale N·c = 1, which is the
// plain data parallelism of an equal share per rank.
import type { Partition } from '../data/types';
import type { RecordedRankGroups } from './checkpoint';

export interface RankGroup {
  /** The data partition (an index into the source's partitions) this group trains on. */
  partition: number;
  /** The group's ranks; or `size`, that many of the ranks no group lists, lowest first in group order. */
  ranks?: number[];
  size?: number;
  /** How much each of the group's images counts in the loss, relative to the other groups' (default 1). */
  weight?: number;
}

export interface ResolvedGroup {
  index: number;
  /** undefined: the implicit group of an unpartitioned run, on the source's weighted draws. */
  partition: number | undefined;
  ranks: number[];
  weight: number;
}

export interface GroupLayout {
  /** Whether the run is partitioned (options.rankGroups given). */
  partitioned: boolean;
  groups: ResolvedGroup[];
  /** The groups this process computes: its rank's, or every group when one process emulates the whole world. */
  mine: ResolvedGroup[];
  /** One process stands for every rank of the groups (a world of one with rankGroups). */
  emulated: boolean;
  /** S of a partitioned micro-step (Σ_g w_g·B_g); null for the implicit group, whose batch is the draw's. */
  total: number | null;
}

const where = 'distill: rankGroups';

function ranksOf(g: RankGroup, i: number): number[] | null {
  const at = `${where}[${i}]`;
  if ((g.ranks === undefined) === (g.size === undefined)) throw new Error(`${at} needs exactly one of ranks (a list of ranks) and size (a number of ranks)`);
  if (g.size !== undefined) {
    if (!Number.isInteger(g.size) || g.size < 1) throw new Error(`${at}.size must be a positive integer, got ${JSON.stringify(g.size)}`);
    return null;
  }
  if (!Array.isArray(g.ranks) || g.ranks.length === 0) throw new Error(`${at}.ranks must be a non-empty array of ranks`);
  for (const r of g.ranks) if (!Number.isInteger(r) || r < 0) throw new Error(`${at}.ranks: ${JSON.stringify(r)} is not a rank (a non-negative integer)`);
  return [...g.ranks];
}

/**
 * Checks options.rankGroups against the data source and the world, naming the group and field, and places this
 * process: a world of exactly the ranks the groups list runs its own group; a world of one emulates them all.
 */
export function resolveRankGroups(spec: RankGroup[] | undefined, partitions: readonly Partition[], rank: number, worldSize: number): GroupLayout {
  if (spec === undefined) {
    const all = Array.from({ length: worldSize }, (_, r) => r);
    if (worldSize > 1)
      for (const [i, p] of partitions.entries())
        if (p.batch % worldSize !== 0) throw new Error(`distill: data partition ${i}'s batch ${p.batch} is not divisible by the ${worldSize} ranks (each rank takes an equal share of every batch)`);
    const only: ResolvedGroup = { index: 0, partition: undefined, ranks: all, weight: 1 };
    return { partitioned: false, groups: [only], mine: [only], emulated: false, total: null };
  }
  if (!Array.isArray(spec) || spec.length === 0) throw new Error(`${where} must be a non-empty array of { partition, ranks | size, weight? }`);
  const listed = spec.map((g, i) => {
    if (!g || typeof g !== 'object') throw new Error(`${where}[${i}] must be an object { partition, ranks | size, weight? }`);
    if (!Number.isInteger(g.partition) || g.partition < 0 || g.partition >= partitions.length)
      throw new Error(`${where}[${i}].partition: ${JSON.stringify(g.partition)} is not a partition index of the data source (0..${partitions.length - 1})`);
    const w = g.weight ?? 1;
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) throw new Error(`${where}[${i}].weight must be a finite number > 0, got ${JSON.stringify(g.weight)}`);
    return ranksOf(g, i);
  });
  const owner = new Map<number, number>();
  for (const [i, rs] of listed.entries())
    for (const r of rs ?? []) {
      if (owner.has(r)) throw new Error(`${where}: rank ${r} is in rankGroups[${owner.get(r)}] and rankGroups[${i}] (a rank belongs to one group)`);
      owner.set(r, i);
    }
  let next = 0;
  const groups: ResolvedGroup[] = spec.map((g, i) => {
    let ranks = listed[i];
    if (!ranks) {
      ranks = [];
      while (ranks.length < g.size!) {
        if (!owner.has(next)) ranks.push(next);
        next++;
      }
    }
    return { index: i, partition: g.partition, ranks, weight: g.weight ?? 1 };
  });
  const span = groups.reduce((n, g) => n + g.ranks.length, 0);
  for (let r = 0; r < span; r++)
    if (!groups.some((g) => g.ranks.includes(r))) throw new Error(`${where}: the groups hold ${span} ranks but rank ${r} is in none (they must be ranks 0..${span - 1}, each once)`);
  for (const g of groups) {
    const batch = partitions[g.partition!].batch;
    if (batch % g.ranks.length !== 0)
      throw new Error(`${where}[${g.index}]: data partition ${g.partition}'s batch ${batch} is not divisible by the group's ${g.ranks.length} ranks (each takes an equal share)`);
  }
  for (const i of partitions.keys())
    if (!groups.some((g) => g.partition === i)) throw new Error(`${where}: data partition ${i} is in no group (its batches would never be drawn)`);
  if (worldSize !== 1 && worldSize !== span)
    throw new Error(`${where}: the groups hold ${span} ranks, the world has ${worldSize} (run with ${span} ranks, or with 1 to emulate every group in one process)`);
  const emulated = worldSize === 1 && span > 1;
  const mine = emulated ? groups : groups.filter((g) => g.ranks.includes(rank));
  const total = groups.reduce((s, g) => s + g.weight * partitions[g.partition!].batch, 0);
  return { partitioned: true, groups, mine, emulated, total };
}

/**
 * The data partitions whose images this process computes (its groups' partitions; every partition in an
 * unpartitioned run, where each rank takes a share of every draw): the teachers of the others never run here.
 */
export function partitionsRun(layout: GroupLayout, count: number): Set<number> {
  if (layout.mine.some((g) => g.partition === undefined)) return new Set(Array.from({ length: count }, (_, i) => i));
  return new Set(layout.mine.map((g) => g.partition!));
}

/** What a checkpoint records of a run's groups (ts/train/checkpoint.ts): the groups as resolved, and the world. */
export function recordOf(layout: GroupLayout, world: number): RecordedRankGroups {
  return { world, groups: layout.partitioned ? layout.groups.map((g) => ({ partition: g.partition!, ranks: [...g.ranks], weight: g.weight })) : null };
}

/**
 * How this run's groups change the objective a checkpoint was trained on, or null when they do not: the groups in
 * order (group g's crop draws and its place in the data source's draws follow its index), each one's partition and
 * weight. How many ranks each group has, and the world size, only change how the same sum is shared out (resuming
 * on another world is the same run to rounding), so they are not compared.
 */
export function rankGroupChange(was: RecordedRankGroups, now: RecordedRankGroups): string | null {
  const count = (g: RecordedRankGroups['groups']) => (g ? `${g.length} rank group${g.length === 1 ? '' : 's'}` : 'no rankGroups (unpartitioned)');
  if (!was.groups || !now.groups) return !was.groups && !now.groups ? null : `the checkpoint's run had ${count(was.groups)}, this run has ${count(now.groups)}`;
  if (was.groups.length !== now.groups.length) return `the checkpoint's run had ${count(was.groups)}, this run has ${count(now.groups)}`;
  const diffs: string[] = [];
  for (const [i, g] of now.groups.entries())
    for (const k of ['partition', 'weight'] as const)
      if (was.groups[i][k] !== g[k]) diffs.push(`rankGroups[${i}].${k}: ${was.groups[i][k]} in the checkpoint, ${g[k]} in this run`);
  return diffs.length ? diffs.join('; ') : null;
}
