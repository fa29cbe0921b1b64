// Training checkpoints. Each is a folder `step-<N>` under a root, holding the student in the Hugging Face layout
// (config.json + model.safetensors, the keys and config of the checkpoint it was loaded from, so RadioModel.load
// and the reference implementation read it) and training.safetensors (optimizer moments and masters, with the
// step, seed, skip count, data source state and rank groups as JSON metadata). A folder is written under a temporary name and
// renamed whole, and only then does the `latest` pointer (replaced by rename) name it: a crash at any point leaves
// the previous checkpoint complete and pointed to.
import * as fs from 'fs';
import * as path from 'path';

import type { DataState } from '../data/types';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors';
import type { SafetensorsWriteInput } from '../io/safetensors';
import type { AnyRadioModel } from '../model/load';
import type { GroupedAdamW } from './groups';

const FORMAT = 'am-radio-training-state/1';
const STEP_DIR = /^step-(\d+)$/;
const TMP_DIR = /^step-\d+\.tmp-(\d+)$/;

export interface TrainingState {
  /** Optimizer steps done (skipped ones included). */
  step: number;
  seed: number;
  skipped: number;
  data: DataState;
  /** AdamW's own step count per parameter group (skipped steps do not count there). */
  optimizerSteps: Record<string, number>;
  /**
   * The rank groups the run was trained with (distill's rankGroups, resolved) and its world size; groups null for
   * an unpartitioned run. Absent in checkpoints written before it was recorded: unknown.
   */
  rankGroups?: RecordedRankGroups;
}

export interface RecordedRankGroups {
  world: number;
  groups: Array<{ partition: number; ranks: number[]; weight: number }> | null;
}

/** Errors unless r is a RecordedRankGroups (a checkpoint edited by hand, or of a newer format). */
function checkRecord(file: string, r: unknown): void {
  const bad = (why: string) => new Error(`${file}: state.rankGroups ${why}`);
  if (!r || typeof r !== 'object') throw bad(`must be { world, groups }, got ${JSON.stringify(r)}`);
  const { world, groups } = r as RecordedRankGroups;
  if (!Number.isInteger(world) || world < 1) throw bad(`.world must be a positive integer, got ${JSON.stringify(world)}`);
  if (groups === null) return;
  if (!Array.isArray(groups)) throw bad(`.groups must be an array or null, got ${JSON.stringify(groups)}`);
  for (const [i, g] of groups.entries())
    if (!g || !Number.isInteger(g.partition) || !Array.isArray(g.ranks) || typeof g.weight !== 'number')
      throw bad(`.groups[${i}] must be { partition, ranks, weight }, got ${JSON.stringify(g)}`);
}

export interface SaveCheckpointOptions {
  /** Folder of the step-N checkpoints and the latest pointer (created). */
  root: string;
  /** The text of the student's config.json, written unchanged. */
  configJson: string;
  student: AnyRadioModel;
  /** The checkpoint's summary_idxs buffer, written back when the source had one. */
  summaryIdxs: number[] | null;
  /** Tensors of the source checkpoint outside the student's tree, written back unchanged. */
  carried?: Record<string, SafetensorsWriteInput>;
  optimizer: GroupedAdamW;
  state: TrainingState;
  /** Complete checkpoints kept (the newest); default 2. */
  keep?: number;
  /** Awaited midway, with the weights written and the training state not yet: lets a test kill a save at a known point. */
  midway?: () => Promise<void>;
}

const stepDir = (step: number) => `step-${String(step).padStart(8, '0')}`;

async function syncPath(p: string): Promise<void> {
  const h = await fs.promises.open(p, 'r').catch(() => null);
  if (!h) return;
  await h.sync().catch(() => {});
  await h.close();
}

async function writeFileDurably(file: string, text: string): Promise<void> {
  const h = await fs.promises.open(file, 'w');
  try {
    await h.writeFile(text);
    await h.sync();
  } finally {
    await h.close();
  }
}

