// Shared benchmark runner: warm-up, repeated timing, median, one JSON record per case and a printed table.
// Benchmarks only report; they never assert times.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { backends, randn, SafetensorsFile, synchronize } from '../ts';
import type { Device, Tensor } from '../ts';

export interface BenchCase {
  op: string;
  shape: string;
  dtype: string;
  backend: Device | 'torch-cpu' | 'torch-cuda';
  /** Bytes that must cross memory at least once (inputs read + outputs written). */
  bytes?: number;
  flops?: number;
  /**
   * The same computation for bench/torch_reference.py to time in PyTorch on the same machine:
   * a function name it knows (linear, layer_norm, gelu, add, sum, ...) and its arguments.
   */
  torch?: { fn: string; args: Record<string, number | string | number[] | boolean> };
}

export interface BenchRecord extends BenchCase {
  medianMs: number;
  minMs: number;
  repeats: number;
  gbPerS?: number;
  gflopPerS?: number;
  /** Measured time as a fraction of the floor (bytes/bandwidth or flops/peak), when a ceiling is known. */
  fractionOfFloor?: number;
  note?: string;
  /** Whole-model benches: images per second at the median. */
  imgPerS?: number;
  /** A PyTorch record: which mode ran it (gpu-report joins compile records as torch.compile timings). */
  torchMode?: 'eager' | 'compile';
  /** Our speed over PyTorch's on the same case (their median / ours; > 1: we are faster). */
  vsTorch?: { eager?: number; compile?: number };
  /** Bench-specific measurements (per-phase times, loss agreement, ...). */
  details?: Record<string, unknown>;
}

export interface Ceilings {
  /** Bytes per second the device can copy (measured), for bandwidth-bound ops. */
  bandwidth?: number;
  /** FLOP per second (measured or datasheet) for compute-bound ops. */
  flops?: number;
}

/**
 * The backends a bench runs on: every available one except `skipByDefault`, or exactly those listed in
 * AM_RADIO_BENCH_DEVICES (e.g. `cuda` in the GPU check, `cpu,sim` here) that are available.
 */
export function benchDevices(skipByDefault: Device[] = []): Device[] {
  const wanted = process.env.AM_RADIO_BENCH_DEVICES?.split(',').map((d) => d.trim());
  return backends()
    .filter((b) => b.available && (wanted ? wanted.includes(b.name) : !skipByDefault.includes(b.name)))
    .map((b) => b.name);
}

/** The dtypes a bench runs: AM_RADIO_BENCH_DTYPES (e.g. `f32`) or both float dtypes. */
export function benchDtypes(): Array<'f32' | 'bf16'> {
  return (process.env.AM_RADIO_BENCH_DTYPES?.split(',').map((d) => d.trim()) ?? ['f32', 'bf16']) as Array<'f32' | 'bf16'>;
}

/** Times run() (which queues work on device) until `minTimeMs` of samples, reporting the median. */
export async function timeCase(
  c: BenchCase,
  device: Device,
  run: () => void | Promise<void>,
  opts: { warmup?: number; minRepeats?: number; minTimeMs?: number; ceilings?: Ceilings } = {},
): Promise<BenchRecord> {
  const warmup = opts.warmup ?? 2;
  for (let i = 0; i < warmup; i++) await run();
  await synchronize(device);
  const samples: number[] = [];
  const budget = opts.minTimeMs ?? 300;
  const started = performance.now();
  while (samples.length < (opts.minRepeats ?? 5) || performance.now() - started < budget) {
    const t0 = performance.now();
    await run();
    await synchronize(device);
    samples.push(performance.now() - t0);
    if (samples.length >= 1000) break;
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  const rec: BenchRecord = { ...c, medianMs: median, minMs: samples[0], repeats: samples.length };
  if (c.bytes) rec.gbPerS = c.bytes / (median * 1e-3) / 1e9;
  if (c.flops) rec.gflopPerS = c.flops / (median * 1e-3) / 1e9;
  const floorS = Math.max(
    c.bytes && opts.ceilings?.bandwidth ? c.bytes / opts.ceilings.bandwidth : 0,
    c.flops && opts.ceilings?.flops ? c.flops / opts.ceilings.flops : 0,
  );
  if (floorS > 0) rec.fractionOfFloor = floorS / (median * 1e-3);
  return rec;
}

export function printTable(title: string, records: BenchRecord[]): void {
  console.log(`\n${title}`);
  const rows = records.map((r) => [
    r.op,
    r.shape,
    r.dtype,
    r.backend,
    r.medianMs.toFixed(3),
    r.gbPerS !== undefined ? r.gbPerS.toFixed(2) : '',
    r.gflopPerS !== undefined ? r.gflopPerS.toFixed(1) : '',
    r.fractionOfFloor !== undefined ? `${(100 * r.fractionOfFloor).toFixed(1)}%` : '',
    r.note ?? '',
  ]);
  const head = ['op', 'shape', 'dtype', 'backend', 'median ms', 'GB/s', 'GFLOP/s', '% of floor', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** Writes records to bench/results/<name>.json (or $AM_RADIO_BENCH_OUT/<name>.json). */
export function writeResults(name: string, records: BenchRecord[]): string {
  const dir = process.env.AM_RADIO_BENCH_OUT ?? path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ name, date: new Date().toISOString(), records }, null, 2));
  return file;
}

