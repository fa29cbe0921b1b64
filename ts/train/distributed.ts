// The trainer's process group (issue #19): which rank this process is, how many there are, and the collectives
// data-parallel training needs. A world of one (no launcher) is a trivial group that needs no library. A world
// started by an MPI launcher (mpirun/mpiexec, or srun with PMIx) uses MPI itself, opened at run time by the addon
// (native/dist): rank and size come from MPI, the launcher's variables are only cross-checked. A world started
// torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, no MPI launcher) meets over a TCP rendezvous
// (./rendezvous) and has no MPI: it is for cuda training.
//
// cpu tensors go through MPI, queued on the cpu backend; cuda tensors go through NCCL (native/dist/nccl), queued
// on the cuda backend's stream. Either way a collective orders with the ops around it like any op. The NCCL
// communicator is made by `await group.ready()` when initDistributed was asked for device 'cuda' (the default of a
// torchrun-style start): it needs every rank at once, and the id exchange over the rendezvous is asynchronous, so
// it cannot be made on the fly by the first (synchronous) cuda collective.
import { backends } from '../backends';
import { native } from '../native';
import type { NativeBuffer } from '../native';
import { dtypeSize, emptyTensor, Tensor } from '../tensor';
import { agreeOnLayout, checkGatherInput } from './gather';
import { Rendezvous } from './rendezvous';
import { mpiFinalized, mpiOpened } from './unclosed';

export type ReduceOp = 'sum' | 'mean';

export interface ProcessGroup {
  readonly rank: number;
  readonly size: number;
  /**
   * The rank among the processes of this machine; 0 without a launcher. It does not pick a GPU (the cuda backend
   * runs on the first one a process sees: set CUDA_VISIBLE_DEVICES per rank); ready() refuses LOCAL_RANK > 0 with
   * several GPUs visible.
   */
  readonly localRank: number;
  /**
   * 'mpi' (an MPI launcher: cpu tensors by MPI, cuda tensors by NCCL), 'nccl' (a torchrun-style start: cuda
   * tensors only, by NCCL), or 'none' for the trivial group of one.
   */
  readonly backend: 'mpi' | 'nccl' | 'none';
  /** The device whose tensors this group was set up for: 'cuda' when it makes an NCCL communicator in ready(). */
  readonly device: 'cpu' | 'cuda';
  /**
   * Resolves once the group is complete: the rendezvous connected (torchrun-style) and, for device 'cuda', the
   * NCCL communicator made on every rank. Every rank must call it; idempotent. barrier, allGatherScalars and close
   * wait for it themselves; a cuda collective before it is an Error.
   */
  ready(): Promise<void>;
  /** In place over every rank, queued: the sum, or the mean. f32 on cpu (MPI); f32 or bf16 on cuda (NCCL). Returns the tensor. */
  allReduce(t: Tensor, op?: ReduceOp): Tensor;
  /** In place: root's values into every rank's tensor (cpu or cuda, any dtype), queued. Returns the tensor. */
  broadcast(t: Tensor, root?: number): Tensor;
  /**
   * Every rank's tensor, by rank, in a new tensor of shape [size, ...t.shape], with t's dtype (any: the bytes are
   * moved, nothing is summed) and device: cpu tensors by MPI, cuda tensors by NCCL. The ranks first agree on shape
   * and dtype (through allGatherScalars), so a mismatch is the same Error on every rank, naming each rank's; the
   * data then moves queued like the other collectives. Not recorded for autograd. Every rank must call it, in the
   * same order as its other collectives.
   */
  allGather(t: Tensor): Promise<Tensor>;
  /** Resolves once every rank has reached it (and the work queued before it on the group's device is done). */
  barrier(): Promise<void>;
  /** Every rank's values, by rank ([rank][i]); every rank must pass as many (an Error otherwise). NaN passes. */
  allGatherScalars(values: readonly number[]): Promise<number[][]>;
  /**
   * Ends the group: a barrier, then ncclCommDestroy (when there is a communicator) and MPI_Finalize, or the
   * rendezvous's sockets closed. Every rank must call it; a rank that ends without it fails the job, which is what
   * a crashed rank must look like: an MPI rank prints a line naming itself and ends the job by MPI_Abort with its
   * exit code (1 for 0; ./unclosed), under any launcher; the rendezvous's peers fail naming it.
   */
  close(): Promise<void>;
  /**
   * Ends every rank of the job now with this exit code (MPI_Abort): for a rank that knows the run cannot go on
   * and must not leave the others waiting for its collectives. The trivial and the torchrun-style group exit this
   * process (the latter's peers then fail naming it).
   */
  abort(code?: number): never;
}

