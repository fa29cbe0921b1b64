// Interpolation throughput for RADIO's shapes: bytes moved (inputs read once + outputs written once) over time, per
// backend, forward and backward, next to the device's measured copy bandwidth and PyTorch on the same shapes.
//   npm run bench -- interpolate
// sim runs a small fraction of each shape (batch 1, channels / 16): it emulates every CUDA thread on the CPU.
// GB/s counts every input element once even where a > 2x bilinear downsample reads only some of them (the CPE
// table 128² -> 48² touches about 56%), so such rows can pass the copy bandwidth.
import { spawnSync } from 'child_process';
import * as path from 'path';

import { Device, DType, ops, randn, rand, tensor, Tensor } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, copyCeiling, printTable, timeCase, writeResults } from './harness';

interface Shape {
  op: 'interpolate' | 'cpe' | 'cpeTrain';
  layout: 'NLC' | 'NCHW';
  batch: number;
  channels: number;
  from: number;
  to: number;
  /** interpolate only; default bilinear without antialias. */
  mode?: 'bilinear' | 'bicubic';
  antialias?: boolean;
}

// RADIO's cases: the CPE table (128² positions, ViT-B width) to a 48² patch grid, and feature maps aligned for the
// loss (ViT-H 27² ↔ DINOv2 16², SAM 64² ↔ 32²) at batch 32.
const SHAPES: Shape[] = [
  { op: 'cpe', layout: 'NLC', batch: 1, channels: 768, from: 128, to: 48 },
  { op: 'cpeTrain', layout: 'NLC', batch: 32, channels: 768, from: 128, to: 48 },
  { op: 'interpolate', layout: 'NLC', batch: 32, channels: 1280, from: 16, to: 27 },
  { op: 'interpolate', layout: 'NLC', batch: 32, channels: 1280, from: 27, to: 16 },
  { op: 'interpolate', layout: 'NLC', batch: 32, channels: 1280, from: 32, to: 64 },
  { op: 'interpolate', layout: 'NLC', batch: 32, channels: 1280, from: 64, to: 32 },
  { op: 'interpolate', layout: 'NCHW', batch: 32, channels: 1280, from: 16, to: 27 },
  { op: 'interpolate', layout: 'NCHW', batch: 32, channels: 1280, from: 64, to: 32 },
  // The teachers' position embeddings: DINOv2 ViT-L's 37² table to a 64² grid (bicubic) and, with registers, down to
  // 16² (bicubic, antialias); CLIP ViT-L/14-336's 24² to 32² on an NCHW map.
  { op: 'interpolate', layout: 'NLC', batch: 1, channels: 1024, from: 37, to: 64, mode: 'bicubic' },
  { op: 'interpolate', layout: 'NLC', batch: 1, channels: 1024, from: 37, to: 16, mode: 'bicubic', antialias: true },
  { op: 'interpolate', layout: 'NCHW', batch: 1, channels: 1024, from: 24, to: 32, mode: 'bicubic' },
];

const SIM_NOTE = 'sim: batch 1, channels/16';
const bytesOf = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);

function scaled(s: Shape, device: Device): Shape {
  return device === 'sim' ? { ...s, batch: 1, channels: Math.max(8, s.channels / 16) } : s;
}

function label(s: Shape): string {
  const map = s.layout === 'NLC' ? `[${s.op === 'interpolate' ? s.batch : 1}, ${s.from}², ${s.channels}]` : `[${s.batch}, ${s.channels}, ${s.from}, ${s.from}]`;
  const mode = s.mode && s.mode !== 'bilinear' ? ` ${s.mode}` : '';
  return `${map} -> ${s.to}²${s.op === 'cpeTrain' ? ` x B${s.batch}` : ''}${mode}${s.antialias ? ' antialias' : ''}`;
}

