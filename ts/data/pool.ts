// A pool of worker threads that decode and augment images with sharp. Workers only execute: every random choice
// arrives in the task, so which worker runs a task, and when, cannot change its result.
import { Worker } from 'node:worker_threads';
import { DECODE_SOURCE, type CropBox, type DecodeTask } from './decode';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const sharp = require(workerData.sharpPath);
${DECODE_SOURCE}
parentPort.on('message', (t) => {
  decodeImage(sharp, t).then(
    (r) => parentPort.postMessage({ id: t.id, pixels: r.pixels, box: r.box }, [r.pixels.buffer]),
    (e) => parentPort.postMessage({ id: t.id, error: e && e.message ? e.message : String(e) }),
  );
});
`;

export interface PoolResult {
  pixels: Float32Array;
  box: CropBox | null;
}

interface Job {
  id: number;
  task: DecodeTask;
  /** Jobs of one batch share a token, so a batch that is no longer wanted can be dropped from the queue. */
  token: object;
  resolve(r: PoolResult): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
}

export class DecodePool {
  private readonly slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 0;
  private failure: Error | null = null;
  private closed = false;

  constructor(count: number) {
    // Resolved here, from this package, so the eval'd worker (whose require starts from the cwd) finds the same sharp.
    const sharpPath = require.resolve('sharp');
    for (let i = 0; i < count; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sharpPath } });
      const slot: Slot = { worker, job: null };
      // Idle workers must not keep the process alive: a program that forgets close() still exits.
      worker.unref();
      worker.on('message', (m: { id: number; pixels?: Float32Array; box?: CropBox | null; error?: string }) =>
        this.onMessage(slot, m),
      );
      worker.on('error', (e) => this.fail(new Error(`decode worker crashed: ${e.message}`)));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`decode worker exited unexpectedly (code ${code})`));
      });
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  run(task: DecodeTask, token: object): Promise<PoolResult> {
    if (this.closed) return Promise.reject(new Error('the image source is closed'));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<PoolResult>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, task, token, resolve, reject });
      this.dispatch();
    });
  }

  /** Drops the queued jobs of `token` (their promises never settle); jobs already running finish and are ignored. */
  cancel(token: object): void {
    this.queue = this.queue.filter((j) => j.token !== token);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error('the image source is closed');
    for (const s of this.slots) {
      s.job?.reject(err);
      s.job = null;
      // Until it has exited, a worker keeps the process alive: an idle (unref'd) one would otherwise let a caller
      // that awaits close() with nothing else pending see the process end before close() settles.
      s.worker.ref();
    }
    for (const j of this.queue) j.reject(err);
    this.queue = [];
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage({ ...job.task, id: job.id });
    }
  }

  private onMessage(slot: Slot, m: { id: number; pixels?: Float32Array; box?: CropBox | null; error?: string }): void {
    const job = slot.job;
    // After close() a late result is dropped without unref'ing the worker, which close() holds until it exits.
    if (this.closed || !job || job.id !== m.id) return;
    slot.job = null;
    slot.worker.unref();
    if (m.error !== undefined) job.reject(new Error(`cannot decode ${job.task.path}: ${m.error}`));
    else job.resolve({ pixels: m.pixels!, box: m.box ?? null });
    this.dispatch();
  }

  private fail(e: Error): void {
    if (this.failure || this.closed) return;
    this.failure = e;
    for (const s of this.slots) {
      s.job?.reject(e);
      s.job = null;
    }
    for (const j of this.queue) j.reject(e);
    this.queue = [];
    // The survivors may be mid-job (and so ref'd); stop them, or a finished program would wait for them.
    for (const s of this.slots) void s.worker.terminate();
  }
}