function checkCode(code: number): number {
  if (!Number.isInteger(code) || code < 1 || code > 255) throw new Error(`abort: code must be an integer in [1, 255], got ${JSON.stringify(code)}`);
  return code;
}

export interface InitDistributedOptions {
  /**
   * A collective that waits longer than this for the other ranks fails with an Error (a rank died and no launcher
   * ended this process); default 300 s. mpirun itself ends the job when a rank dies, usually within seconds.
   */
  timeoutSeconds?: number;
  /** The environment to read the launcher's variables from; default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * 'cuda': ready() makes the NCCL communicator, so cuda tensors can be reduced (needs libnccl.so.2 and a GPU per
   * rank). Default 'cuda' for a torchrun-style start (it has no other way to reduce tensors), 'cpu' otherwise.
   */
  device?: 'cpu' | 'cuda';
}

/** Variables by which a launcher of MPI programs announces itself: Open MPI's mpirun, MPICH's hydra, PMIx (srun). */
const MPI_LAUNCHER_VARS = ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_RANK'];

/** The launcher variable that says an MPI launcher started this process, or undefined when none did. */
export function mpiLauncherVariable(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return MPI_LAUNCHER_VARS.find((v) => env[v] !== undefined && env[v] !== '');
}

function intVar(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`initDistributed: ${name}=${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

function checkTensor(op: string, t: Tensor, f32: boolean): NativeBuffer {
  if (!(t instanceof Tensor)) throw new Error(`${op}: expected a Tensor`);
  if (t.device !== 'cpu' && t.device !== 'cuda') throw new Error(`${op}: the tensor is on ${t.device}; the collectives take cpu tensors (MPI) or cuda tensors (NCCL)`);
  // bf16 is reduced by NCCL (in bf16, as NCCL does), not by the MPI path, which has no bf16 sum.
  if (f32 && t.dtype !== 'f32' && !(t.device === 'cuda' && t.dtype === 'bf16'))
    throw new Error(`${op}: the tensor is ${t.dtype}; allReduce takes f32 tensors${t.device === 'cuda' ? ' or bf16' : ''}`);
  return t.native(op);
}

function checkOp(op: ReduceOp) {
  if (op !== 'sum' && op !== 'mean') throw new Error(`allReduce: op must be 'sum' or 'mean', got ${JSON.stringify(op)}`);
}

function checkRoot(root: number, size: number) {
  if (!Number.isInteger(root) || root < 0 || root >= size) throw new Error(`broadcast: root ${JSON.stringify(root)} is not a rank of the group (size ${size})`);
}

// The NCCL halves of the collectives, for a cuda tensor already checked.
function ncclAllReduce(t: Tensor, buffer: NativeBuffer, op: ReduceOp): Tensor {
  native.ncclAllReduce({ buffer, n: t.numel, dtype: t.dtype as 'f32' | 'bf16', op });
  return t;
}
function ncclBroadcast(t: Tensor, buffer: NativeBuffer, root: number): Tensor {
  native.ncclBroadcast({ buffer, bytes: t.numel * dtypeSize(t.dtype), root });
  return t;
}

/**
 * The gather itself, once the ranks agree on t's layout: into a new [size, ...shape] tensor by `gather` (MPI's or
 * NCCL's byte all-gather). t's buffer is taken again here, after the agreement's awaits, so that a tensor disposed
 * meanwhile is an Error rather than a read of freed memory.
 */
function gatherInto(size: number, t: Tensor, gather: (args: { input: NativeBuffer; output: NativeBuffer; bytes: number }) => void): Tensor {
  const input = t.native('allGather');
  const out = emptyTensor([size, ...t.shape], t.dtype, t.device);
  try {
    gather({ input, output: out.native('allGather'), bytes: t.numel * dtypeSize(t.dtype) });
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/**
 * Refuses device 'cuda' where the cuda backend cannot run, before any library or peer is waited for; and a rank
 * that would share a GPU: the backend runs on the first visible GPU, so with several visible, every rank of a
 * machine past its first (LOCAL_RANK > 0) would land on rank 0's.
 */
function checkCudaBackend(who: string, localRank: number) {
  const cuda = backends().find((b) => b.name === 'cuda');
  if (!cuda?.available) throw new Error(`${who}: device 'cuda' needs the cuda backend, which is not available here: ${cuda?.reason ?? 'not compiled'}`);
  const gpus = native.cudaDeviceCount();
  if (localRank > 0 && gpus > 1)
    throw new Error(
      `${who}: LOCAL_RANK=${localRank} and this process sees ${gpus} GPUs; the cuda backend runs on the first one it sees, ` +
        'so this rank would share GPU 0 with local rank 0: start each rank with CUDA_VISIBLE_DEVICES set to its own GPU (e.g. its LOCAL_RANK)',
    );
}

/** An MPI broadcast of rank 0's id (of a cpu buffer), queued like the other MPI collectives. */
export async function shareByMpi(id: Uint8Array): Promise<Uint8Array> {
  const buf = native.alloc('cpu', 128);
  try {
    native.upload(buf, new Int32Array(id.buffer, id.byteOffset, 32), 'i32');
    native.distBroadcast({ buffer: buf, bytes: 128, root: 0 });
    return new Uint8Array(await native.readBytes(buf, 128));
  } finally {
    buf.release();
  }
}

/**
 * Makes this process's NCCL communicator: rank 0 draws the id, `share` hands it to every rank (shareByMpi, or the
 * rendezvous's broadcast), then every rank joins, bounded by the timeout since ncclCommInitRank waits for every
 * rank. The groups check the cuda backend first (checkCudaBackend); exported apart from them so that the test
 * against a stand-in library (test/train/nccl.test.ts) drives both ways of sharing the id on a machine without a GPU.
 */
export async function joinNccl(rank: number, size: number, timeoutSeconds: number, share: (id: Uint8Array) => Promise<Uint8Array>): Promise<void> {
  // Opened on every rank before the exchange, so a rank without NCCL fails at once with the library's Error
  // rather than leaving the others waiting in ncclCommInitRank.
  native.ncclLibrary();
  const id = await share(rank === 0 ? native.ncclUniqueId() : new Uint8Array(128));
  if (id.length !== 128) throw new Error(`initDistributed: rank 0's NCCL id has ${id.length} bytes, 128 expected`);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`initDistributed: ncclCommInitRank did not complete within ${timeoutSeconds} s (a rank did not join, or NCCL cannot connect the ranks; NCCL_DEBUG=WARN says why)`)), timeoutSeconds * 1000);
  });
  try {
    await Promise.race([native.ncclInit({ id, rank, size }), late]);
  } finally {
    clearTimeout(timer);
  }
}

