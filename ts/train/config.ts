// The JSON configuration of `am-radio distill`: parsed strictly (unknown keys, missing or mistyped fields are an
// Error naming the field's path, e.g. `config.teachers[1].type`), relative paths taken from the config's folder,
// then turned into DistillOptions (teachers loaded, data source made, student created when asked to).
import * as fs from 'fs';
import * as path from 'path';

import { SyntheticSource } from '../data/synthetic';
import type { DataSource, Partition } from '../data/types';
import type { DType, Device } from '../native';
import { HfTeacher } from '../teachers/hf/teacher';
import { RadioTeacher } from '../teachers/radio';
import { ShardTeacher } from '../teachers/shards';
import type { Teacher } from '../teachers/types';
import type { DistillOptions, HeadWeights, TeacherSpec } from './distill';
import type { ProcessGroup } from './distributed';
import { partitionsRun, resolveRankGroups } from './rankgroups';
import { createStudent, StudentAdaptorSpec } from './student';

type Json = Record<string, unknown>;

export class Fields {
  constructor(readonly where: string, readonly obj: Json) {}

  static of(where: string, v: unknown, allowed: string[]): Fields {
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${where} must be an object`);
    for (const k of Object.keys(v)) if (!allowed.includes(k)) throw new Error(`${where}.${k}: unknown key (expected one of ${allowed.join(', ')})`);
    return new Fields(where, v as Json);
  }

  at(k: string): string {
    return `${this.where}.${k}`;
  }

  has(k: string): boolean {
    return this.obj[k] !== undefined;
  }

  str(k: string, opt?: false): string;
  str(k: string, opt: true): string | undefined;
  str(k: string, opt = false): string | undefined {
    const v = this.obj[k];
    if (v === undefined && opt) return undefined;
    if (typeof v !== 'string' || v === '') throw new Error(`${this.at(k)} must be a non-empty string${v === undefined ? ' (missing)' : `, got ${JSON.stringify(v)}`}`);
    return v;
  }

  num(k: string, o: { opt?: boolean; int?: boolean; min?: number; positive?: boolean } = {}): number | undefined {
    const v = this.obj[k];
    if (v === undefined && o.opt) return undefined;
    const bad = typeof v !== 'number' || !Number.isFinite(v) || (o.int && !Number.isInteger(v)) || (o.min !== undefined && v < o.min) || (o.positive && v <= 0);
    if (bad) {
      const what = `${o.int ? 'an integer' : 'a finite number'}${o.positive ? ' > 0' : o.min !== undefined ? ` >= ${o.min}` : ''}`;
      throw new Error(`${this.at(k)} must be ${what}${v === undefined ? ' (missing)' : `, got ${JSON.stringify(v)}`}`);
    }
    return v as number;
  }

  bool(k: string): boolean | undefined {
    const v = this.obj[k];
    if (v !== undefined && typeof v !== 'boolean') throw new Error(`${this.at(k)} must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean | undefined;
  }

  array(k: string, opt = false): unknown[] | undefined {
    const v = this.obj[k];
    if (v === undefined && opt) return undefined;
    if (!Array.isArray(v) || v.length === 0) throw new Error(`${this.at(k)} must be a non-empty array${v === undefined ? ' (missing)' : ''}`);
    return v;
  }

  size(k: string): [number, number] | undefined {
    const v = this.obj[k];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isInteger(x) && x > 0)) throw new Error(`${this.at(k)} must be [height, width] in pixels, got ${JSON.stringify(v)}`);
    return [v[0], v[1]];
  }

  path(k: string, base: string, opt?: false): string;
  path(k: string, base: string, opt: true): string | undefined;
  path(k: string, base: string, opt = false): string | undefined {
    const s = opt ? this.str(k, true) : this.str(k);
    return s === undefined ? undefined : path.resolve(base, s);
  }
}

function parsePartitions(where: string, list: unknown[]): Partition[] {
  return list.map((p, i) => {
    const f = Fields.of(`${where}[${i}]`, p, ['height', 'width', 'batch', 'weight']);
    return {
      height: f.num('height', { int: true, positive: true })!,
      width: f.num('width', { int: true, positive: true })!,
      batch: f.num('batch', { int: true, positive: true })!,
      ...(f.has('weight') ? { weight: f.num('weight', { positive: true }) } : {}),
    };
  });
}

