// ImageFolderSource: training batches from a folder of images (or a list file), decoded and augmented on worker
// threads. All randomness is drawn here on the main thread, in a fixed order per step (partition, then per image
// 22 crop uniforms and one flip), so a batch depends only on the seed and the position, never on worker count or
// timing, and state() (epoch, position, PRNG words) is enough to resume bit-exactly.
import { availableParallelism } from 'node:os';
import { checkResizeMode, CROP_UNIFORMS, type CropBox, type DecodeTask, type ResizeMode } from './decode';
import { cumulativeWeights, pickPartition, validatePartitions } from './partitions';
import { DecodePool } from './pool';
import { isRngState, permutation, Rng, type RngState } from './rng';
import { fingerprint, readList, scanFolder, type ImageList } from './scan';
import type { DataSource, DataState, ImageBatch, Partition } from './types';

export interface AugmentOptions {
  /** Range of the crop's area as a fraction of the image (default [0.25, 1]). */
  scale?: [number, number];
  /** Range of the crop's width / height (default [3/4, 4/3]); sampled log-uniformly, as torchvision does. */
  ratio?: [number, number];
  /** Probability of a horizontal flip (default 0.5). */
  flip?: number;
}

interface CommonOptions {
  partitions: Partition[];
  /** Any safe integer (default 0). */
  seed?: number;
  /** Decode worker threads (default min(4, cores)). */
  workers?: number;
  /** Batches decoded ahead of the one being waited for (default 2). */
  prefetch?: number;
  /** Random resized crop + flip (default true), or false for a plain resize by `resize`. */
  augment?: boolean | AugmentOptions;
  /** How an image is fitted to the partition's size when `augment` is false (default 'stretch'). */
  resize?: ResizeMode;
}

export type ImageFolderOptions = CommonOptions & ({ dir: string; list?: undefined } | { list: string; dir?: undefined });

/** A batch plus what was done to each image (in source pixels), for inspection and debugging. */
export interface ImageFolderBatch extends ImageBatch {
  crops: (CropBox | null)[];
  flipped: boolean[];
}

const OPTION_KEYS = ['dir', 'list', 'partitions', 'seed', 'workers', 'prefetch', 'augment', 'resize'];
const AUGMENT_KEYS = ['scale', 'ratio', 'flip'];
const STATE_KIND = 'image-folder';

interface Augment {
  scale: [number, number];
  ratio: [number, number];
  flip: number;
}

/** Where the planner is: the next image is permutation(epoch)[position]; rng is the per-step stream. */
interface Cursor {
  epoch: number;
  position: number;
  rng: RngState;
}

interface Planned {
  /** The partition the caller asked for, or undefined for a weighted draw. */
  asked: number | undefined;
  before: Cursor;
  after: Cursor;
  token: object;
  promise: Promise<ImageFolderBatch>;
}

/**
 * The dataset is found (folder scanned or list read and checked) in the constructor, synchronously, so every
 * options error is thrown there; decoding starts on the first next().
 */
export class ImageFolderSource implements DataSource {
  readonly partitions: readonly Partition[];
  /** Image ids in dataset order (the order the epoch permutations index). */
  readonly ids: readonly string[];
  private readonly paths: readonly string[];
  private readonly cumulative: number[];
  private readonly augment: Augment | null;
  private readonly resize: ResizeMode;
  private readonly prefetch: number;
  private readonly pool: DecodePool;
  private readonly fingerprint: string;
  private seed: number;
  private planEpoch = 0;
  private planPosition = 0;
  private rng: Rng;
  private perms = new Map<number, Uint32Array>();
  private queue: Planned[] = [];
  private consumed: Cursor;
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private closed = false;

  constructor(options: ImageFolderOptions) {
    if (typeof options !== 'object' || options === null) throw new Error('ImageFolderSource: options must be an object');
    for (const k of Object.keys(options)) {
      if (!OPTION_KEYS.includes(k)) throw new Error(`ImageFolderSource: unknown option '${k}' (expected ${OPTION_KEYS.join(', ')})`);
    }
    const o = options as CommonOptions & { dir?: unknown; list?: unknown };
    if ((o.dir === undefined) === (o.list === undefined)) throw new Error('ImageFolderSource: give exactly one of dir or list');
    const partitions = validatePartitions(o.partitions, 'ImageFolderSource: partitions');
    this.partitions = partitions.map((p) => Object.freeze({ ...p }));
    this.cumulative = cumulativeWeights(partitions);
    this.seed = o.seed ?? 0;
    if (!Number.isSafeInteger(this.seed)) throw new Error(`ImageFolderSource: seed must be a safe integer, got ${JSON.stringify(o.seed)}`);
    const workers = o.workers ?? Math.min(4, availableParallelism());
    if (!Number.isInteger(workers) || workers < 1) throw new Error(`ImageFolderSource: workers must be a positive integer, got ${JSON.stringify(o.workers)}`);
    this.prefetch = o.prefetch ?? 2;
    if (!Number.isInteger(this.prefetch) || this.prefetch < 0) {
      throw new Error(`ImageFolderSource: prefetch must be an integer >= 0, got ${JSON.stringify(o.prefetch)}`);
    }
    this.augment = parseAugment(o.augment);
    this.resize = checkResizeMode(o.resize ?? 'stretch', 'ImageFolderSource: resize');

    const list: ImageList =
      o.dir !== undefined ? scanFolder(o.dir as string, 'ImageFolderSource: dir') : readList(o.list as string, 'ImageFolderSource: list');
    this.ids = Object.freeze(list.ids);
    this.paths = list.paths;
    this.fingerprint = fingerprint(list.ids);
    this.rng = new Rng(this.seed, 0);
    this.consumed = this.cursor();
    // Workers start last, so an options error never leaves threads behind.
    this.pool = new DecodePool(workers);
  }