function checkScalars(op: string, values: readonly number[]): Float64Array {
  if (!Array.isArray(values)) throw new Error(`${op}: values must be an array of numbers`);
  for (const [i, v] of values.entries()) if (typeof v !== 'number') throw new Error(`${op}: values[${i}] is not a number (${JSON.stringify(v)})`);
  return Float64Array.from(values);
}

class TrivialGroup implements ProcessGroup {
  readonly rank = 0;
  readonly size = 1;
  readonly localRank = 0;
  readonly backend = 'none' as const;
  private closed = false;
  constructor(readonly device: 'cpu' | 'cuda') {}
  private live(op: string) {
    if (this.closed) throw new Error(`${op}: the process group was closed`);
  }
  // A world of one needs no communicator: every collective is the identity, on cuda as on cpu.
  async ready(): Promise<void> {
    this.live('ready');
    if (this.device === 'cuda') checkCudaBackend('initDistributed', 0);
  }
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    this.live('allReduce');
    checkOp(op);
    checkTensor('allReduce', t, true);
    return t;
  }
  broadcast(t: Tensor, root = 0): Tensor {
    this.live('broadcast');
    checkRoot(root, 1);
    checkTensor('broadcast', t, false);
    return t;
  }
  async allGather(t: Tensor): Promise<Tensor> {
    this.live('allGather');
    // A copy, as from a real gather: writing into the result must not change the input.
    return new Tensor(native.copyTo(checkGatherInput(t), t.device), [1, ...t.shape], t.dtype, t.device);
  }
  async barrier(): Promise<void> {
    this.live('barrier');
  }
  async allGatherScalars(values: readonly number[]): Promise<number[][]> {
    this.live('allGatherScalars');
    return [Array.from(checkScalars('allGatherScalars', values))];
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  abort(code = 1): never {
    process.exit(checkCode(code));
  }
}

