// NCCL on cuda tensors (native/dist/nccl, the torchrun-style group): a world of one, and two ranks (a child per
// GPU, met over the TCP rendezvous) when two GPUs are visible. They need a GPU and libnccl.so.2 (or
// AM_RADIO_NCCL_LIBRARY); without them the cases are registered as skipped with the reason in their titles, so a
// run without a GPU reports them as skipped, never as passed. The GPU check (bench/gpu-check.sh) runs them.
import { spawnSync } from 'child_process';
import * as path from 'path';

import { backends } from '../../ts';
import { native } from '../../ts/native';
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
  const one = named('a world of one (torchrun-style, WORLD_SIZE=1): allReduce sum/mean/bf16, broadcast, allGather, bucketed gradients');
  one.run(one.title, async () => expectRanks(1, await world(1)));

  const two = named('two ranks, one GPU each, met over the rendezvous: the same collectives across the ranks', 2);
  two.run(two.title, async () => expectRanks(2, await world(2)));
});