  get workers(): number {
    return this.pool.size;
  }

  next(partition?: number): Promise<ImageFolderBatch> {
    if (partition !== undefined && !(Number.isInteger(partition) && partition >= 0 && partition < this.partitions.length))
      return Promise.reject(new Error(`ImageFolderSource: next(${JSON.stringify(partition)}): not a partition index (0..${this.partitions.length - 1})`));
    // Calls are served one after another, so overlapping next() calls still get consecutive batches in order.
    this.waiting++;
    const run = this.tail.then(() => this.take(partition)).finally(() => this.waiting--);
    this.tail = run.catch(() => undefined);
    return run;
  }

  state(): DataState {
    const c = this.consumed;
    return {
      kind: STATE_KIND,
      version: 1,
      seed: this.seed,
      epoch: c.epoch,
      position: c.position,
      rng: [...c.rng],
      images: this.ids.length,
      fingerprint: this.fingerprint,
    };
  }

  restore(state: DataState): void {
    if (this.closed) throw new Error('ImageFolderSource: restore() after close()');
    if (this.waiting > 0) throw new Error('ImageFolderSource: restore() while a next() is pending; await it first');
    const s = checkState(state);
    if (s.images !== this.ids.length || s.fingerprint !== this.fingerprint) {
      throw new Error(
        `ImageFolderSource: the state is for a different dataset (${s.images} images, fingerprint ${s.fingerprint}; ` +
          `this one has ${this.ids.length}, ${this.fingerprint})`,
      );
    }
    if (s.position >= this.ids.length) throw new Error(`ImageFolderSource: state.position ${s.position} is past the ${this.ids.length} images`);
    if (s.seed !== this.seed) this.perms.clear();
    this.seed = s.seed;
    this.rewind({ epoch: s.epoch, position: s.position, rng: s.rng });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    await this.pool.close();
  }

  private async take(asked: number | undefined): Promise<ImageFolderBatch> {
    if (this.closed) throw new Error('ImageFolderSource: next() after close()');
    // Prefetched batches were planned for a guess of the coming requests: the weighted draw again, or after a
    // request of partition p the partition p + 1 (the rank groups' order, each partition once). A wrong guess is
    // planned anew from where it started, so the batches depend only on the requests, never on the guesses.
    if (this.queue.length > 0 && this.queue[0].asked !== asked) this.rewind(this.queue[0].before);
    while (this.queue.length < this.prefetch + 1) {
      const last = this.queue.length > 0 ? this.queue[this.queue.length - 1].asked : null;
      this.queue.push(this.plan(last === null ? asked : last === undefined ? undefined : (last + 1) % this.partitions.length));
    }
    const entry = this.queue.shift()!;
    try {
      const batch = await entry.promise;
      this.consumed = entry.after;
      return batch;
    } catch (e) {
      if (this.closed) throw e;
      // Undo the planning past the failed batch, so state() stays before it and a retry fails the same way.
      this.rewind(entry.before);
      throw e;
    }
  }

  private rewind(c: Cursor): void {
    for (const q of this.queue) this.pool.cancel(q.token);
    this.queue = [];
    this.planEpoch = c.epoch;
    this.planPosition = c.position;
    this.rng = Rng.fromState(c.rng);
    this.consumed = c;
  }

  private cursor(): Cursor {
    return { epoch: this.planEpoch, position: this.planPosition, rng: this.rng.state() };
  }

  private permutationOf(epoch: number): Uint32Array {
    let p = this.perms.get(epoch);
    if (!p) {
      // A batch can span the end of an epoch, so keep this epoch's and the next one's, nothing older.
      for (const e of this.perms.keys()) if (e < epoch - 1 || e > epoch + 1) this.perms.delete(e);
      p = permutation(this.ids.length, new Rng(this.seed, epoch + 1));
      this.perms.set(epoch, p);
    }
    return p;
  }