class MpiGroup implements ProcessGroup {
  readonly backend = 'mpi' as const;
  private closed = false;
  private readying: Promise<void> | null = null;
  private nccl = false;
  constructor(readonly rank: number, readonly size: number, readonly localRank: number, readonly device: 'cpu' | 'cuda', private readonly timeoutSeconds: number) {
    mpiOpened(this);
  }

  private live(op: string) {
    if (this.closed) throw new Error(`${op}: the process group was closed`);
  }

  ready(): Promise<void> {
    this.live('ready');
    this.readying ??= (async () => {
      if (this.device !== 'cuda') return;
      checkCudaBackend('initDistributed', this.localRank);
      // The id's MPI broadcast is queued when ready() is called, so every rank issues its MPI collectives in the
      // same order as long as every rank calls ready() at the same point.
      await joinNccl(this.rank, this.size, this.timeoutSeconds, shareByMpi);
      this.nccl = true;
    })();
    return this.readying;
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    this.live('allReduce');
    checkOp(op);
    const buffer = checkTensor('allReduce', t, true);
    if (t.device === 'cuda') return ncclAllReduce(t, buffer, op);
    native.distAllReduce({ buffer, n: t.numel, op });
    return t;
  }

  broadcast(t: Tensor, root = 0): Tensor {
    this.live('broadcast');
    checkRoot(root, this.size);
    const buffer = checkTensor('broadcast', t, false);
    if (t.device === 'cuda') return ncclBroadcast(t, buffer, root);
    native.distBroadcast({ buffer, bytes: t.numel * dtypeSize(t.dtype), root });
    return t;
  }

  async allGather(t: Tensor): Promise<Tensor> {
    this.live('allGather');
    checkGatherInput(t);
    await agreeOnLayout(t, (v) => this.allGatherScalars(v));
    return gatherInto(this.size, t, t.device === 'cuda' ? native.ncclAllGather : native.distAllGather);
  }

  async barrier(): Promise<void> {
    this.live('barrier');
    await this.ready();
    // The cuda work queued before the barrier (NCCL's collectives among it) is done before this rank enters it.
    if (this.nccl) await native.synchronize('cuda');
    native.distBarrier();
    await native.synchronize('cpu');
  }