/**
 * A data source from its config: `{ type: 'synthetic', partitions, seed?, images? }`, or `{ type: 'folder', dir,
 * partitions, ... }` (ImageFolderSource; `dir` and `list` relative to base).
 */
/** The keys a teacher entry of each computing type takes beyond type, dir, name and the loss weights. */
export const TEACHER_FIELDS = { radio: ['inputSize', 'heads'], hf: ['inputSize', 'head', 'summary', 'dtype', 'features', 'maxNumPatches'] } as const;

/**
 * A teacher entry's loader, its fields checked now (before any data is read): "radio" (a RADIO checkpoint,
 * RadioTeacher) or "hf" (a Hugging Face DINOv2 / CLIP / SigLIP / SigLIP2 NaFlex / SAM folder, HfTeacher). `f` holds
 * the entry.
 */
export function teacherLoader(type: 'radio' | 'hf', f: Fields, base: string, device: Device): () => Promise<Teacher> {
  const dir = f.path('dir', base);
  const name = f.str('name', true);
  if (type === 'radio') {
    let heads: Record<string, string> | undefined;
    if (f.has('heads')) {
      const m = Fields.of(f.at('heads'), f.obj.heads, Object.keys(f.obj.heads as Json));
      heads = Object.fromEntries(Object.keys(m.obj).map((h) => [h, m.str(h)]));
    }
    const inputSize = f.size('inputSize') ?? null;
    return () => RadioTeacher.load(dir, { name, inputSize, heads, device });
  }
  const dtype = f.str('dtype', true);
  if (dtype !== undefined && dtype !== 'f32' && dtype !== 'bf16') throw new Error(`${f.at('dtype')} must be "f32" or "bf16", got ${JSON.stringify(dtype)}`);
  // inputSize: absent → the preprocessor's size; null → the student's resolution.
  const inputSize = f.has('inputSize') && f.obj.inputSize === null ? null : f.size('inputSize');
  const features = f.str('features', true) as 'encoder' | 'neck' | undefined;
  // SigLIP2 NaFlex's patch budget; HfTeacher.load refuses it for the other families.
  const maxNumPatches = f.num('maxNumPatches', { opt: true, int: true, positive: true });
  const opts = { name, head: f.str('head', true), summary: f.bool('summary'), dtype: dtype as 'f32' | 'bf16' | undefined, inputSize, features, maxNumPatches, device };
  return () => HfTeacher.load(dir, opts);
}

