// Teacher outputs computed once and reused: safetensors shards keyed by image id (`<id>.<head>.summary`,
// `<id>.<head>.features`; each shard's metadata gives every id's grids), listed by an index.json that also holds
// the data source's position after the last complete shard, so an interrupted writer resumes where it stopped.
import * as fs from 'fs';
import * as path from 'path';

import type { DataSource } from '../data/types';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors';
import type { SafetensorsWriteEntry } from '../io/safetensors';
import type { Device } from '../native';
import { tensor, Tensor } from '../tensor';
import { teacherImages } from './input';
import { disposeTargets, Teacher, TeacherBatch, TeacherTargets } from './types';

const FORMAT = 'am-radio-teacher-shards/1';

type HeadDims = Record<string, { summaryDim: number | null; featureDim: number }>;

interface ShardIndex {
  format: string;
  teacher: string;
  heads: HeadDims;
  shards: Array<{ file: string; ids: string[] }>;
  /** The data source's state after the last listed shard. */
  data: Record<string, unknown> | null;
  images: number;
}

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.writeFile(`${JSON.stringify(value)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
}

async function readIndex(dir: string): Promise<ShardIndex | null> {
  const file = path.join(dir, 'index.json');
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${file}: cannot read the shard index (${(e as Error).message})`);
  }
  let index: ShardIndex;
  try {
    index = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: the shard index is not JSON (${(e as Error).message})`);
  }
  if (!index || index.format !== FORMAT || !Array.isArray(index.shards) || typeof index.heads !== 'object')
    throw new Error(`${file}: not an am-radio teacher shard index (format ${JSON.stringify(index?.format)}, expected ${FORMAT})`);
  return index;
}

export interface WriteFeatureShardsOptions {
  teacher: Teacher;
  data: DataSource;
  dir: string;
  /** Distinct images to write (ids already written are skipped, so a cycling source ends). */
  images: number;
  /** Images per shard file; default 256. */
  shardSize?: number;
  /** Where the images are uploaded; default cpu. */
  device?: Device;
  /** Called after every batch with the images written so far. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Runs the teacher over the data source and writes its targets as shards under dir. Resumable: an index.json
 * from an earlier, interrupted run of the same teacher is continued (its data state restored), never restarted.
 * Returns the number of images in the shards.
 */
export async function writeFeatureShards(o: WriteFeatureShardsOptions): Promise<number> {
  const shardSize = o.shardSize ?? 256;
  if (!Number.isInteger(o.images) || o.images <= 0) throw new Error(`writeFeatureShards: images must be a positive integer, got ${o.images}`);
  if (!Number.isInteger(shardSize) || shardSize <= 0) throw new Error(`writeFeatureShards: shardSize must be a positive integer, got ${o.shardSize}`);
  await fs.promises.mkdir(o.dir, { recursive: true });
  let index = await readIndex(o.dir);
  if (index) {
    if (index.teacher !== o.teacher.name || JSON.stringify(index.heads) !== JSON.stringify(o.teacher.heads))
      throw new Error(`${path.join(o.dir, 'index.json')}: holds shards of teacher ${JSON.stringify(index.teacher)} with other heads; use another folder`);
    if (index.data) o.data.restore(index.data);
  } else index = { format: FORMAT, teacher: o.teacher.name, heads: { ...o.teacher.heads }, shards: [], data: null, images: 0 };
  const seen = new Set(index.shards.flatMap((s) => s.ids));
  let pending: Record<string, SafetensorsWriteEntry> = {};
  let grids: Record<string, Record<string, [number, number]>> = {};
  let pendingIds: string[] = [];
  const flush = async () => {
    const file = `shard-${String(index!.shards.length).padStart(5, '0')}.safetensors`;
    await writeSafetensors(path.join(o.dir, file), pending, { format: FORMAT, teacher: o.teacher.name, grids: JSON.stringify(grids) });
    index!.shards.push({ file, ids: pendingIds });
    index!.images += pendingIds.length;
    index!.data = o.data.state();
    await writeJsonAtomic(path.join(o.dir, 'index.json'), index);
    pending = {};
    grids = {};
    pendingIds = [];
  };
  while (seen.size < o.images) {
    const batch = await o.data.next();
    const images = tensor(batch.images, [batch.batch, 3, batch.height, batch.width], { device: o.device ?? 'cpu' });
    let targets: TeacherTargets | null = null;
    try {
      const input = teacherImages(images, o.teacher);
      try {
        targets = await o.teacher.forward(input, batch);
      } finally {
        if (input !== images) input.dispose();
      }
      const values = new Map<Tensor, Float32Array>();
      for (const t of Object.values(targets)) for (const x of [t.summary, t.features]) if (x) values.set(x, await x.toArray());
      for (const [b, id] of batch.ids.entries()) {
        if (seen.has(id) || seen.size >= o.images) continue;
        seen.add(id);
        pendingIds.push(id);
        grids[id] = {};
        for (const [head, t] of Object.entries(targets)) {
          grids[id][head] = t.grid;
          for (const [part, x] of [['summary', t.summary], ['features', t.features]] as const) {
            if (!x) continue;
            const per = x.numel / x.shape[0];
            pending[`${id}.${head}.${part}`] = { dtype: 'F32', shape: x.shape.slice(1), data: values.get(x)!.subarray(b * per, (b + 1) * per) };
          }
        }
      }
    } finally {
      images.dispose();
      if (targets) disposeTargets(targets);
    }
    if (pendingIds.length >= shardSize || (seen.size >= o.images && pendingIds.length > 0)) await flush();
    o.onProgress?.(seen.size, o.images);
  }
  return index.images;
}

/** A teacher that reads targets from shards written by writeFeatureShards. */
export class ShardTeacher implements Teacher {
  readonly inputSize = null;
  readonly needsImages = false;
  private readonly open = new Map<string, Promise<SafetensorsFile>>();
  private readonly grids = new Map<SafetensorsFile, Record<string, Record<string, [number, number]>>>();

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly heads: HeadDims,
    private readonly where: Map<string, string>,
  ) {}

  static async open(dir: string, opts: { name?: string } = {}): Promise<ShardTeacher> {
    const index = await readIndex(dir);
    if (!index) throw new Error(`${dir}: no index.json (not a teacher shard folder, or no shard was finished yet)`);
    const where = new Map<string, string>();
    for (const s of index.shards) for (const id of s.ids) if (!where.has(id)) where.set(id, s.file);
    return new ShardTeacher(opts.name ?? index.teacher, dir, index.heads, where);
  }

  get images(): number {
    return this.where.size;
  }

  private file(name: string): Promise<SafetensorsFile> {
    let f = this.open.get(name);
    if (!f) {
      f = SafetensorsFile.open(path.join(this.dir, name));
      this.open.set(name, f);
    }
    return f;
  }

  private gridsOf(f: SafetensorsFile): Record<string, Record<string, [number, number]>> {
    let g = this.grids.get(f);
    if (!g) {
      try {
        g = JSON.parse(f.metadata.grids ?? '{}') as Record<string, Record<string, [number, number]>>;
      } catch (e) {
        throw new Error(`${f.file}: the shard metadata 'grids' is not JSON (${(e as Error).message})`);
      }
      this.grids.set(f, g);
    }
    return g;
  }

  async forward(images: Tensor, batch: TeacherBatch): Promise<TeacherTargets> {
    const B = batch.ids.length;
    if (images.shape[0] !== B) throw new Error(`ShardTeacher ${this.name}: ${B} ids for a batch of ${images.shape[0]} images`);
    const files = await Promise.all(
      batch.ids.map((id) => {
        const f = this.where.get(id);
        if (!f) throw new Error(`ShardTeacher ${this.name} (${this.dir}): no targets for image ${JSON.stringify(id)}`);
        return this.file(f);
      }),
    );
    const out: TeacherTargets = {};
    try {
      for (const [head, dims] of Object.entries(this.heads)) {
        let grid: [number, number] | null = null;
        for (const [b, id] of batch.ids.entries()) {
          const g = this.gridsOf(files[b])[id]?.[head];
          if (!g) throw new Error(`${files[b].file}: no grid for ${id}.${head} in the shard metadata`);
          if (grid && (grid[0] !== g[0] || grid[1] !== g[1]))
            throw new Error(`ShardTeacher ${this.name}: the images of one batch have ${head} targets on different grids ([${grid}] and [${g}])`);
          grid = g;
        }
        const stack = async (part: 'summary' | 'features', shape: number[]) => {
          const per = shape.reduce((a, c) => a * c, 1);
          const data = new Float32Array(B * per);
          for (const [b, id] of batch.ids.entries()) data.set((await files[b].readFloat(`${id}.${head}.${part}`, shape)).data, b * per);
          return tensor(data, [B, ...shape], { device: images.device });
        };
        const features = await stack('features', [grid![0] * grid![1], dims.featureDim]);
        out[head] = { features, grid: grid! };
        if (dims.summaryDim !== null) out[head].summary = await stack('summary', [dims.summaryDim]);
      }
      return out;
    } catch (e) {
      disposeTargets(out);
      throw e;
    }
  }

  async close(): Promise<void> {
    const files = [...this.open.values()];
    this.open.clear();
    await Promise.all(files.map(async (f) => (await f).close()));
  }
}
