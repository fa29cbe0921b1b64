// Data-parallel training over MPI (ts/train/distributed, native/dist): the collectives on two ranks. Every
// multi-rank case runs children under `mpirun -np 2` (a failure must show as an exit status, not take jest down).
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';

import { initDistributed, tensor } from '../../ts';

const children = path.join(__dirname, 'children');
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const withMpi = mpirun ? describe : describe.skip;
const title = (t: string) => (mpirun ? t : `${t} (skipped: no mpirun)`);

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** `mpirun -np 2 node <script> args...`; a hang shows as SIGKILL after timeoutMs. */
function mpi(script: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 90_000): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '2', process.execPath, path.join(children, script), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** The JSON lines the ranks printed, by rank. */
function byRank<T extends { rank: number }>(r: Run): T[] {
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T);
  return lines.sort((a, b) => a.rank - b.rank);
}

describe('without a launcher', () => {
  test('a world of one: the trivial group, no library needed; its collectives leave values as they are', async () => {
    const g = initDistributed({ env: {} });
    expect([g.rank, g.size, g.backend]).toEqual([0, 1, 'none']);
    const t = tensor([1, 2, 3], [3]);
    expect(g.allReduce(t, 'mean')).toBe(t);
    g.broadcast(t, 0);
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3]);
    expect(await g.allGatherScalars([4, NaN])).toEqual([[4, NaN]]);
    await g.barrier();
    expect(() => g.broadcast(t, 1)).toThrow('broadcast: root 1 is not a rank of the group (size 1)');
    expect(() => g.allReduce(tensor([1], [1], { dtype: 'bf16' }))).toThrow('allReduce: the tensor is bf16');
    await g.close();
    expect(() => g.allReduce(t)).toThrow('allReduce: the process group was closed');
  });

  test("torchrun's RANK / WORLD_SIZE without an MPI launcher is an Error saying only MPI is supported", () => {
    expect(() => initDistributed({ env: { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', MASTER_ADDR: 'localhost', MASTER_PORT: '29500' } })).toThrow(
      /RANK=1 WORLD_SIZE=2 \(torchrun's variables\) but no MPI launcher: only the MPI launcher is supported so far/,
    );
    expect(() => initDistributed({ env: { OMPI_COMM_WORLD_SIZE: 'two' } })).toThrow('initDistributed: OMPI_COMM_WORLD_SIZE="two" is not a non-negative integer');
    expect(() => initDistributed({ env: {}, timeoutSeconds: 0 })).toThrow('initDistributed: timeoutSeconds must be a finite number > 0');
  });

  test('a launcher environment without a usable MPI library: an Error naming what was looked for and how to install it', () => {
    // A child, so that this process never opens MPI; AM_RADIO_MPI_LIBRARY makes the library missing on purpose.
    const script = "const { initDistributed } = require('./entry'); try { initDistributed(); console.log('no error'); } catch (e) { console.log(e.message); }";
    const r = spawnSync(process.execPath, ['-e', script], {
      cwd: path.join(__dirname, '..', 'reliability', 'children'),
      env: { ...process.env, OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', AM_RADIO_MPI_LIBRARY: 'libmpi-missing.so.40' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/initDistributed: the environment says an MPI launcher started this process \(OMPI_COMM_WORLD_SIZE=2\), but MPI: no usable MPI library \(looked for libmpi-missing\.so\.40: libmpi-missing\.so\.40: cannot open shared object file/);
    expect(r.stdout).toMatch(/install Open MPI \(Debian\/Ubuntu: apt-get install openmpi-bin libopenmpi-dev\)/);
  });
});

withMpi(title('mpirun -np 2'), () => {
  test('allReduce (sum, mean), broadcast from rank 1, allGatherScalars, odd sizes; the Errors of bad calls', async () => {
    const r = await mpi('collectives.js', []);
    expect(r.code).toBe(0);
    const out = byRank<Record<string, unknown> & { rank: number }>(r);
    expect(out.map((o) => o.rank)).toEqual([0, 1]);
    const values = (rank: number, n: number, k: number) => Array.from({ length: n }, (_, i) => (rank + 1) * (i * 0.25 - k) + rank * rank);
    const f32 = (v: number[]) => Array.from(Float32Array.from(v));
    const sum = f32(values(0, 7, 1).map((v, i) => v + values(1, 7, 1)[i]));
    const mean = f32(values(0, 5, 2).map((v, i) => (v + values(1, 5, 2)[i]) / 2));
    for (const o of out) {
      expect(o.size).toBe(2);
      expect(o.backend).toBe('mpi');
      expect(o.sum).toEqual(sum);
      expect(o.mean).toEqual(mean);
      expect(o.largeWorst).toBeLessThan(1e-6);
      expect(o.bcast).toEqual(f32(values(1, 9, 4)));
      expect(o.ints).toEqual([0, 10, 20]);
      expect(o.empty).toBe(0);
      expect(o.gathered).toEqual([['0', 'NaN', '0', '-Infinity'], ['1', 'NaN', '1.5', '-Infinity']]);
      expect(o.gatheredEmpty).toEqual([[], []]);
      expect(o.mismatch).toBe('allGatherScalars: the ranks passed different numbers of values (rank 0: 1, rank 1: 2)');
      expect(o.errors).toEqual({
        bf16: 'allReduce: the tensor is bf16; allReduce takes f32 tensors',
        op: "allReduce: op must be 'sum' or 'mean', got \"max\"",
        root: 'broadcast: root 2 is not a rank of the group (size 2)',
        sim: 'allReduce: the tensor is on sim; the MPI collectives take cpu tensors (NCCL for GPU tensors is not implemented yet)',
      });
      expect(o.afterClose).toBe('allReduce: the process group was closed');
    }
  });
});