export function createDataSource(config: unknown, where = 'config.data', base = process.cwd()): DataSource {
  const type = Fields.of(where, config, Object.keys((config as Json) ?? {})).str('type');
  if (type === 'synthetic') {
    const f = Fields.of(where, config, ['type', 'partitions', 'seed', 'images']);
    return new SyntheticSource({
      partitions: parsePartitions(f.at('partitions'), f.array('partitions')!),
      seed: f.num('seed', { opt: true, int: true, min: 0 }),
      images: f.num('images', { opt: true, int: true, positive: true }),
    });
  }
  if (type === 'folder') {
    // Loaded only when asked for: the folder source decodes images with sharp, which the synthetic path never needs.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { ImageFolderSource } = require('../data/folder') as typeof import('../data/folder');
    const f = Fields.of(where, config, Object.keys(config as Json));
    const opts: Json = { ...(config as Json), partitions: parsePartitions(f.at('partitions'), f.array('partitions')!) };
    delete opts.type;
    if (opts.dir !== undefined) opts.dir = f.path('dir', base);
    if (opts.list !== undefined) opts.list = f.path('list', base);
    try {
      return new ImageFolderSource(opts as unknown as ConstructorParameters<typeof ImageFolderSource>[0]);
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message.replace(/^ImageFolderSource: /, '')}`);
    }
  }
  throw new Error(`${where}.type: unknown data type ${JSON.stringify(type)} (expected "synthetic" or "folder")`);
}

export interface PrepareOptions {
  /**
   * The process group distill will run on: with rankGroups, only the teachers of this rank's groups' partitions
   * are loaded (the others are given to distill as load, which it never calls on this rank). Default: one process,
   * which runs every group and so loads every teacher.
   */
  distributed?: ProcessGroup;
}

export interface DistillConfig {
  options: Omit<DistillOptions, 'teachers' | 'data'>;
  /** Loads the teachers this process runs and makes the data source (and the student, if the config asks to create it). */
  prepare(o?: PrepareOptions): Promise<{ teachers: TeacherSpec[]; data: DataSource; close(): Promise<void> }>;
}

const TOP = ['student', 'teachers', 'data', 'optimizer', 'schedule', 'loss', 'steps', 'accumulate', 'maxGradNorm', 'seed', 'output', 'checkpointEvery', 'keepCheckpoints', 'resume', 'logEvery', 'rankGroups', 'bucketBytes'];

function headWeights(f: Fields): HeadWeights {
  return { summaryWeight: f.num('summaryWeight', { opt: true, min: 0 }), featureWeight: f.num('featureWeight', { opt: true, min: 0 }) };
}

/** Parses a distill config (JSON.parse'd); paths are relative to base (the config file's folder). */
export function parseDistillConfig(json: unknown, base: string): DistillConfig {
  const c = Fields.of('config', json, TOP);
  const s = Fields.of('config.student', c.obj.student, ['dir', 'device', 'dtype', 'init', 'vitdet']);
  const device = s.str('device', true);
  if (device !== undefined && !['cpu', 'sim', 'cuda'].includes(device)) throw new Error(`config.student.device must be cpu, sim or cuda, got ${JSON.stringify(device)}`);
  const dtype = s.str('dtype', true);
  if (dtype !== undefined && !['f32', 'bf16'].includes(dtype)) throw new Error(`config.student.dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
  const studentDir = s.path('dir', base);
  const init = s.has('init') ? Fields.of('config.student.init', s.obj.init, ['embedDim', 'depth', 'heads', 'patchSize', 'cpeMaxSize', 'seed']) : null;
  const initSpec = init && {
    embedDim: init.num('embedDim', { int: true, positive: true })!,
    depth: init.num('depth', { int: true, positive: true })!,
    heads: init.num('heads', { int: true, positive: true })!,
    patchSize: init.num('patchSize', { opt: true, int: true, positive: true }),
    cpeMaxSize: init.num('cpeMaxSize', { opt: true, int: true, positive: true }),
    seed: init.num('seed', { opt: true, int: true, min: 0 }),
  };

  const vd = s.has('vitdet') ? Fields.of('config.student.vitdet', s.obj.vitdet, ['windowSizes', 'numGlobal', 'numWindowed']) : null;
  const vitdet = vd && {
    windowSizes: vd.array('windowSizes')!.map((ws, j) => {
      if (ws !== null && !(Number.isInteger(ws) && (ws as number) > 0)) throw new Error(`${vd.at('windowSizes')}[${j}] must be a window size in patches (a positive integer) or null, got ${JSON.stringify(ws)}`);
      return ws as number | null;
    }),
    numGlobal: vd.num('numGlobal', { opt: true, int: true, positive: true }),
    numWindowed: vd.num('numWindowed', { opt: true, int: true, min: 0 }),
  };

  const teacherConfigs = c.array('teachers')!.map((t, i) => {
    const where = `config.teachers[${i}]`;
    const type = Fields.of(where, t, Object.keys((t as Json) ?? {})).str('type');
    const common = ['type', 'dir', 'name', 'summaryWeight', 'featureWeight', 'headWeights', 'partitions'];
    if (type !== 'radio' && type !== 'shards' && type !== 'hf') throw new Error(`${where}.type: unknown teacher type ${JSON.stringify(type)} (expected "radio", "hf" or "shards")`);
    const f = Fields.of(where, t, type === 'shards' ? common : [...common, ...TEACHER_FIELDS[type]]);
    const dir = f.path('dir', base);
    const hw = f.has('headWeights') ? Fields.of(f.at('headWeights'), f.obj.headWeights, Object.keys(f.obj.headWeights as Json)) : null;
    const heads = hw && Object.fromEntries(Object.keys(hw.obj).map((h) => [h, headWeights(Fields.of(hw.at(h), hw.obj[h], ['summaryWeight', 'featureWeight']))]));
    const partitions = f.array('partitions', true)?.map((p, j) => {
      if (!Number.isInteger(p) || (p as number) < 0) throw new Error(`${f.at('partitions')}[${j}] must be a partition index, got ${JSON.stringify(p)}`);
      return p as number;
    });
    const open = type === 'shards' ? null : teacherLoader(type, f, base, (device ?? 'cpu') as Device);
    const load = async (): Promise<Teacher> => {
      try {
        if (!open) return await ShardTeacher.open(dir, { name: f.str('name', true) });
        return await open();
      } catch (e) {
        throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
      }
    };
    return { load, weights: headWeights(f), heads: heads ?? undefined, partitions };
  });
  const dataConfig = c.obj.data;
  if (dataConfig === undefined) throw new Error('config.data must be an object (missing)');
  const o = c.has('optimizer') ? Fields.of('config.optimizer', c.obj.optimizer, ['lr', 'weightDecay', 'betas', 'eps']) : null;
  const betas = o?.obj.betas;
  if (betas !== undefined && (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)))
    throw new Error(`config.optimizer.betas must be [beta1, beta2] in [0, 1), got ${JSON.stringify(betas)}`);
  const sch = c.has('schedule') ? Fields.of('config.schedule', c.obj.schedule, ['warmupSteps', 'minLr']) : null;
  const l = c.has('loss') ? Fields.of('config.loss', c.obj.loss, ['mode', 'alpha', 'beta', 'delta']) : null;
  const mode = l?.str('mode', true);
  if (mode !== undefined && mode !== 'cosine+smoothl1' && mode !== 'mse') throw new Error(`config.loss.mode must be "cosine+smoothl1" or "mse", got ${JSON.stringify(mode)}`);
  const steps = c.num('steps', { int: true, positive: true })!;
  const warmupSteps = sch?.num('warmupSteps', { opt: true, int: true, min: 0 });
  if (warmupSteps !== undefined && warmupSteps > steps) throw new Error(`config.schedule.warmupSteps ${warmupSteps} is more than config.steps ${steps}`);
  const logEvery = c.num('logEvery', { opt: true, int: true, positive: true });
  // The groups' shapes here; how they cover the world and the data partitions, distill checks (it knows both).
  const rankGroups = c.array('rankGroups', true)?.map((g, i) => {
    const f = Fields.of(`${c.at('rankGroups')}[${i}]`, g, ['partition', 'ranks', 'size', 'weight']);
    const ranks = f.array('ranks', true)?.map((r, j) => {
      if (!Number.isInteger(r) || (r as number) < 0) throw new Error(`${f.at('ranks')}[${j}] must be a rank (an integer >= 0), got ${JSON.stringify(r)}`);
      return r as number;
    });
    return { partition: f.num('partition', { int: true, min: 0 })!, ranks, size: f.num('size', { opt: true, int: true, positive: true }), weight: f.num('weight', { opt: true, positive: true }) };
  });

  const options: DistillConfig['options'] = {
    student: { dir: studentDir, device: device as Device | undefined, dtype: dtype as DType | undefined },
    steps,
    ...(vitdet ? { vitdet } : {}),
    optimizer: o ? { lr: o.num('lr', { opt: true, min: 0 }), weightDecay: o.num('weightDecay', { opt: true, min: 0 }), betas: betas as [number, number] | undefined, eps: o.num('eps', { opt: true, min: 0 }) } : undefined,
    schedule: sch ? { warmupSteps, minLr: sch.num('minLr', { opt: true, min: 0 }) } : undefined,
    loss: l ? { mode: mode as 'mse' | undefined, alpha: l.num('alpha', { opt: true }), beta: l.num('beta', { opt: true }), delta: l.num('delta', { opt: true, positive: true }) } : undefined,
    accumulate: c.num('accumulate', { opt: true, int: true, positive: true }),
    maxGradNorm: c.num('maxGradNorm', { opt: true, positive: true }),
    seed: c.num('seed', { opt: true, int: true, min: 0 }),
    outDir: c.path('output', base, true),
    checkpointEvery: c.num('checkpointEvery', { opt: true, int: true, positive: true }),
    keepCheckpoints: c.num('keepCheckpoints', { opt: true, int: true, positive: true }),
    resume: parseResume(c),
    progress: logEvery ? { every: logEvery } : undefined,
    ...(rankGroups ? { rankGroups } : {}),
    bucketBytes: c.num('bucketBytes', { opt: true, int: true, min: 0 }),
  };
  // Checked now, before anything is loaded: the folder source's own options are its business.
  if (!dataConfig || typeof dataConfig !== 'object') throw new Error('config.data must be an object');

  return {
    options,
    async prepare(po: PrepareOptions = {}) {
      const teachers: Array<Teacher | null> = [];  // null: not loaded in this process
      let data: DataSource | null = null;
      const close = async () => {
        await data?.close();
        for (const t of teachers.splice(0)) await t?.close();
      };
      try {
        data = createDataSource(dataConfig, 'config.data', base);
        const g = po.distributed;
        const runs = partitionsRun(resolveRankGroups(options.rankGroups, data.partitions, g?.rank ?? 0, g?.size ?? 1), data.partitions.length);
        const used = teacherConfigs.map((t) => (t.partitions ?? data!.partitions.map((_, i) => i)).some((p) => runs.has(p)));
        // A student created here needs every teacher's heads (one adaptor per head): then every teacher is loaded
        // once, and those this process does not run are closed again below.
        const creating = initSpec !== null && !fs.existsSync(path.join(studentDir, 'config.json'));
        for (const [i, t] of teacherConfigs.entries()) teachers.push(used[i] || creating ? await t.load() : null);
        const step = (await readStudentStep(studentDir, initSpec)) ?? null;
        if (step !== null)
          for (const [i, p] of data.partitions.entries())
            for (const k of ['height', 'width'] as const)
              if (p[k] % step !== 0) throw new Error(`config.data.partitions[${i}].${k}: ${p[k]} is not a multiple of the student's patch size ${step}`);
        if (initSpec && creating) {
          const adaptors = new Map<string, StudentAdaptorSpec>();
          for (const t of teachers)
            for (const [name, d] of Object.entries(t!.heads))
              if (!adaptors.has(name)) adaptors.set(name, { name, summaryDim: d.summaryDim ?? d.featureDim, featureDim: d.featureDim, useSummary: d.summaryDim !== null });
          await createStudent(studentDir, { ...initSpec, adaptors: [...adaptors.values()] }, { seed: initSpec.seed });
        }
        for (const [i, t] of teachers.entries())
          if (t && !used[i]) {
            teachers[i] = null;
            await t.close();
          }
        const specs: TeacherSpec[] = teachers.map((teacher, i) => ({
          ...(teacher ? { teacher } : { load: teacherConfigs[i].load }),
          ...teacherConfigs[i].weights,
          heads: teacherConfigs[i].heads,
          partitions: teacherConfigs[i].partitions,
        }));
        return { teachers: specs, data, close };
      } catch (e) {
        await close();
        throw e;
      }
    },
  };
}

// config.resume: true / false, or { allowRankGroupChange } (distill's ResumeOptions).
function parseResume(c: Fields): DistillOptions['resume'] {
  const r = c.obj.resume;
  if (r === undefined || typeof r === 'boolean') return r;
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error(`${c.at('resume')} must be true, false or { allowRankGroupChange }, got ${JSON.stringify(r)}`);
  return { allowRankGroupChange: Fields.of(c.at('resume'), r, ['allowRankGroupChange']).bool('allowRankGroupChange') };
}

// The student's patch size, from its config.json or the init spec; null when neither says yet.
async function readStudentStep(dir: string, init: { patchSize?: number } | null): Promise<number | null> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) {
    if (init) return init.patchSize ?? 16;
    throw new Error(`config.student.dir: ${dir} holds no config.json (give config.student.init to create a student there)`);
  }
  const json = JSON.parse(await fs.promises.readFile(file, 'utf8')) as Json;
  const p = json.patch_size;
  return typeof p === 'number' ? p : null;
}

/** Reads and parses a config file. */
export async function readDistillConfig(file: string): Promise<DistillConfig> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the distill config (${(e as Error).message})`);
  }
  return parseDistillConfig(json, path.dirname(path.resolve(file)));
}
