// The distillation loop (AM-RADIO §3–4): per optimizer step, for each of N micro-batches, a batch from the data
// source; every teacher of the batch's partition run without a graph at its own input size; the student in train
// mode; the multi-teacher loss scaled by 1/N and its backward. Then the global gradient norm (one scalar read),
// clipping, and an AdamW step with parameter groups, unless the loss or a gradient is not finite: then the step is
// skipped and nothing changes. Every step's intermediates belong to a tensor scope, so memory stays flat.
//
// Data parallel (options.distributed, a ProcessGroup of size > 1), as PyTorch's DDP does it: the parameters are
// broadcast from rank 0 at the start; every rank draws the same global batch (and the same CPE crop draws for it)
// and keeps its own contiguous share of the rows, so the shards never overlap and a resumed run repeats them
// (the data state is the same on every rank); each rank's loss is the mean over its share; the gradients are
// all-reduced to their mean before the global-norm clip and the optimizer step, so every rank takes the step one
// process would take with the global batch. Only rank 0 writes checkpoints, metrics and progress. Those pieces
// (shares, agreement checks, loss sums, the gradient reduction) are in ts/train/data-parallel.ts.
//
// Partitioned (options.rankGroups, ts/train/rankgroups.ts for the weighting): each group of ranks trains on its
// own data partition with that partition's teachers (the only ones its ranks load), resolution and batch. Every
// rank still draws every group's batch of every micro-step, in group order, so the source's state is the same on
// every rank (a checkpoint of rank 0 resumes any world, a world of one included, which then emulates every group
// in turn; the checkpoint records the groups, and a resume that changes their partitions or weights is refused)
// and keeps only its share of its own group's. The draws cost the rows of the other groups' batches; reading only one's own rows
// needs a source that can skip them, which none can yet.
import * as fs from 'fs';
import * as path from 'path';

import type { DataSource, ImageBatch } from '../data/types';
import { SafetensorsFile } from '../io/safetensors';
import type { SafetensorsWriteEntry } from '../io/safetensors';
import { FLOAT_DTYPES } from '../io/safetensors/dtype';
import type { VitDetOverride } from '../model/config';
import { RadioModel } from '../model/radio';
import { AnyRadioModel, loadRadio } from '../model/load';
import type { DType, Device } from '../native';
import { multiTeacherLoss } from '../ops/loss';
import type { MultiTeacherLossOptions, TeacherTerm } from '../ops/loss';
import type { CpeCrop } from '../model/cpe';
import { tidy } from '../scope';
import { tensor, Tensor } from '../tensor';
import { teacherImages } from '../teachers/input';
import { disposeTargets, Teacher, TeacherTargets } from '../teachers/types';
import { DEFAULT_BUCKET_BYTES } from './buckets';
import { addMicro, agree, checksum, cropRows, fnv, newSums, reduceGradients, shardOf } from './data-parallel';
import type { MicroResult, Shard } from './data-parallel';
import { latestCheckpoint, loadTrainingState, saveCheckpoint } from './checkpoint';
import type { ProcessGroup } from './distributed';
import { clipGradNorm } from '../optim/clip';
import { GroupedAdamW } from './groups';
import { MetricsFile, Progress, readMetrics, StepMetrics } from './progress';
import { partitionsRun, rankGroupChange, recordOf, resolveRankGroups } from './rankgroups';
import type { RankGroup } from './rankgroups';
import { mixSeed, Rng } from './rng';
import { checkSchedule, learningRate } from './schedule';
import { lossCurveSvg } from './svg';
import { closeTeachers, planTeachers, releasedNote, releaseUnrun, specPartitions, termKey, termKeysOf, worldTermKeys } from './teacher-plan';
import type { Plan } from './teacher-plan';

export interface HeadWeights {
  /** λ of the summary term; default the teacher's, else 1. */
  summaryWeight?: number;
  /** γ of the feature term; default the teacher's, else 1. */
  featureWeight?: number;
}

