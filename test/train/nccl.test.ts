// NCCL on cuda tensors (native/dist/nccl, the torchrun-style group): a world of one, and two ranks (a child per
// GPU, met over the TCP rendezvous) when two GPUs are visible. They need a GPU and libnccl.so.2 (or
// AM_RADIO_NCCL_LIBRARY); without them the cases are registered as skipped with the reason in their titles, so a
// run without a GPU reports them as skipped, never as passed. The GPU check (bench/gpu-check.sh) runs them.
import { spawnSync } from 'child_process';
import * as path from 'path';

import { backends } from '../../ts';
import { native } from '../../ts/native';
import { expectGather } from './gather';
import { byRank, mpirun, mpirunNode } from './mpi';
import { RankRun, torchrun } from './torchrun';

const script = path.join(__dirname, 'children', 'nccl.js');
const cuda = backends().find((b) => b.name === 'cuda');
let ncclMissing: string | null = null;
try {
  native.ncclLibrary();
} catch (e) {
  ncclMissing = (e as Error).message;
}

/** GPUs this process may use: CUDA_VISIBLE_DEVICES's entries when set, else nvidia-smi's list. */
function visibleGpus(): number {
  const vis = process.env.CUDA_VISIBLE_DEVICES;
  if (vis !== undefined) return vis.split(',').filter((s) => s.trim() !== '' && !s.startsWith('-')).length;
  const r = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n').filter((l) => l.startsWith('GPU ')).length : 0;
}

const why = !cuda?.available ? 'no GPU' : ncclMissing ? 'no NCCL' : null;
const gpus = why ? 0 : visibleGpus();
const named = (title: string, need = 1) => {
  const reason = why ?? (gpus < need ? `fewer than ${need} visible GPUs` : null);
  return { run: reason ? test.skip : test, title: reason ? `${title} (skipped: ${reason})` : title };
};

/** One child per rank; rank r sees only GPU r when there are several (the cuda backend uses the first visible). */
function world(n: number): Promise<RankRun[]> {
  const devices = (process.env.CUDA_VISIBLE_DEVICES ?? '').split(',').filter((s) => s.trim() !== '');
  const gpu = (rank: number): NodeJS.ProcessEnv => (n > 1 ? { CUDA_VISIBLE_DEVICES: devices.length ? devices[rank] : String(rank) } : {});
  return torchrun(script, [], Array.from({ length: n }, (_, r) => r), n, gpu, 180_000);
}

