// The teacher side of a distillation run's plan: each teacher spec checked without its teacher (partitions, data
// coverage), the heads of the teachers this process runs checked against the student's adaptors, and the loss-term
// keys of every teacher gathered from the ranks that run it (a partitioned rank holds only its own groups').
import type { DataSource } from '../data/types';
import type { AnyRadioModel } from '../model/load';
import type { Teacher } from '../teachers/types';
import { allGatherJson } from './data-parallel';
import type { ProcessGroup } from './distributed';
import type { HeadWeights, TeacherSpec } from './distill';

export const termKey = (teacher: string, head: string, part: 'summary' | 'features') => `${teacher}.${head}.${part}`;

export interface Plan {
  /** The spec's index in options.teachers. */
  index: number;
  spec: TeacherSpec;
  teacher: Teacher;
  heads: Array<{ head: string; summaryWeight: number; featureWeight: number; summary: boolean }>;
  partitions: Set<number>;
}

function weight(v: unknown, where: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${where} must be a finite number >= 0, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Checks what every teacher spec says without its teacher (one of teacher / load, the partitions, every data
 * partition covered, at a multiple of the student's resolution step); returns each spec's partitions.
 */
export function specPartitions(student: AnyRadioModel, teachers: TeacherSpec[], data: DataSource): Array<Set<number>> {
  if (!Array.isArray(teachers) || teachers.length === 0) throw new Error('distill: teachers must be a non-empty array');
  const all = data.partitions.map((_, i) => i);
  const sets = teachers.map((spec, t) => {
    const where = `distill: teachers[${t}]`;
    if (!spec || typeof spec !== 'object') throw new Error(`${where} must be an object { teacher | load, heads?, partitions?, ... }`);
    if ((spec.teacher === undefined) === (spec.load === undefined)) throw new Error(`${where} needs exactly one of teacher (a Teacher) and load (a function that loads one)`);
    if (spec.load !== undefined && typeof spec.load !== 'function') throw new Error(`${where}.load must be a function returning a Promise of a Teacher`);
    const partitions = spec.partitions ?? all;
    // An empty list would be a teacher that never runs: in a partitioned run no rank would even load it.
    if (!Array.isArray(partitions) || partitions.length === 0) throw new Error(`${where}.partitions must be a non-empty array of data partition indices (a teacher on no partition never runs)`);
    for (const p of partitions)
      if (!Number.isInteger(p) || p < 0 || p >= all.length) throw new Error(`${where}.partitions: ${JSON.stringify(p)} is not a partition index of the data source (0..${all.length - 1})`);
    return new Set(partitions);
  });
  for (const [i, p] of data.partitions.entries()) {
    const step = student.resolutionStep;
    if (p.height % step !== 0 || p.width % step !== 0)
      throw new Error(`distill: data partition ${i} is ${p.height}x${p.width}, not a multiple of the student's resolution step ${step}`);
    if (!sets.some((s) => s.has(i))) throw new Error(`distill: no teacher trains on data partition ${i}`);
  }
  return sets;
}

/** Checks every head of the teachers this process runs against the student's adaptors, naming the teacher and head. */
export function planTeachers(student: AnyRadioModel, teachers: Array<{ index: number; spec: TeacherSpec; teacher: Teacher; partitions: Set<number> }>): Plan[] {
  const names = new Set<string>();
  return teachers.map(({ index, spec, teacher, partitions }) => {
    const where = `distill: teachers[${index}]`;
    if (!teacher || typeof teacher.forward !== 'function') throw new Error(`${where}.${spec.load ? 'load() did not give' : 'teacher must be'} a Teacher`);
    if (names.has(teacher.name)) throw new Error(`${where}: two teachers are named ${JSON.stringify(teacher.name)} (names key the loss terms)`);
    names.add(teacher.name);
    const wanted: Record<string, HeadWeights> = spec.heads ?? Object.fromEntries(Object.keys(teacher.heads).map((h) => [h, {}]));
    const heads = Object.entries(wanted).map(([head, w]) => {
      const dims = teacher.heads[head];
      if (!dims) throw new Error(`${where}.heads.${head}: teacher ${teacher.name} has no head ${JSON.stringify(head)} (it has ${Object.keys(teacher.heads).join(', ')})`);
      const a = student.config.adaptors.find((x) => x.name === head);
      if (!a) throw new Error(`${where}.heads.${head}: the student has no adaptor ${JSON.stringify(head)} (it has ${student.config.adaptors.map((x) => x.name).join(', ') || 'none'})`);
      if (a.feature.outputDim !== dims.featureDim)
        throw new Error(`${where}.heads.${head}: the student's feature head gives ${a.feature.outputDim} channels, the teacher's ${dims.featureDim}`);
      // A frozen summary head (use_summary false) must not pass a summary loss on into the backbone.
      const summary = dims.summaryDim !== null && a.useSummary;
      if (summary && a.summary.outputDim !== dims.summaryDim)
        throw new Error(`${where}.heads.${head}: the student's summary head gives ${a.summary.outputDim} channels, the teacher's ${dims.summaryDim}`);
      return {
        head,
        summary,
        summaryWeight: weight(w.summaryWeight, `${where}.heads.${head}.summaryWeight`, weight(spec.summaryWeight, `${where}.summaryWeight`, 1)),
        featureWeight: weight(w.featureWeight, `${where}.heads.${head}.featureWeight`, weight(spec.featureWeight, `${where}.featureWeight`, 1)),
      };
    });
    return { index, spec, teacher, heads, partitions };
  });
}

/** A teacher's loss term keys, in the order microStep reports them. */
export const termKeysOf = (p: Plan) => p.heads.flatMap((h) => [...(h.summary ? [termKey(p.teacher.name, h.head, 'summary')] : []), termKey(p.teacher.name, h.head, 'features')]);

/**
 * Every teacher's name and term keys, from the ranks that run it: a rank of a partitioned run holds only its own
 * groups' teachers, yet sums (and rank 0 reports) every term of the step. Errors on two teachers of one name.
 */
export async function worldTermKeys(group: ProcessGroup, plans: Plan[], count: number): Promise<string[]> {
  const all = (await allGatherJson(group, plans.map((p) => [p.index, p.teacher.name, termKeysOf(p)]))) as Array<Array<[number, string, string[]]>>;
  const byIndex = new Map<number, { name: string; keys: string[] }>();
  for (const rank of all) for (const [i, name, keys] of rank) byIndex.set(i, { name, keys });
  const named = new Map<string, number>();
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const t = byIndex.get(i);
    if (!t) throw new Error(`distill: teachers[${i}] runs on no rank (none of its partitions is in a rank group)`);
    if (named.has(t.name)) throw new Error(`distill: teachers[${i}]: two teachers are named ${JSON.stringify(t.name)} (names key the loss terms; teachers[${named.get(t.name)}] runs on another rank)`);
    named.set(t.name, i);
    keys.push(...t.keys);
  }
  return [...new Set(keys)];
}

/**
 * Closes the teachers given loaded ({ teacher }) that this process never runs (a rank of a partitioned run whose
 * groups' partitions are not theirs): kept open they would hold their weights, gigabytes for a large teacher, for
 * the whole run. A teacher object that a spec run here also holds stays open, and each is closed once. Returns the
 * names of those closed, in spec order. A spec given as { load } is never loaded here in the first place.
 */
export async function releaseUnrun(teachers: TeacherSpec[], held: ReadonlyArray<{ teacher: Teacher }>): Promise<string[]> {
  const kept = new Set(held.map((h) => h.teacher));
  const released: Teacher[] = [];
  for (const [i, spec] of teachers.entries()) {
    const t = spec.teacher;
    if (t === undefined || kept.has(t) || released.includes(t)) continue;
    if (!t || typeof t.close !== 'function') throw new Error(`distill: teachers[${i}].teacher must be a Teacher (it has no close())`);
    released.push(t);
  }
  for (const t of released) await t.close();
  return released.map((t) => t.name);
}

/**
 * The progress line naming what every rank released (releaseUnrun's names), or null when none did: only rank 0
 * writes progress, so the ranks' names are gathered. Every rank of the group must call it.
 */
export async function releasedNote(group: ProcessGroup, released: string[]): Promise<string | null> {
  const byRank = (await allGatherJson(group, released)) as string[][];
  const ranks = byRank.map((names, r) => (names.length ? `rank ${r}: ${names.join(', ')}` : '')).filter(Boolean);
  return ranks.length ? `released the teachers that their rank's partitions do not run (given as { teacher }; { load } would not load them): ${ranks.join('; ')}` : null;
}

export async function closeTeachers(teachers: Teacher[]): Promise<void> {
  const list = teachers.splice(0);
  for (const t of list) await t.close();
}