export interface TeacherSpec extends HeadWeights {
  /**
   * The teacher, loaded by the caller. Give it or `load`, not both. A rank of a partitioned run that runs none of
   * its partitions closes it at the start (unless a spec run there holds the same object): the caller's own close()
   * afterwards must be harmless, as the library's teachers' is.
   */
  teacher?: Teacher;
  /**
   * Loads the teacher, instead of `teacher`: distill calls it only in a process that runs one of the teacher's
   * partitions (a rank of a partitioned run loads only its own groups' teachers; one process, or an unpartitioned
   * run, loads every teacher), and closes what it loaded before it returns.
   */
  load?: () => Promise<Teacher>;
  /** Heads to train with their weights; default every head of the teacher. */
  heads?: Record<string, HeadWeights>;
  /** Indices of the data partitions this teacher trains on (spec §3, "Rank/Teacher Partitioning"); default all. */
  partitions?: number[];
}

export interface DistillOptions {
  /** The student's checkpoint folder (a resumed run loads the latest checkpoint's weights instead). */
  student: { dir: string; device?: Device; dtype?: DType };
  teachers: TeacherSpec[];
  data: DataSource;
  /** Optimizer steps of the whole run: the schedule's length. */
  steps: number;
  /** Stop (and checkpoint) after this many steps though the schedule runs to `steps`; default steps. */
  stopAfter?: number;
  optimizer?: { lr?: number; weightDecay?: number; betas?: [number, number]; eps?: number };
  schedule?: { warmupSteps?: number; minLr?: number };
  loss?: MultiTeacherLossOptions;
  /** Micro-batches per optimizer step; default 1. */
  accumulate?: number;
  /** Global gradient-norm clipping; default none. */
  maxGradNorm?: number;
  /**
   * ViTDet as a training augmentation (paper §4, spec §2.1): each micro-batch runs the student's blocks in windows of
   * a size drawn uniformly from windowSizes (null: that draw runs globally), on the schedule numGlobal /
   * numWindowed (default the student's own). Every window size must divide every data partition's patch grid.
   */
  vitdet?: VitDetAugment;
  /** Seed of the student's CPE crop and position-dropout draws; default 0. */
  seed?: number;
  /** Where checkpoints/, metrics.jsonl and loss.svg go; without it nothing is written. */
  outDir?: string;
  /** Checkpoint every this many steps (and always at the end); default only at the end. */
  checkpointEvery?: number;
  keepCheckpoints?: number;
  /**
   * Continue from outDir's latest checkpoint when there is one (true, or these options). A checkpoint records its
   * run's rankGroups: resuming with groups of other partitions or weights (which change the objective) is an Error
   * naming what differs, unless allowRankGroupChange. A checkpoint without the record (older) resumes unchecked.
   */
  resume?: boolean | ResumeOptions;
  /** false: silent. */
  progress?: false | { stream?: NodeJS.WritableStream & { isTTY?: boolean }; tty?: boolean; every?: number };
  /** Called after every step with the live student and optimizer (read them, do not keep them). */
  onStep?: (m: StepMetrics, live: { student: AnyRadioModel; optimizer: GroupedAdamW }) => void | Promise<void>;
  /** Awaited midway through every checkpoint save (tests kill a save there). */
  checkpointMidway?: () => Promise<void>;
  /**
   * Data-parallel training over this process group (initDistributed()); every rank runs distill with the same
   * options. Each partition's batch is the global batch and must be divisible by the group's size.
   */
  distributed?: ProcessGroup;
  /**
   * RADIO's rank/teacher partitioning: the groups of ranks, each on one data partition (its resolution, batch and
   * teachers), weighted so that the step equals one batch of all the groups' images (ts/train/rankgroups.ts). The
   * world must have exactly the ranks the groups hold, or be one process, which then runs every group itself.
   */
  rankGroups?: RankGroup[];
  /**
   * With a process group: the gradients are all-reduced in buckets of at most this many bytes, in reverse
   * parameter order (ts/train/buckets.ts); default 25 MB, DDP's. 0: one all-reduce per parameter.
   */
  bucketBytes?: number;
  /** A debugging aid: every this many steps, check that every rank holds bit-identical parameters (an Error if not). */
  distributedCheckEvery?: number;
}

export interface ResumeOptions {
  /** Resume though this run's rankGroups train on other partitions or with other weights than the checkpoint's. */
  allowRankGroupChange?: boolean;
}

export interface VitDetAugment {
  windowSizes: Array<number | null>;
  numGlobal?: number;
  numWindowed?: number;
}

export interface DistillResult {
  /** The trained student (train mode); the caller disposes it. */
  student: AnyRadioModel;
  optimizer: GroupedAdamW;
  step: number;
  skipped: number;
  /** The steps of this call (a resumed run's earlier steps are in metrics.jsonl). */
  history: StepMetrics[];
  checkpoint: string | null;
  resumedFrom: string | null;
  /**
   * The names of the teachers this process ran, in teachers' order: every teacher, except on a rank of a partitioned
   * run, which runs (and, for specs given as `load`, loads) only the teachers of its own groups' partitions.
   */
  teachers: string[];
}