function expectRanks(n: number, ranks: RankRun[]) {
  const values = (rank: number, len: number, k: number) => Array.from({ length: len }, (_, i) => (rank + 1) * (i * 0.25 - k) + rank * rank);
  const f32 = (v: number[]) => Array.from(Float32Array.from(v));
  const over = (f: (q: number) => number[]) => f(0).map((_, i) => Array.from({ length: n }, (_, q) => f(q)[i]).reduce((a, b) => a + b, 0));
  for (const [rank, r] of ranks.entries()) {
    expect({ rank, code: r.code, error: r.out.error }).toEqual({ rank, code: 0, error: undefined });
    const o = r.out;
    expect([o.rank, o.size, o.backend]).toEqual([rank, n, 'nccl']);
    expect(o.sum).toEqual(f32(over((q) => values(q, 7, 1))));
    // NCCL's mean (ncclAvg, or the sum scaled by 1/n before 2.10) rounds once more than the sum: within an ulp.
    const mean = over((q) => values(q, 5, 2)).map((v) => v / n);
    for (const [i, v] of (o.mean as number[]).entries()) expect(Math.abs(v - mean[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(mean[i])));
    expect(o.largeWorst).toBeLessThan(1e-6);
    expect(o.bf16).toEqual(over((q) => [q + 1, 2 * (q + 1), 0.5]));
    expect(o.bcast).toEqual(f32(values(n - 1, 9, 4)));
    expect(o.ints).toEqual([0, 10, 20]);
    expect(o.empty).toBe(0);
    expect(o.gathered).toEqual(Array.from({ length: n }, (_, q) => [0, 1, 2, 3].map((i) => q * 10 + i)).flat());
    expect(o.buckets).toBe(2);
    const grads = [3, 2, 4].map((len, j) => Array.from({ length: len }, (_, i) => over((q) => [(q + 1) * (j + 1) + i])[0] / n));
    for (const [j, g] of (o.grads as number[][]).entries()) for (const [i, v] of g.entries()) expect(Math.abs(v - grads[j][i])).toBeLessThanOrEqual(1e-6 * Math.abs(grads[j][i]));
    expect(o.scalars).toEqual(Array.from({ length: n }, (_, q) => [q]));
    expectGather(n, 'cuda', rank, o.tensors as Record<string, unknown>);
    expect(o.errors).toEqual({
      cpu: "allReduce: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI) reduces cuda tensors only: train on cuda, or start cpu training with an MPI launcher (mpirun -np N node script.js)",
      sim: 'allReduce: the tensor is on sim; the collectives take cpu tensors (MPI) or cuda tensors (NCCL)',
      i32: 'allReduce: the tensor is i32; allReduce takes f32 tensors or bf16',
      root: `broadcast: root ${n} is not a rank of the group (size ${n})`,
    });
    expect(o.afterClose).toBe('allReduce: the process group was closed');
  }
}

describe('NCCL on cuda tensors', () => {
  const one = named('a world of one (torchrun-style, WORLD_SIZE=1): allReduce sum/mean/bf16, broadcast, allGather (the binding, and the group allGather of tensors), bucketed gradients');
  one.run(one.title, async () => expectRanks(1, await world(1)));

  const two = named('two ranks, one GPU each, met over the rendezvous: the same collectives across the ranks', 2);
  two.run(two.title, async () => expectRanks(2, await world(2)));
});

// Without a GPU: native/dist/nccl.cpp against a stand-in library (children/fake-nccl.c) that answers like NCCL
// but moves no data, so that opening, the version, the id, ncclCommInitRank off the JS thread, the watchdog's abort
// on an asynchronous error, destroy, and exiting with a live communicator are checked on every machine with a C
// compiler. Each case is a child: the library is opened, and the communicator made, once per process.
describe('native/dist/nccl against a stand-in libnccl (no GPU needed)', () => {
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' }).status === 0;
  const lib = path.join(require('os').tmpdir(), `am-radio-fake-nccl-${process.pid}.so`);
  const run = (mode: string, env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'children', 'fake-nccl.js'), mode], {
      env: { ...process.env, AM_RADIO_NCCL_LIBRARY: lib, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    return { status: r.status, signal: r.signal, stderr: r.stderr, out: line ? JSON.parse(line) : {} };
  };
  beforeAll(() => {
    if (!cc) return;
    const r = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', lib, path.join(__dirname, 'children', 'fake-nccl.c')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cc failed: ${r.stderr}`);
  });
  afterAll(() => require('fs').rmSync(lib, { force: true }));
  const t = cc ? test : test.skip;
  const noComm = "allGather: there is no NCCL communicator (initDistributed({ device: 'cuda' }) and await group.ready() create it, on every rank, before the first cuda collective)";

  t(`opens it, reads its version, makes a communicator of one, refuses a second, and exits cleanly with the watchdog running${cc ? '' : ' (skipped: no cc)'}`, () => {
    const r = run('plain');
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(r.out).toEqual({
      library: { library: lib, version: 21803, versionText: '2.18.3' },
      idBytes: 128,
      before: noComm,
      init: 'ok',
      again: 'NCCL: this process already made its communicator; one per process',
      // With a communicator the check passes, and the cpu buffer is what is refused.
      after: 'allGather: the tensor is on cpu; NCCL collectives take cuda tensors (sim is not an NCCL target; cpu tensors go through MPI)',
    });
  });

  t(`an asynchronous error (a peer gone) aborts the communicator within the watchdog's poll; later collectives say why${cc ? '' : ' (skipped: no cc)'}`, () => {
    const r = run('async-error', { FAKE_NCCL_ASYNC_ERROR_AFTER: '2' });
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
    expect(r.out.after).toBe(
      'allGather: NCCL reported an asynchronous error (6: remote process exited or there was a network error (fake)): a peer failed or the network broke; the communicator was aborted and the job cannot continue',
    );
  });

  t(`destroy ends it: later collectives say the group was closed${cc ? '' : ' (skipped: no cc)'}`, () => {
    const r = run('destroy');
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
    expect(r.out.after).toBe('allGather: the process group was closed');
  });

  t(`rank 0's id reaches the other ranks intact over the rendezvous (3 ranks, torchrun-style)${cc ? '' : ' (skipped: no cc)'}`, async () => {
    const r = await torchrun(path.join(__dirname, 'children', 'fake-nccl-join.js'), ['torchrun'], [0, 1, 2], 3, () => ({ AM_RADIO_NCCL_LIBRARY: lib }));
    expect(r.map((x) => [x.code, x.stderr, x.out])).toEqual([0, 1, 2].map((rank) => [0, '', { rank, size: 3, joined: 'ok', library: '2.18.3' }]));
  });

  (cc && mpirun ? test : test.skip)(`rank 0's id reaches the other rank intact by MPI's broadcast (mpirun -np 2)${cc && mpirun ? '' : ' (skipped: no cc or no mpirun)'}`, async () => {
    const r = await mpirunNode([path.join(__dirname, 'children', 'fake-nccl-join.js'), 'mpi'], 90_000, { AM_RADIO_NCCL_LIBRARY: lib });
    expect(r.code).toBe(0);
    expect(byRank(r)).toEqual([0, 1].map((rank) => ({ rank, size: 2, joined: 'ok', library: '2.18.3' })));
  });

  t(`a failing ncclCommInitRank rejects with NCCL's error and the hint about one GPU per rank${cc ? '' : ' (skipped: no cc)'}`, () => {
    const r = run('init-fail', { FAKE_NCCL_INIT_FAIL: '1' });
    expect([r.status, r.signal]).toEqual([0, null]);
    expect(r.out.init).toBe(
      'NCCL: ncclCommInitRank (rank 0 of 1) failed (error 5: invalid usage (fake)); each rank must see its own GPU: the cuda backend uses the first visible device, so start each rank with CUDA_VISIBLE_DEVICES set to its LOCAL_RANK; NCCL_DEBUG=WARN prints NCCL\'s reason',
    );
  });
});
