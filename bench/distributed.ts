// All-reduce bandwidth of the trainer's process group (ts/train/distributed: MPI, f32 cpu tensors, sum) for the
// sizes a gradient reduction sends: 64 KB (a small parameter) up to 25 MB (a DDP bucket) and 100 MB. Started
// without a launcher it starts itself under `mpirun -np 2` (AM_RADIO_BENCH_RANKS to change) and waits; under
// mpirun every rank times the same fixed number of collectives, each after a barrier so that the ranks start
// together, and rank 0 prints and writes the records.
// With cuda in AM_RADIO_BENCH_DEVICES, two visible GPUs and NCCL, the same sizes on f32 cuda tensors through NCCL:
// two ranks started torchrun-style (one GPU each, met over the rendezvous), written to distributed-nccl.json;
// without them it says which is missing and measures nothing.
//   npm run bench -- distributed
// Reported as nccl-tests define it: algorithm bandwidth algbw = S / t (S the bytes of one rank's tensor, t the
// slowest rank's median time) and bus bandwidth busbw = algbw · 2(n − 1)/n, which factors out the ring's 2(n − 1)/n
// so that it compares with the link's bandwidth whatever n is. The record's gbPerS is algbw; details has both.
//
// It also prints the ring all-reduce time 2(n − 1)/n · S / busbw of a ViT-H/16 student's f32 gradients over the
// paper's 64 ranks, at the bus bandwidth measured here and at AM_RADIO_BENCH_NCCL_GBPS (an assumed NCCL figure,
// default 100 GB/s), the term the README's step-time estimate adds to the single-GPU step.
import { spawn, spawnSync } from 'child_process';
import * as net from 'net';

import { initDistributed, rand, synchronize } from '../ts';
import type { ProcessGroup } from '../ts';
import { native } from '../ts/native';
import { mpiLauncherVariable } from '../ts/train/distributed';
import { BenchRecord, benchDevices, printTable, writeResults } from './harness';

const SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 25 << 20, 64 << 20, 100 << 20];
// ViT-H/16 (RADIO's student): depth 32, width 1280, MLP 4×: 12·D² weights per block, the patch embedding and the
// position table beside; the adaptor heads add a few percent more, left out.
const VIT_H = { depth: 32, dim: 1280, patchPixels: 3 * 16 * 16, positions: 128 * 128 };
const PAPER_RANKS = 64;

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a number > 0, got ${JSON.stringify(v)}`);
  return n;
}

/** Timed repeats of one size: enough to fill about 0.2 s of copying at 1 GB/s, between 5 and 200; the same on every rank. */
const repeatsFor = (bytes: number) => Math.max(5, Math.min(200, Math.round(2e8 / bytes)));

/** Ring all-reduce seconds of `bytes` over n ranks at bus bandwidth busbw (bytes/s). */
const ringSeconds = (bytes: number, n: number, busbw: number) => ((2 * (n - 1)) / n) * (bytes / busbw);

function launch(): void {
  if (!benchDevices().includes('cpu')) {
    console.log('distributed: the MPI all-reduce is timed on cpu tensors, and AM_RADIO_BENCH_DEVICES leaves cpu out; MPI not measured');
    return;
  }
  const ranks = envNumber('AM_RADIO_BENCH_RANKS', 2);
  if (spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status !== 0) {
    console.log('distributed: no mpirun on PATH (apt-get install openmpi-bin libopenmpi-dev); nothing measured');
    return;
  }
  const r = spawnSync('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, __filename], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status || 1);
}

/** Why NCCL cannot be measured here, or null when it can (cuda wanted and usable, NCCL present, two GPUs). */
function ncclUnmeasurable(): string | null {
  if (!benchDevices().includes('cuda')) return 'no usable cuda backend (or AM_RADIO_BENCH_DEVICES leaves cuda out)';
  try {
    native.ncclLibrary();
  } catch (e) {
    return (e as Error).message;
  }
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  const gpus = process.env.CUDA_VISIBLE_DEVICES?.split(',').filter((d) => d.trim() !== '').length ?? (smi.status === 0 ? smi.stdout.split('\n').filter((l) => l.startsWith('GPU ')).length : 0);
  return gpus >= 2 ? null : `${gpus} visible GPU${gpus === 1 ? '' : 's'}; an all-reduce between GPUs needs two`;
}

/** Two ranks of this file, torchrun-style, one GPU each; resolves with rank 0's exit status. */
async function launchNccl(): Promise<void> {
  const why = ncclUnmeasurable();
  if (why) {
    console.log(`distributed: NCCL all-reduce skipped: ${why}`);
    return;
  }
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const devices = process.env.CUDA_VISIBLE_DEVICES?.split(',').map((d) => d.trim()) ?? ['0', '1'];
  const codes = await Promise.all(
    [0, 1].map(
      (rank) =>
        new Promise<number | null>((resolve) => {
          const env = { ...process.env, RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), CUDA_VISIBLE_DEVICES: devices[rank] };
          spawn(process.execPath, process.execArgv.concat([__filename]), { env, stdio: 'inherit' }).on('close', resolve);
        }),
    ),
  );
  if (codes.some((c) => c !== 0)) process.exit(codes.find((c) => c !== 0) || 1);
}

async function timeSize(g: ProcessGroup, bytes: number, device: 'cpu' | 'cuda'): Promise<number[]> {
  const n = bytes / 4;
  const t = rand([n], { seed: 1 + g.rank, device });
  const samples: number[] = [];
  try {
    for (let i = 0; i < 2 + repeatsFor(bytes); i++) {
      await g.barrier();
      const t0 = performance.now();
      g.allReduce(t, 'sum');
      await synchronize(device);
      if (i >= 2) samples.push(performance.now() - t0);
    }
  } finally {
    t.dispose();
  }
  return samples.sort((a, b) => a - b);
}

async function measure(device: 'cpu' | 'cuda'): Promise<void> {
  const g = initDistributed({ device });
  await g.ready();
  const n = g.size;
  const records: BenchRecord[] = [];
  for (const bytes of SIZES) {
    const samples = await timeSize(g, bytes, device);
    const mine = [samples[Math.floor(samples.length / 2)], samples[0]];
    // The collective ends when the slowest rank's does.
    const all = await g.allGatherScalars(mine);
    const median = Math.max(...all.map((r) => r[0]));
    const min = Math.max(...all.map((r) => r[1]));
    const algbw = bytes / (median * 1e-3);
    const busbw = (algbw * 2 * (n - 1)) / n;
    records.push({
      op: 'allReduce (sum)',
      shape: `${bytes >= 1 << 20 ? `${bytes / (1 << 20)} MB` : `${bytes / 1024} KB`} × ${n} ranks`,
      dtype: 'f32',
      backend: device,
      // No bytes on cuda: the GPU report would take them against the HBM copy ceiling, and an all-reduce between
      // GPUs is bound by the link between them (busbw, in details, is the figure to compare).
      bytes: device === 'cuda' ? undefined : bytes,
      medianMs: median,
      minMs: min,
      repeats: samples.length,
      gbPerS: algbw / 1e9,
      note: `busbw ${(busbw / 1e9).toFixed(2)} GB/s`,
      details: { ranks: n, algbwGBps: algbw / 1e9, busbwGBps: busbw / 1e9, transport: device === 'cuda' ? `NCCL ${native.ncclLibrary().versionText}, one GPU per rank, one machine` : 'MPI (Open MPI), one machine' },
    });
  }
  if (device === 'cuda') {
    if (g.rank === 0) {
      printTable(`all-reduce over ${n} ranks (NCCL, f32 cuda tensors; GB/s is algbw = S / t)`, records);
      console.log(`wrote ${writeResults('distributed-nccl', records)}`);
    }
  } else if (g.rank === 0) {
    printTable(`all-reduce over ${n} ranks (MPI, f32 cpu tensors; GB/s is algbw = S / t)`, records);
    const params = VIT_H.depth * 12 * VIT_H.dim ** 2 + VIT_H.patchPixels * VIT_H.dim + VIT_H.positions * VIT_H.dim;
    const grads = 4 * params;
    const bucket = records.find((r) => r.bytes === 25 << 20)!;
    const here = (bucket.details!.busbwGBps as number) * 1e9;
    const nccl = envNumber('AM_RADIO_BENCH_NCCL_GBPS', 100) * 1e9;
    const ms = (busbw: number) => (1e3 * ringSeconds(grads, PAPER_RANKS, busbw)).toFixed(1);
    console.log(
      `\nring all-reduce of a ViT-H/16 student's f32 gradients (${(params / 1e6).toFixed(0)} M parameters, ${(grads / 1e9).toFixed(2)} GB) over ${PAPER_RANKS} ranks:\n` +
        `  at this machine's 25 MB busbw (${(here / 1e9).toFixed(2)} GB/s): ${ms(here)} ms\n` +
        `  at an assumed NCCL busbw of ${(nccl / 1e9).toFixed(0)} GB/s (AM_RADIO_BENCH_NCCL_GBPS): ${ms(nccl)} ms`,
    );
    records.push({
      op: 'ring all-reduce estimate, ViT-H/16 f32 gradients',
      shape: `${(grads / 1e9).toFixed(2)} GB × ${PAPER_RANKS} ranks`,
      dtype: 'f32',
      backend: 'cpu',
      medianMs: Number(ms(nccl)),
      minMs: Number(ms(nccl)),
      repeats: 0,
      note: `computed, not timed: 2(n-1)/n·S/B at an assumed ${(nccl / 1e9).toFixed(0)} GB/s`,
      details: { parameters: params, gradientBytes: grads, assumedBusbwGBps: nccl / 1e9, msAtMeasuredBusbw: Number(ms(here)), measuredBusbwGBps: here / 1e9 },
    });
    console.log(`wrote ${writeResults('distributed', records)}`);
  }
  await g.close();
}

const fail = (e: unknown) => {
  console.error(e);
  process.exit(1);
};
if (mpiLauncherVariable()) measure('cpu').catch(fail);
else if (process.env.RANK !== undefined && process.env.MASTER_PORT !== undefined) measure('cuda').then(() => process.exit(0), fail);
else {
  launch();
  launchNccl().catch(fail);
}