/** Checks the ViTDet augmentation against the student and every data partition, naming the field. */
function checkVitdet(student: AnyRadioModel, v: VitDetAugment | undefined, data: DataSource): VitDetAugment | null {
  if (v === undefined) return null;
  const where = 'distill: vitdet';
  if (!(student instanceof RadioModel)) throw new Error(`${where}: ViTDet window augmentation applies to ViT students; this student is E-RADIO (${student.config.timmModel})`);
  if (!v || typeof v !== 'object') throw new Error(`${where} must be { windowSizes, numGlobal?, numWindowed? }, got ${JSON.stringify(v)}`);
  if (!Array.isArray(v.windowSizes) || v.windowSizes.length === 0) throw new Error(`${where}.windowSizes must be a non-empty array of window sizes (patches) or null`);
  for (const [j, ws] of v.windowSizes.entries())
    if (ws !== null && !(Number.isInteger(ws) && ws > 0)) throw new Error(`${where}.windowSizes[${j}] must be a positive integer or null, got ${JSON.stringify(ws)}`);
  for (const k of ['numGlobal', 'numWindowed'] as const)
    if (v[k] !== undefined && !(Number.isInteger(v[k]) && v[k]! >= (k === 'numGlobal' ? 1 : 0))) throw new Error(`${where}.${k} must be an integer >= ${k === 'numGlobal' ? 1 : 0}, got ${JSON.stringify(v[k])}`);
  if (v.numGlobal === undefined && v.numWindowed === undefined && !student.config.vitdet)
    throw new Error(`${where} needs numGlobal or numWindowed (the student has no ViTDet schedule of its own)`);
  const P = student.config.patchSize;
  for (const [i, p] of data.partitions.entries())
    for (const ws of v.windowSizes)
      if (ws !== null && ((p.height / P) % ws !== 0 || (p.width / P) % ws !== 0))
        throw new Error(`${where}.windowSizes: window ${ws} does not divide data partition ${i}'s patch grid ${p.height / P}x${p.width / P} (${p.height}x${p.width} px, patch ${P})`);
  return v;
}

async function readSummaryIdxs(dir: string): Promise<number[] | null> {
  const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    const key = ['radio_model.summary_idxs', 'summary_idxs'].find((k) => file.has(k));
    return key ? (await file.readInts(key)).data : null;
  } finally {
    await file.close();
  }
}

/**
 * The source checkpoint's tensors that the student's tree does not hold (E-RADIO's BatchNorm counters, CPB
 * coordinate tables and unused final norm; whatever else a released checkpoint carries), as they are, so that
 * every checkpoint the trainer writes has every key of the one it started from and loads strictly in the
 * reference implementation. They do not train; num_batches_tracked stays the source's (the momentum is fixed).
 * Float tensors pass through f32 (exact for F32, BF16 and F16; an F64 tensor keeps f32 precision).
 */
async function carriedTensors(dir: string, student: AnyRadioModel): Promise<Record<string, SafetensorsWriteEntry>> {
  const own = new Set([...student.namedParameters(), ...student.namedBuffers()].map(([k]) => k));
  const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    const out: Record<string, SafetensorsWriteEntry> = {};
    for (const k of file.keys()) {
      if (own.has(k) || k === 'radio_model.summary_idxs' || k === 'summary_idxs') continue;
      const e = file.entry(k);
      const data = (FLOAT_DTYPES as readonly string[]).includes(e.dtype) ? (await file.readFloat(k)).data : (await file.readInts(k)).data;
      out[k] = { dtype: e.dtype, shape: e.shape, data };
    }
    return out;
  } finally {
    await file.close();
  }
}

/** options.resume's options (none for true or false), checked. */
function checkResume(r: DistillOptions['resume']): ResumeOptions {
  if (r === undefined || typeof r === 'boolean') return {};
  if (!r || typeof r !== 'object') throw new Error(`distill: resume must be true, false or { allowRankGroupChange? }, got ${JSON.stringify(r)}`);
  for (const k of Object.keys(r)) if (k !== 'allowRankGroupChange') throw new Error(`distill: resume.${k}: unknown option (expected allowRankGroupChange)`);
  if (r.allowRankGroupChange !== undefined && typeof r.allowRankGroupChange !== 'boolean')
    throw new Error(`distill: resume.allowRankGroupChange must be true or false, got ${JSON.stringify(r.allowRankGroupChange)}`);
  return r;
}