/** Copy bandwidth (bytes read + written per second) of a same-dtype cast, the ceiling for these ops. */
export async function copyCeiling(device: Device): Promise<{ ceilings: Ceilings; record: BenchRecord }> {
  const n = device === 'sim' ? 1 << 18 : device === 'cuda' ? 1 << 27 : 1 << 25;
  const a = randn([n], { seed: 3, device });
  const record = await timeCase({ op: 'copy (cast f32->f32)', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 8 * n }, device, () => {
    a.cast('f32').dispose();
  });
  a.dispose();
  return { ceilings: { bandwidth: record.gbPerS! * 1e9 }, record };
}

/** One run of a reference-model script (bench/torch_*.py): its median time, torch version and thread count. */
export interface TorchModelRun {
  ms: number;
  /** The fastest timed run and how many there were (scripts that report them). */
  min_ms?: number;
  repeats?: number;
  torch: string;
  threads: number;
  /** The safetensors file the script wrote its outputs to. */
  out: string;
}

/**
 * Runs bench/<script> on a checkpoint folder and an images file with the reference checkouts that
 * AM_RADIO_BENCH_REFERENCE lists (colon-separated, passed as `--<flag> DIR` in `flags` order), or returns null
 * with the reason printed: no references named, or the script failed.
 */
export function runTorchModel(
  bench: string,
  script: string,
  flags: readonly string[],
  dir: string,
  io: string,
  opts: { device: Device; dtype: string; compile: boolean; repeats: number; /** Further arguments the script takes. */ args?: string[] },
): TorchModelRun | null {
  const ref = process.env.AM_RADIO_BENCH_REFERENCE?.split(':');
  if (!ref || ref.length !== flags.length) {
    console.log(`${bench}: no PyTorch run (set AM_RADIO_BENCH_REFERENCE=${flags.map((f) => `${f.toUpperCase()}_DIR`).join(':')} to the reference checkouts)`);
    return null;
  }
  const python = process.env.AM_RADIO_BENCH_PYTHON ?? '/usr/bin/python3';
  const out = path.join(path.dirname(io), `torch-${opts.device}-${opts.dtype}${opts.compile ? '-compile' : ''}.safetensors`);
  const args = [path.join(__dirname, '..', '..', 'bench', script), ...flags.flatMap((f, i) => [`--${f}`, ref[i]]), dir, io, out, '--device', opts.device, '--dtype', opts.dtype, '--repeats', String(opts.repeats)];
  if (opts.device === 'cpu') args.push('--threads', String(os.availableParallelism()));
  if (opts.compile) args.push('--compile');
  if (opts.args) args.push(...opts.args);
  const r = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    console.log(`${bench}: the PyTorch run failed (${python} exit ${r.status}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
    return null;
  }
  return { ...JSON.parse(r.stdout.trim().split('\n').pop()!), out };
}

/** ‖ours − ref‖ / ‖ref‖ with ref the tensor `key` of a safetensors file. */
export async function agreementWith(ours: Tensor, file: string, key: string): Promise<number> {
  const f = await SafetensorsFile.open(file);
  try {
    const ref = (await f.readFloat(key)).data;
    const got = await ours.toArray();
    let num = 0;
    let den = 0;
    for (let i = 0; i < ref.length; i++) {
      num += (got[i] - ref[i]) ** 2;
      den += ref[i] ** 2;
    }
    return Math.sqrt(num / den);
  } finally {
    await f.close();
  }
}

/**
 * The PyTorch row printed under one of ours (same op, shape and dtype) for a reference-model run; the caller's own
 * row records the ratio. bf16 says how the reference scripts run it: autocast on cuda, the model cast on cpu.
 */
export function torchModelRecord(ours: BenchRecord, r: TorchModelRun, mode: 'eager' | 'compile', batch: number): BenchRecord {
  const cuda = ours.backend === 'cuda';
  const bf16 = ours.dtype === 'bf16' ? (cuda ? ' (autocast)' : ' (model cast to bf16)') : '';
  return {
    op: ours.op, shape: ours.shape, dtype: ours.dtype, backend: cuda ? 'torch-cuda' : 'torch-cpu', torchMode: mode,
    medianMs: r.ms, minMs: r.min_ms ?? r.ms, repeats: r.repeats ?? 1, imgPerS: batch / (r.ms / 1000),
    note: `${(batch / (r.ms / 1000)).toFixed(2)} img/s; torch ${r.torch} ${mode}, ${r.threads} threads${bf16}`,
  };
}