/** The folder `latest` names under root, or null when there is no complete checkpoint yet. */
export async function latestCheckpoint(root: string): Promise<string | null> {
  const pointer = path.join(root, 'latest');
  let text: string;
  try {
    text = await fs.promises.readFile(pointer, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${pointer}: cannot read the checkpoint pointer (${(e as Error).message})`);
  }
  const name = text.trim();
  if (!STEP_DIR.test(name)) throw new Error(`${pointer}: does not name a step-N checkpoint folder (holds ${JSON.stringify(text.slice(0, 80))})`);
  return path.join(root, name);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Writes a checkpoint of the student and the training state; returns its folder. */
export async function saveCheckpoint(o: SaveCheckpointOptions): Promise<string> {
  const keep = o.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`saveCheckpoint: keep must be a positive integer, got ${o.keep}`);
  await fs.promises.mkdir(o.root, { recursive: true });
  const name = stepDir(o.state.step);
  const final = path.join(o.root, name);
  const latest = await latestCheckpoint(o.root);
  // The step is a pure function of what came before it: a checkpoint of this step that is already the latest holds
  // this very state, and replacing it would leave a moment with no latest folder.
  if (latest === final) return final;
  const tmp = path.join(o.root, `${name}.tmp-${process.pid}`);
  await fs.promises.rm(tmp, { recursive: true, force: true });
  await fs.promises.mkdir(tmp);

  const masters = new Map<unknown, SafetensorsWriteInput>();
  const optimizerTensors: Record<string, SafetensorsWriteInput> = {};
  for (const g of o.optimizer.groups) {
    g.optimizer.stateTensors().forEach((s, i) => {
      if (!s) return;
      const key = `${g.name}.${g.keys[i]}`;
      optimizerTensors[`${key}.m`] = s.m;
      optimizerTensors[`${key}.v`] = s.v;
      if (s.master) {
        optimizerTensors[`${key}.master`] = s.master;
        masters.set(g.optimizer.params[i], { data: s.master, dtype: 'F32' });
      }
    });
  }
  // bf16 training keeps f32 masters: those are the weights (the bf16 parameters are their rounding).
  const weights: Record<string, SafetensorsWriteInput> = {};
  if (o.summaryIdxs) weights['radio_model.summary_idxs'] = { dtype: 'I64', shape: [o.summaryIdxs.length], data: o.summaryIdxs };
  for (const [k, p] of o.student.namedParameters()) weights[k] = masters.get(p) ?? { data: p, dtype: 'F32' };
  for (const [k, b] of o.student.namedBuffers()) weights[k] = { data: b, dtype: 'F32' };
  for (const [k, t] of Object.entries(o.carried ?? {})) weights[k] = t;

  await writeFileDurably(path.join(tmp, 'config.json'), o.configJson);
  await writeSafetensors(path.join(tmp, 'model.safetensors'), weights, { format: 'pt' });
  if (o.midway) await o.midway();
  await writeSafetensors(path.join(tmp, 'training.safetensors'), optimizerTensors, { format: FORMAT, state: JSON.stringify(o.state) });
  await syncPath(tmp);
  await fs.promises.rm(final, { recursive: true, force: true });
  await fs.promises.rename(tmp, final);
  await syncPath(o.root);
  const pointer = path.join(o.root, 'latest');
  await writeFileDurably(`${pointer}.tmp-${process.pid}`, `${name}\n`);
  await fs.promises.rename(`${pointer}.tmp-${process.pid}`, pointer);
  await syncPath(o.root);
  await prune(o.root, keep);
  return final;
}

// Drops all but the newest `keep` checkpoints, and the temporary folders of writers that died.
async function prune(root: string, keep: number): Promise<void> {
  const names = await fs.promises.readdir(root);
  const steps = names.filter((n) => STEP_DIR.test(n)).sort();
  const doomed = steps.slice(0, Math.max(0, steps.length - keep));
  for (const n of names) {
    const m = TMP_DIR.exec(n) ?? /^latest\.tmp-(\d+)$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) doomed.push(n);
  }
  for (const n of doomed) await fs.promises.rm(path.join(root, n), { recursive: true, force: true });
}

/** Reads a checkpoint's training state and loads its optimizer state into optimizer (whose groups must match). */
export async function loadTrainingState(dir: string, optimizer: GroupedAdamW): Promise<TrainingState> {
  const file = await SafetensorsFile.open(path.join(dir, 'training.safetensors'));
  try {
    if (file.metadata.format !== FORMAT) throw new Error(`${file.file}: not an am-radio training state (format ${JSON.stringify(file.metadata.format)}, expected ${FORMAT})`);
    let state: TrainingState;
    try {
      state = JSON.parse(file.metadata.state ?? '');
    } catch (e) {
      throw new Error(`${file.file}: the training state metadata is not JSON (${(e as Error).message})`);
    }
    for (const k of ['step', 'seed', 'skipped'] as const)
      if (!Number.isSafeInteger(state[k]) || state[k] < 0) throw new Error(`${file.file}: state.${k} must be a non-negative integer, got ${JSON.stringify(state[k])}`);
    if (state.rankGroups !== undefined) checkRecord(file.file, state.rankGroups);
    const known = new Set(optimizer.groups.flatMap((g) => g.keys.flatMap((k) => ['m', 'v', 'master'].map((p) => `${g.name}.${k}.${p}`))));
    const stray = file.keys().filter((k) => !known.has(k));
    if (stray.length) throw new Error(`${file.file}: optimizer state for parameters the student does not train: ${stray.slice(0, 5).join(', ')}${stray.length > 5 ? ', ...' : ''}`);
    for (const g of optimizer.groups) {
      const steps = state.optimizerSteps?.[g.name];
      if (!Number.isSafeInteger(steps) || steps < 0) throw new Error(`${file.file}: state.optimizerSteps.${g.name} is missing`);
      const per = [];
      for (const [i, key] of g.keys.entries()) {
        const k = `${g.name}.${key}`;
        if (!file.has(`${k}.m`)) {
          per.push(null);
          continue;
        }
        const shape = g.optimizer.params[i].shape;
        const read = async (part: string) => (await file.readFloat(`${k}.${part}`, shape)).data;
        per.push({ m: await read('m'), v: await read('v'), master: file.has(`${k}.master`) ? await read('master') : undefined });
      }
      g.optimizer.loadState(steps, per);
    }
    return state;
  } finally {
    await file.close();
  }
}