  private async gatherBytes(bytes: Uint8Array): Promise<Uint8Array> {
    // Raw bytes through i32 words: the upload keeps i32 bits unchanged, and every caller sends a multiple of 8.
    const input = native.alloc('cpu', Math.max(bytes.length, 4));
    const output = native.alloc('cpu', Math.max(bytes.length * this.size, 4));
    try {
      if (bytes.length) native.upload(input, new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), 'i32');
      native.distAllGather({ input, output, bytes: bytes.length });
      return new Uint8Array(await native.readBytes(output, bytes.length * this.size));
    } finally {
      input.release();
      output.release();
    }
  }

  async allGatherScalars(values: readonly number[]): Promise<number[][]> {
    const op = 'allGatherScalars';
    this.live(op);
    const mine = checkScalars(op, values);
    await this.ready();
    // The counts first: MPI's allgather needs the same count everywhere, and a mismatch must be an Error on every
    // rank rather than a truncated message that aborts the job.
    const counts = Array.from(new Float64Array((await this.gatherBytes(new Uint8Array(Float64Array.of(mine.length).buffer))).buffer));
    if (counts.some((c) => c !== mine.length)) throw new Error(`${op}: the ranks passed different numbers of values (${counts.map((c, r) => `rank ${r}: ${c}`).join(', ')})`);
    const all = new Float64Array((await this.gatherBytes(new Uint8Array(mine.buffer))).buffer);
    return Array.from({ length: this.size }, (_, r) => Array.from(all.subarray(r * mine.length, (r + 1) * mine.length)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.barrier();
    this.closed = true;
    if (this.nccl) native.ncclDestroy();
    // Before MPI_Finalize, which marks MPI finalised even when it throws: MPI_Abort may not follow it.
    mpiFinalized();
    native.distFinalize();
  }

  abort(code = 1): never {
    return native.distAbort({ code: checkCode(code) });
  }
}

/**
 * A torchrun-style group (backend 'nccl'): the ranks meet over the TCP rendezvous, which also carries barrier,
 * allGatherScalars and close; cuda tensors are reduced by NCCL. There is no MPI, so cpu tensors are refused.
 */
class RendezvousGroup implements ProcessGroup {
  readonly backend = 'nccl' as const;
  private closed = false;
  private readying: Promise<void> | null = null;
  private rv: Rendezvous | null = null;
  private nccl = false;
  constructor(
    readonly rank: number,
    readonly size: number,
    readonly localRank: number,
    readonly device: 'cpu' | 'cuda',
    private readonly addr: string,
    private readonly port: number,
    private readonly timeoutSeconds: number,
  ) {}

  private live(op: string) {
    if (this.closed) throw new Error(`${op}: the process group was closed`);
  }

  /** The rendezvous (and NCCL's communicator); a failure here should end the process: see README. */
  ready(): Promise<void> {
    this.live('ready');
    this.readying ??= (async () => {
      if (this.device === 'cuda') checkCudaBackend('initDistributed', this.localRank);
      this.rv = await Rendezvous.connect({
        rank: this.rank,
        size: this.size,
        addr: this.addr,
        port: this.port,
        timeoutSeconds: this.timeoutSeconds,
        // A peer gone for good: NCCL kernels waiting for it would wait forever, so the communicator is aborted, and
        // the next cuda read and every later collective report why.
        onLost: (e) => {
          if (this.nccl) native.ncclAbort({ reason: e.message });
        },
      });
      if (this.device !== 'cuda') return;
      await joinNccl(this.rank, this.size, this.timeoutSeconds, (id) => this.rv!.broadcast(id));
      this.nccl = true;
      await this.rv.barrier('the end of initDistributed');
    })();
    return this.readying;
  }

  private refuseCpu(op: string, t: Tensor) {
    if (t instanceof Tensor && t.device === 'cpu')
      throw new Error(
        `${op}: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI) reduces cuda tensors only: ` +
          'train on cuda, or start cpu training with an MPI launcher (mpirun -np N node script.js)',
      );
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    this.live('allReduce');
    checkOp(op);
    this.refuseCpu('allReduce', t);
    return ncclAllReduce(t, checkTensor('allReduce', t, true), op);
  }

  broadcast(t: Tensor, root = 0): Tensor {
    this.live('broadcast');
    checkRoot(root, this.size);
    this.refuseCpu('broadcast', t);
    return ncclBroadcast(t, checkTensor('broadcast', t, false), root);
  }

  async allGather(t: Tensor): Promise<Tensor> {
    this.live('allGather');
    this.refuseCpu('allGather', t);
    checkGatherInput(t);
    await agreeOnLayout(t, (v) => this.allGatherScalars(v));
    return gatherInto(this.size, t, native.ncclAllGather);
  }

  async barrier(): Promise<void> {
    this.live('barrier');
    await this.ready();
    if (this.nccl) await native.synchronize('cuda');
    await this.rv!.barrier();
  }

  async allGatherScalars(values: readonly number[]): Promise<number[][]> {
    const op = 'allGatherScalars';
    this.live(op);
    const mine = checkScalars(op, values);
    await this.ready();
    const all = (await this.rv!.allGather(new Uint8Array(mine.buffer))).map((b) => new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));
    if (all.some((v) => v.length !== mine.length)) throw new Error(`${op}: the ranks passed different numbers of values (${all.map((v, r) => `rank ${r}: ${v.length}`).join(', ')})`);
    return all.map((v) => Array.from(v));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.ready();
    if (this.nccl) await native.synchronize('cuda');
    await this.rv!.close();
    this.closed = true;
    if (this.nccl) native.ncclDestroy();
  }

  /**
   * Ends this process with the code. There is no launcher-wide abort without MPI: the other ranks see this one
   * disconnect, their next collective fails naming it (NCCL is aborted so no kernel waits for it), and torchrun
   * ends the job when a rank exits non-zero.
   */
  abort(code = 1): never {
    checkCode(code);
    if (this.nccl) native.ncclAbort({ reason: `rank ${this.rank} aborted the job (code ${code})` });
    process.exit(code);
  }
}