/** The op under test on x, and the sizes of its input and output in elements. */
function build(s: Shape, x: Tensor): { run: (t: Tensor) => Tensor; inElems: number; outElems: number } {
  const inElems = x.numel;
  if (s.op === 'cpe') return { run: (t) => ops.cpe(t, { gridH: s.to, gridW: s.to }), inElems, outElems: s.to * s.to * s.channels };
  if (s.op === 'cpeTrain') {
    const scale = rand([s.batch, 2], { seed: 1, device: x.device });
    const offset = rand([s.batch, 2], { seed: 2, device: x.device }).scale(0.3);
    const keep = tensor(new Float32Array(s.batch).fill(1), [s.batch], { device: x.device });
    return {
      run: (t) => ops.cpeTrain(t, { gridH: s.to, gridW: s.to, scale, offset, keep }),
      inElems,
      outElems: s.batch * s.to * s.to * s.channels,
    };
  }
  const resize = { size: [s.to, s.to] as [number, number], mode: s.mode ?? 'bilinear', antialias: s.antialias ?? false };
  const opts = s.layout === 'NLC' ? { ...resize, layout: 'NLC' as const, grid: [s.from, s.from] as [number, number] } : resize;
  return { run: (t) => ops.interpolate(t, opts), inElems, outElems: s.batch * s.to * s.to * s.channels };
}

function inputShape(s: Shape): number[] {
  if (s.op !== 'interpolate') return [1, s.from * s.from, s.channels];
  return s.layout === 'NLC' ? [s.batch, s.from * s.from, s.channels] : [s.batch, s.channels, s.from, s.from];
}

async function benchDevice(device: Device, dtypes: DType[]): Promise<BenchRecord[]> {
  const { ceilings, record } = await copyCeiling(device);
  const records = [record];
  for (const dtype of dtypes) {
    for (const full of SHAPES) {
      const s = scaled(full, device);
      const x = randn(inputShape(s), { seed: 4, device, dtype, requiresGrad: true });
      const { run, inElems, outElems } = build(s, x);
      const y = run(x);
      const g = randn(y.shape, { seed: 5, device, dtype });
      const plain = x.detach();
      const bytes = (inElems + outElems) * bytesOf(dtype);
      const note = device === 'sim' ? SIM_NOTE : '';
      const base = { shape: label(s), dtype, backend: device, bytes };
      records.push(await timeCase({ ...base, op: `${s.op} ${s.layout}` }, device, () => run(plain).dispose(), { ceilings }));
      records[records.length - 1].note = note;
      records.push(await timeCase({ ...base, op: `${s.op} ${s.layout} backward` }, device, () => y.gradNode!.backward(g)[0]!.dispose(), { ceilings }));
      records[records.length - 1].note = note;
      for (const t of [x, y, g, plain]) t.dispose();
    }
  }
  return records;
}

/** PyTorch on the same shapes (bench/torch_interpolate.py), when /usr/bin/python3 has torch for that device. */
function torchRecords(device: 'cpu' | 'cuda', dtypes: DType[]): BenchRecord[] {
  const script = path.join(__dirname, '..', '..', 'bench', 'torch_interpolate.py');
  const input = JSON.stringify({ device, dtypes, shapes: SHAPES.map((s) => ({ ...s, label: label(s) })) });
  const r = spawnSync('/usr/bin/python3', [script], { input, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    console.log(`torch-${device}: not measured (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`);
    return [];
  }
  return JSON.parse(r.stdout) as BenchRecord[];
}

async function main(): Promise<void> {
  // AM_RADIO_BENCH_DEVICES=cpu,sim and AM_RADIO_BENCH_DTYPES=f32 narrow the run.
  const devices = benchDevices();
  const dtypes = benchDtypes();
  const records: BenchRecord[] = [];
  for (const device of devices) {
    records.push(...(await benchDevice(device, dtypes)));
    if (device === 'cpu' || device === 'cuda') records.push(...torchRecords(device, dtypes));
  }
  printTable('interpolate (GB/s = (input + output bytes) / median time; % of floor = against the copy row)', records);
  console.log(`results: ${writeResults('interpolate', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
