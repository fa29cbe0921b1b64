// The trainer's process group (issue #19): which rank this process is, how many there are, and the collectives
// data-parallel training needs. A world of one (no launcher) is a trivial group that needs no library. A world
// started by an MPI launcher (mpirun/mpiexec, or srun with PMIx) uses MPI itself, opened at run time by the addon
// (native/dist): rank and size come from MPI, the launcher's variables are only cross-checked. The collectives
// take cpu tensors and are queued on the cpu backend like any op, so they order with the ops around them.
import { native } from '../native';
import type { NativeBuffer } from '../native';
import { dtypeSize, Tensor } from '../tensor';

export type ReduceOp = 'sum' | 'mean';

export interface ProcessGroup {
  readonly rank: number;
  readonly size: number;
  /** The rank among the processes of this machine (for choosing a GPU later); 0 without a launcher. */
  readonly localRank: number;
  /** 'mpi', or 'none' for the trivial group of one. */
  readonly backend: 'mpi' | 'none';
  /** In place over every rank (f32, cpu), queued: the sum, or the mean. Returns the tensor. */
  allReduce(t: Tensor, op?: ReduceOp): Tensor;
  /** In place: root's values into every rank's tensor (cpu, any dtype), queued. Returns the tensor. */
  broadcast(t: Tensor, root?: number): Tensor;
  /** Resolves once every rank has reached it (and the cpu work queued before it is done). */
  barrier(): Promise<void>;
  /** Every rank's values, by rank ([rank][i]); every rank must pass as many (an Error otherwise). NaN passes. */
  allGatherScalars(values: readonly number[]): Promise<number[][]>;
  /**
   * Ends the group: a barrier, then MPI_Finalize. Every rank must call it; a rank that ends without it counts as a
   * failed rank to the launcher (mpirun then ends the job non-zero), which is what a crashed rank must look like.
   */
  close(): Promise<void>;
  /**
   * Ends every rank of the job now with this exit code (MPI_Abort): for a rank that knows the run cannot go on
   * and must not leave the others waiting for its collectives. The trivial group exits this process.
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
  if (t.device !== 'cpu') throw new Error(`${op}: the tensor is on ${t.device}; the MPI collectives take cpu tensors (NCCL for GPU tensors is not implemented yet)`);
  if (f32 && t.dtype !== 'f32') throw new Error(`${op}: the tensor is ${t.dtype}; allReduce takes f32 tensors`);
  return t.native(op);
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
  private live(op: string) {
    if (this.closed) throw new Error(`${op}: the process group was closed`);
  }
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    this.live('allReduce');
    if (op !== 'sum' && op !== 'mean') throw new Error(`allReduce: op must be 'sum' or 'mean', got ${JSON.stringify(op)}`);
    checkTensor('allReduce', t, true);
    return t;
  }
  broadcast(t: Tensor, root = 0): Tensor {
    this.live('broadcast');
    if (root !== 0) throw new Error(`broadcast: root ${JSON.stringify(root)} is not a rank of the group (size 1)`);
    checkTensor('broadcast', t, false);
    return t;
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
  constructor(readonly rank: number, readonly size: number, readonly localRank: number) {}

  private live(op: string) {
    if (this.closed) throw new Error(`${op}: the process group was closed`);
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    this.live('allReduce');
    if (op !== 'sum' && op !== 'mean') throw new Error(`allReduce: op must be 'sum' or 'mean', got ${JSON.stringify(op)}`);
    native.distAllReduce({ buffer: checkTensor('allReduce', t, true), n: t.numel, op });
    return t;
  }

  broadcast(t: Tensor, root = 0): Tensor {
    this.live('broadcast');
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new Error(`broadcast: root ${JSON.stringify(root)} is not a rank of the group (size ${this.size})`);
    native.distBroadcast({ buffer: checkTensor('broadcast', t, false), bytes: t.numel * dtypeSize(t.dtype), root });
    return t;
  }

  async barrier(): Promise<void> {
    this.live('barrier');
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
    native.distFinalize();
  }

  abort(code = 1): never {
    return native.distAbort({ code: checkCode(code) });
  }
}

/**
 * The process group of this process, from the launcher's environment: MPI when an MPI launcher started it
 * (OMPI_COMM_WORLD_*, PMI_*, PMIX_*), the trivial group of one when nothing did. torchrun's RANK / WORLD_SIZE
 * without an MPI launcher is an Error: only MPI is supported so far (start the ranks with mpirun).
 */
export function initDistributed(opts: InitDistributedOptions = {}): ProcessGroup {
  const env = opts.env ?? process.env;
  const timeoutSeconds = opts.timeoutSeconds ?? 300;
  if (typeof timeoutSeconds !== 'number' || !(timeoutSeconds > 0) || !Number.isFinite(timeoutSeconds))
    throw new Error(`initDistributed: timeoutSeconds must be a finite number > 0, got ${JSON.stringify(opts.timeoutSeconds)}`);
  const launcher = mpiLauncherVariable(env);
  if (!launcher) {
    const worldSize = intVar(env, 'WORLD_SIZE');
    const rank = intVar(env, 'RANK');
    if ((worldSize !== undefined && worldSize > 1) || (rank !== undefined && rank > 0))
      throw new Error(
        `initDistributed: RANK=${env.RANK ?? ''} WORLD_SIZE=${env.WORLD_SIZE ?? ''} (torchrun's variables) but no MPI launcher: ` +
          'only the MPI launcher is supported so far; start the ranks with mpirun -np N node script.js',
      );
    return new TrivialGroup();
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
  return new MpiGroup(r.rank, r.size, localRank);
}