/** The process group when it has more than one rank, checked against the options; null for one process. */
function checkGroup(o: DistillOptions): ProcessGroup | null {
  const g = o.distributed;
  const every = o.distributedCheckEvery;
  if (every !== undefined && !(Number.isInteger(every) && every >= 1)) throw new Error(`distill: distributedCheckEvery must be a positive integer, got ${JSON.stringify(every)}`);
  if (g === undefined) return null;
  if (!g || typeof g.allReduce !== 'function' || !Number.isInteger(g.size) || !Number.isInteger(g.rank)) throw new Error('distill: distributed must be a ProcessGroup (from initDistributed())');
  return g.size === 1 ? null : g;
}

/** Runs the distillation; see DistillOptions. */
export async function distill(o: DistillOptions): Promise<DistillResult> {
  const steps = o.steps;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`distill: steps must be a positive integer, got ${steps}`);
  const stopAfter = o.stopAfter ?? steps;
  if (!Number.isInteger(stopAfter) || stopAfter < 1 || stopAfter > steps) throw new Error(`distill: stopAfter must be an integer in [1, steps ${steps}], got ${o.stopAfter}`);
  const accumulate = o.accumulate ?? 1;
  if (!Number.isInteger(accumulate) || accumulate < 1) throw new Error(`distill: accumulate must be a positive integer, got ${o.accumulate}`);
  const maxGradNorm = o.maxGradNorm ?? Infinity;
  if (!(maxGradNorm > 0)) throw new Error(`distill: maxGradNorm must be > 0, got ${o.maxGradNorm}`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`distill: seed must be a non-negative integer, got ${o.seed}`);
  const lr = o.optimizer?.lr ?? 1e-3;
  const schedule = checkSchedule({ lr, totalSteps: steps, warmupSteps: o.schedule?.warmupSteps ?? 0, minLr: o.schedule?.minLr ?? 0 }, 'distill: schedule');
  if (o.resume && !o.outDir) throw new Error('distill: resume needs outDir (where the checkpoints are)');
  const resumeOpts = checkResume(o.resume);
  const group = checkGroup(o);
  const layout = resolveRankGroups(o.rankGroups, o.data.partitions, group?.rank ?? 0, group?.size ?? 1);
  const world = group?.size ?? 1;
  const bucketBytes = o.bucketBytes ?? DEFAULT_BUCKET_BYTES;
  if (!Number.isFinite(bucketBytes) || bucketBytes < 0) throw new Error(`distill: bucketBytes must be a finite number >= 0, got ${JSON.stringify(o.bucketBytes)}`);
  const writer = !group || group.rank === 0;  // the one rank that writes checkpoints, metrics and progress

  const root = o.outDir ? path.join(o.outDir, 'checkpoints') : null;
  const existing = root ? await latestCheckpoint(root) : null;
  // A fresh run into a folder with checkpoints would interleave two runs' steps there.
  if (existing && !o.resume) throw new Error(`distill: ${o.outDir} already holds checkpoints (latest ${existing}); pass resume to continue that run, or choose another outDir`);
  const resumeDir = o.resume ? existing : null;
  const sourceDir = resumeDir ?? o.student.dir;
  const configJson = await fs.promises.readFile(path.join(sourceDir, 'config.json'), 'utf8').catch((e: Error) => {
    throw new Error(`distill: cannot read the student's config.json in ${sourceDir} (${e.message})`);
  });
  const summaryIdxs = await readSummaryIdxs(sourceDir);
  const student = await loadRadio(sourceDir, { device: o.student.device, dtype: o.student.dtype, seed });
  const owned: Teacher[] = [];  // the teachers distill loaded (specs with load), closed before it returns
  try {
    const carried = await carriedTensors(sourceDir, student);
    student.train();
    const specParts = specPartitions(student, o.teachers, o.data);
    // Only the teachers of the partitions this process draws its own images of: on a rank of a partitioned run
    // another group's teacher would never run here, and a large one (DINOv2-g, SAM-H) is gigabytes.
    const runs = partitionsRun(layout, o.data.partitions.length);
    const held: Array<{ index: number; spec: TeacherSpec; teacher: Teacher; partitions: Set<number> }> = [];
    for (const [index, spec] of o.teachers.entries()) {
      if (![...specParts[index]].some((p) => runs.has(p))) continue;
      let teacher = spec.teacher;
      if (!teacher) {
        teacher = await spec.load!();
        if (teacher && typeof teacher.close === 'function') owned.push(teacher);
      }
      held.push({ index, spec, teacher, partitions: specParts[index] });
    }
    const released = await releaseUnrun(o.teachers, held);
    const plans = planTeachers(student, held);
    const vitdet = checkVitdet(student, o.vitdet, o.data);
    const optimizer = new GroupedAdamW(student.namedParameters(), {
      lr,
      weightDecay: o.optimizer?.weightDecay ?? 0.02,
      betas: o.optimizer?.betas,
      eps: o.optimizer?.eps,
    });
    const params = optimizer.groups.flatMap((g) => [...g.optimizer.params]);
    if (group) {
      // cpu gradients are reduced by MPI, cuda ones by NCCL (the group's communicator, made by ready()), in f32
      // both, bf16 ones too (./buckets).
      if (student.device !== 'cpu' && student.device !== 'cuda') throw new Error(`distill: distributed training runs on cpu students (MPI) or cuda students (NCCL); this one is on ${student.device}`);
      if (student.device === 'cuda' && group.device !== 'cuda')
        throw new Error("distill: the student is on cuda, and the process group has no NCCL communicator: pass device: 'cuda' to initDistributed");
      await group.ready();
    }
    let termKeys = [...new Set(plans.flatMap(termKeysOf))];
    let step = 0;
    let skipped = 0;
    let resumeNote: string | null = null;
    let releaseNote: string | null = null;
    if (resumeDir) {
      const state = await loadTrainingState(resumeDir, optimizer);
      if (state.seed !== seed) throw new Error(`distill: ${resumeDir} was trained with seed ${state.seed}, this run has seed ${seed}`);
      o.data.restore(state.data);
      step = state.step;
      skipped = state.skipped;
      if (state.rankGroups === undefined) resumeNote = `${resumeDir} does not record its rank groups (written before checkpoints recorded them): resumed without checking them; the next checkpoints record this run's`;
      else {
        const change = rankGroupChange(state.rankGroups, recordOf(layout, world));
        if (change && !resumeOpts.allowRankGroupChange)
          throw new Error(`distill: ${resumeDir} was trained with other rank groups (${change}); resuming would change the objective: pass resume: { allowRankGroupChange: true } to continue with this run's`);
        if (change) resumeNote = `resumed with other rank groups than ${resumeDir}'s (${change}), as allowRankGroupChange allows`;
      }
      if (step > stopAfter) throw new Error(`distill: ${resumeDir} is at step ${step}, beyond stopAfter ${stopAfter}`);
    }
    if (group) {
      const elements = params.reduce((n, p) => n + p.numel, 0);
      await agree(group, {
        'the first step (resumed from)': step, steps, stopAfter, accumulate, seed, maxGradNorm, lr,
        'the number of parameters': params.length, 'the number of parameter elements': elements,
        'the number of data partitions': o.data.partitions.length,
        'the rank groups (a hash of them)': fnv(JSON.stringify(layout.groups)), bucketBytes, 'the number of teachers': o.teachers.length,
      });
      termKeys = await worldTermKeys(group, plans, o.teachers.length);
      releaseNote = await releasedNote(group, released);
      // Like DDP: rank 0's weights (and buffers) are everyone's, whatever each rank loaded.
      for (const [, t] of [...student.namedParameters(), ...student.namedBuffers()]) group.broadcast(t, 0);
    }
    if (o.outDir && writer) await fs.promises.mkdir(o.outDir, { recursive: true });
    const metrics = o.outDir && writer ? new MetricsFile(path.join(o.outDir, 'metrics.jsonl'), resumeDir ? step : null) : null;
    const progress = o.progress === false || !writer ? null : new Progress({ ...(o.progress ?? {}), totalSteps: steps, firstStep: step });
    if (resumeDir) progress?.message(`resumed from ${resumeDir} at step ${step}`);
    if (resumeNote) progress?.message(resumeNote);
    if (releaseNote) progress?.message(releaseNote);
    const history: StepMetrics[] = [];
    const started = process.hrtime.bigint();
    let images = 0;
    let checkpoint: string | null = resumeDir;
    const save = async () => {
      if (!root || !writer) return;
      const optimizerSteps = Object.fromEntries(optimizer.groups.map((g) => [g.name, g.optimizer.steps]));
      checkpoint = await saveCheckpoint({
        root, configJson, student, summaryIdxs, carried, optimizer, keep: o.keepCheckpoints, midway: o.checkpointMidway,
        state: { step, seed, skipped, data: o.data.state(), optimizerSteps, rankGroups: recordOf(layout, world) },
      });
      progress?.message(`checkpoint at step ${step}: ${checkpoint}`);
    };

    while (step < stopAfter) {
      optimizer.lr = learningRate(step, schedule);
      const windows: Array<number | null> = [];
      const sums = newSums(layout, termKeys);
      for (let micro = 0; micro < accumulate; micro++) {
        // Like the crop, the window draw is a function of (seed, step, micro-batch), so a resumed run repeats it.
        let window: VitDetOverride | undefined;
        if (vitdet) {
          const ws = vitdet.windowSizes[Math.floor(new Rng(mixSeed(seed, step, micro, 1)).next() * vitdet.windowSizes.length)];
          window = { windowSize: ws, numGlobal: vitdet.numGlobal, numWindowed: vitdet.numWindowed };
          windows.push(ws);
        }
        for (const g of layout.groups) {
          const full = await o.data.next(g.partition);
          if (g.partition !== undefined && full.partition !== g.partition)
            throw new Error(`distill: asked the data source for a batch of partition ${g.partition}, it gave one of partition ${full.partition} (rankGroups need a source whose next(partition) draws that partition)`);
          if (!layout.mine.includes(g)) continue;
          const share: Shard | null = group && !layout.emulated ? { rank: g.ranks.indexOf(group.rank), size: g.ranks.length } : null;
          const b = share ? full.batch / share.size : full.batch;
          const c = (g.weight * b) / (layout.total ?? full.batch);
          // Group 0 keeps the unpartitioned run's crop draws, so that a run of one group is the unpartitioned run.
          const cropSeed = g.index === 0 ? mixSeed(seed, step, micro) : mixSeed(seed, step, micro, 2, g.index);
          const r = await microStep(student, plans, full, o.loss ?? {}, ((layout.emulated ? 1 : world) * c) / accumulate, cropSeed, window, share);
          addMicro(sums, g.index, c / accumulate, b / full.batch / accumulate, r);
        }
      }
      // Only here, after the last micro-batch: accumulation steps do not communicate.
      const allReduces = group ? await reduceGradients(group, params, sums, bucketBytes) : undefined;
      const { loss, terms, stepImages } = sums;
      images += stepImages;
      const gradNorm = await clipGradNorm(params, maxGradNorm);
      const bad = !Number.isFinite(loss) || !Number.isFinite(gradNorm);
      if (bad) skipped++;
      else optimizer.step();
      optimizer.zeroGrad();
      step++;
      const m: StepMetrics = {
        step, lr: optimizer.lr, loss, terms, gradNorm, skipped: bad, images, elapsed: Number(process.hrtime.bigint() - started) / 1e9,
        ...(vitdet ? { windows } : {}), ...(layout.partitioned ? { groups: sums.groups } : {}), ...(allReduces !== undefined ? { allReduces } : {}),
      };
      history.push(m);
      metrics?.append(m);
      progress?.step(m);
      await o.onStep?.(m, { student, optimizer });
      if (group && o.distributedCheckEvery && step % o.distributedCheckEvery === 0) {
        const ck = (await group.allGatherScalars([await checksum(params)])).map((r) => r[0]);
        if (ck.some((x) => x !== ck[0])) throw new Error(`distill: after step ${step} the ranks' parameters differ (checksums ${ck.map((x, r) => `rank ${r}: ${x.toString(16)}`).join(', ')})`);
      }
      if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < stopAfter) await save();
    }
    await save();
    if (group) {
      // Every rank returns only once the final checkpoint is complete, and names it.
      await group.barrier();
      if (!writer && root) checkpoint = await latestCheckpoint(root);
    }
    progress?.done();
    if (o.outDir && writer) {
      const all = readMetrics(path.join(o.outDir, 'metrics.jsonl'));
      const names = [...new Set(all.flatMap((m) => Object.keys(m.terms)))];
      const series = [
        { name: 'total', points: all.map((m): [number, number] => [m.step, m.loss]) },
        ...names.map((n) => ({ name: n, points: all.filter((m) => n in m.terms).map((m): [number, number] => [m.step, m.terms[n]]) })),
      ];
      await fs.promises.writeFile(path.join(o.outDir, 'loss.svg'), lossCurveSvg(series, { title: `distillation loss (${all.length} steps)` }));
    }
    await closeTeachers(owned);
    return { student, optimizer, step, skipped, history, checkpoint, resumedFrom: resumeDir, teachers: plans.map((p) => p.teacher.name) };
  } catch (e) {
    student.dispose();
    await closeTeachers(owned).catch(() => {});  // the run's own Error is the one to report
    throw e;
  }
}