/** torchrun's variables (all four set), or undefined; an incomplete set that asks for more than one rank is an Error. */
function torchrunVars(env: NodeJS.ProcessEnv): { rank: number; size: number; localRank: number; addr: string; port: number } | undefined {
  const names = ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'];
  const set = names.filter((n) => env[n] !== undefined && env[n] !== '');
  const worldSize = intVar(env, 'WORLD_SIZE');
  const rank = intVar(env, 'RANK');
  if (set.length < names.length) {
    if ((worldSize !== undefined && worldSize > 1) || (rank !== undefined && rank > 0))
      throw new Error(
        `initDistributed: RANK=${env.RANK ?? ''} WORLD_SIZE=${env.WORLD_SIZE ?? ''} (torchrun's variables) without ` +
          `${names.filter((n) => !set.includes(n)).join(', ')}: a torchrun-style start needs all of ${names.join(', ')} ` +
          '(or start the ranks with an MPI launcher: mpirun -np N node script.js)',
      );
    return undefined;
  }
  if (worldSize! < 1) throw new Error('initDistributed: WORLD_SIZE=0; a world has at least one rank');
  if (rank! >= worldSize!) throw new Error(`initDistributed: RANK=${rank} is not a rank of WORLD_SIZE=${worldSize}`);
  const port = intVar(env, 'MASTER_PORT')!;
  if (port < 1 || port > 65535) throw new Error(`initDistributed: MASTER_PORT=${port} is not a port in [1, 65535]`);
  return { rank: rank!, size: worldSize!, localRank: intVar(env, 'LOCAL_RANK') ?? 0, addr: env.MASTER_ADDR!, port };
}

/**
 * The process group of this process, from the launcher's environment: MPI when an MPI launcher started it
 * (OMPI_COMM_WORLD_*, PMI_*, PMIX_*); the rendezvous/NCCL group for a torchrun-style start (RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT and no MPI launcher); the trivial group of one when nothing did. Nothing waits here:
 * `await group.ready()` meets the other ranks (and makes NCCL's communicator for device 'cuda').
 */
export function initDistributed(opts: InitDistributedOptions = {}): ProcessGroup {
  const env = opts.env ?? process.env;
  const timeoutSeconds = opts.timeoutSeconds ?? 300;
  if (typeof timeoutSeconds !== 'number' || !(timeoutSeconds > 0) || !Number.isFinite(timeoutSeconds))
    throw new Error(`initDistributed: timeoutSeconds must be a finite number > 0, got ${JSON.stringify(opts.timeoutSeconds)}`);
  if (opts.device !== undefined && opts.device !== 'cpu' && opts.device !== 'cuda')
    throw new Error(`initDistributed: device must be 'cpu' or 'cuda', got ${JSON.stringify(opts.device)}`);
  const launcher = mpiLauncherVariable(env);
  if (!launcher) {
    const t = torchrunVars(env);
    if (!t) return new TrivialGroup(opts.device ?? 'cpu');
    return new RendezvousGroup(t.rank, t.size, t.localRank, opts.device ?? 'cuda', t.addr, t.port, timeoutSeconds);
  }
  // The launcher's variables are read (and refused when malformed) before MPI is opened: MPI_Init cannot be undone.
  const envSize = intVar(env, 'OMPI_COMM_WORLD_SIZE') ?? intVar(env, 'PMI_SIZE');
  const envRank = intVar(env, 'OMPI_COMM_WORLD_RANK') ?? intVar(env, 'PMI_RANK') ?? intVar(env, 'PMIX_RANK');
  const localRank = intVar(env, 'OMPI_COMM_WORLD_LOCAL_RANK') ?? intVar(env, 'MPI_LOCALRANKID') ?? intVar(env, 'LOCAL_RANK') ?? 0;
  let r: { rank: number; size: number; library: string };
  try {
    r = native.distInit({ timeoutSeconds });
  } catch (e) {
    throw new Error(`initDistributed: the environment says an MPI launcher started this process (${launcher}=${env[launcher]}), but ${(e as Error).message}`);
  }
  // The launcher's own view must be MPI's: a mismatch means two MPI installations are mixed (mpirun of one,
  // libmpi of another), where every rank would believe it is rank 0 of a world of 1.
  if ((envSize !== undefined && envSize !== r.size) || (envRank !== undefined && envRank !== r.rank))
    throw new Error(
      `initDistributed: the launcher says rank ${envRank} of ${envSize}, ${r.library} says rank ${r.rank} of ${r.size}: ` +
        'the launcher and the MPI library are from different installations',
    );
  return new MpiGroup(r.rank, r.size, localRank, opts.device ?? 'cpu', timeoutSeconds);
}