  private plan(asked: number | undefined): Planned {
    const before = this.cursor();
    // The draw is made either way, so that a request costs the random stream what a draw does.
    const drawn = pickPartition(this.cumulative, this.rng.uniform());
    const pi = asked ?? drawn;
    const part = this.partitions[pi];
    const token = {};
    const tasks: DecodeTask[] = [];
    const ids: string[] = [];
    for (let k = 0; k < part.batch; k++) {
      const index = this.permutationOf(this.planEpoch)[this.planPosition];
      if (++this.planPosition === this.ids.length) {
        this.planEpoch++;
        this.planPosition = 0;
      }
      let crop: DecodeTask['crop'] = null;
      let flip = false;
      if (this.augment) {
        const u = new Float64Array(CROP_UNIFORMS);
        for (let i = 0; i < CROP_UNIFORMS; i++) u[i] = this.rng.uniform();
        flip = this.rng.uniform() < this.augment.flip;
        crop = { u, scale: this.augment.scale, ratio: this.augment.ratio };
      }
      tasks.push({ path: this.paths[index], height: part.height, width: part.width, crop, resize: this.resize, flip });
      ids.push(this.ids[index]);
    }
    const after = this.cursor();
    const promise = Promise.all(tasks.map((t) => this.pool.run(t, token))).then((rs): ImageFolderBatch => {
      const per = 3 * part.height * part.width;
      let images = rs[0].pixels;
      if (rs.length > 1) {
        images = new Float32Array(rs.length * per);
        rs.forEach((r, i) => images.set(r.pixels, i * per));
      }
      return {
        images,
        batch: part.batch,
        height: part.height,
        width: part.width,
        ids,
        partition: pi,
        crops: rs.map((r) => r.box),
        flipped: tasks.map((t) => t.flip),
      };
    });
    // Prefetched batches may fail (or be cancelled) before anyone awaits them; take() reports the failure.
    promise.catch(() => undefined);
    return { asked, before, after, token, promise };
  }
}

function parseAugment(v: unknown): Augment | null {
  if (v === false) return null;
  const a: Augment = { scale: [0.25, 1], ratio: [3 / 4, 4 / 3], flip: 0.5 };
  if (v === undefined || v === true) return a;
  if (typeof v !== 'object' || v === null) throw new Error(`ImageFolderSource: augment must be a boolean or { scale, ratio, flip }`);
  for (const k of Object.keys(v)) {
    if (!AUGMENT_KEYS.includes(k)) throw new Error(`ImageFolderSource: augment: unknown option '${k}' (expected ${AUGMENT_KEYS.join(', ')})`);
  }
  const o = v as AugmentOptions;
  if (o.scale !== undefined) a.scale = range(o.scale, 'scale', (lo, hi) => lo > 0 && hi <= 1, '0 < lo <= hi <= 1');
  if (o.ratio !== undefined) a.ratio = range(o.ratio, 'ratio', (lo) => lo > 0, '0 < lo <= hi');
  if (o.flip !== undefined) {
    if (typeof o.flip !== 'number' || !(o.flip >= 0 && o.flip <= 1)) {
      throw new Error(`ImageFolderSource: augment.flip must be a probability in [0, 1], got ${JSON.stringify(o.flip)}`);
    }
    a.flip = o.flip;
  }
  return a;
}

function range(v: unknown, name: string, ok: (lo: number, hi: number) => boolean, rule: string): [number, number] {
  const bad = () => new Error(`ImageFolderSource: augment.${name} must be [lo, hi] with ${rule}, got ${JSON.stringify(v)}`);
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad();
  const [lo, hi] = v as [number, number];
  if (!(lo <= hi) || !ok(lo, hi)) throw bad();
  return [lo, hi];
}

function checkState(state: DataState): { seed: number; epoch: number; position: number; rng: RngState; images: number; fingerprint: string } {
  if (typeof state !== 'object' || state === null) throw new Error('ImageFolderSource: state must be an object from state()');
  if (state.kind !== STATE_KIND || state.version !== 1) {
    throw new Error(`ImageFolderSource: not an image-folder state (kind ${JSON.stringify(state.kind)}, version ${JSON.stringify(state.version)})`);
  }
  for (const k of ['seed', 'epoch', 'position', 'images'] as const) {
    const v = state[k];
    if (!Number.isSafeInteger(v) || (k !== 'seed' && (v as number) < 0)) throw new Error(`ImageFolderSource: state.${k} is invalid: ${JSON.stringify(v)}`);
  }
  if (!isRngState(state.rng)) throw new Error(`ImageFolderSource: state.rng must be four 32-bit words, not all zero: ${JSON.stringify(state.rng)}`);
  if (typeof state.fingerprint !== 'string') throw new Error('ImageFolderSource: state.fingerprint is missing');
  return state as ReturnType<typeof checkState>;
}