/** A teacher on another device (a large teacher on its own GPU, shards read to cpu): its targets join the student. */
function onDevice(targets: TeacherTargets, device: Device): TeacherTargets {
  for (const t of Object.values(targets))
    for (const part of ['summary', 'features'] as const) {
      const x = t[part];
      if (!x || x.device === device) continue;
      t[part] = x.to(device);
      x.dispose();
    }
  return targets;
}

/** One micro-batch: teachers, student forward, loss scaled by `scale`, backward (gradients accumulate). Returns the unscaled values. */
async function microStep(
  student: AnyRadioModel,
  plans: Plan[],
  full: ImageBatch,
  lossOpts: MultiTeacherLossOptions,
  scale: number,
  cropSeed: number,
  vitdet: VitDetOverride | undefined,
  shard: Shard | null,
): Promise<MicroResult> {
  const batch = shard ? shardOf(full, shard) : full;
  const images = tensor(batch.images, [batch.batch, 3, batch.height, batch.width], { device: student.device });
  const active = plans.filter((p) => p.partitions.has(batch.partition));
  const targets: TeacherTargets[] = [];
  let cpe: CpeCrop | undefined;
  try {
    for (const p of active) {
      const input = teacherImages(images, p.teacher);
      try {
        targets.push(onDevice(await p.teacher.forward(input, batch), student.device));
      } finally {
        if (input !== images) input.dispose();
      }
    }
    // The crop draws are a function of (seed, step, micro-batch): a resumed run re-derives them. A rank draws them
    // for the global batch, as one process would, and keeps its rows.
    if (student instanceof RadioModel) student.seed(cropSeed);
    cpe = shard && student instanceof RadioModel ? await cropRows(student.sampleCpe(full.batch, full.height, full.width), shard.rank * batch.batch, batch.batch) : undefined;
    const keys: string[] = [];
    const { total, parts } = tidy(() => {
      const out = student instanceof RadioModel ? student.forward(images, { ...(vitdet ? { vitdet } : {}), ...(cpe ? { cpe } : {}) }) : student.forward(images);
      const terms: TeacherTerm[] = [];
      active.forEach((p, t) => {
        for (const h of p.heads) {
          const target = targets[t][h.head];
          if (!target) throw new Error(`distill: teacher ${p.teacher.name} returned no targets for head ${h.head}`);
          const summary = h.summary && target.summary !== undefined;
          terms.push({
            student: { features: out[h.head].features, grid: student.featureGrid(h.head, batch.height, batch.width), ...(summary ? { summary: out[h.head].summary } : {}) },
            teacher: { features: target.features, grid: target.grid, ...(summary ? { summary: target.summary } : {}) },
            summaryWeight: h.summaryWeight,
            featureWeight: h.featureWeight,
          });
          if (summary) keys.push(termKey(p.teacher.name, h.head, 'summary'));
          keys.push(termKey(p.teacher.name, h.head, 'features'));
        }
      });
      const r = multiTeacherLoss(terms, lossOpts);
      (scale !== 1 ? r.total.scale(scale) : r.total).backward();
      return { total: r.total.detach(), parts: r.terms.flatMap((x) => [x.summary, x.features].filter((v): v is Tensor => v !== undefined)) };
    });
    try {
      const values = await Promise.all([total, ...parts].map((t) => t.item()));
      return { loss: values[0], terms: Object.fromEntries(keys.map((k, i) => [k, values[i + 1]])), images: batch.batch };
    } finally {
      for (const t of [total, ...parts]) t.dispose();
    }
  } finally {
    images.dispose();
    for (const t of targets) disposeTargets(t);
    if (cpe) for (const t of [cpe.keep, cpe.scale, cpe.offset]) t?.dispose();
  }
}
