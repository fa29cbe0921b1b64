// Layout op throughput on E-RADIO's shapes (eradio at 512²): bytes moved (input read once + output written once)
// over time, forward and backward, per backend, next to the device's plain copy bandwidth (the floor of a pure
// data movement: every op here is one strided copy or one pass of a reduction).
//   npm run bench -- layout
// Batch 8 on cuda, 1 on cpu; sim runs batch 1 with channels / 16, since it emulates every CUDA thread on the CPU.
import { Device, DType, ops, randn, Tensor } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, copyCeiling, printTable, timeCase, writeResults } from './harness';

interface Case {
  op: string;
  /** Input shapes at batch b with channel count scaled by c (sim). */
  inputs: (b: number, c: (n: number) => number) => number[][];
  run: (xs: Tensor[]) => Tensor;
}

const CASES: Case[] = [
  // Stage 2/3 maps between the convs (NCHW) and the window blocks (NHWC).
  { op: 'permute NCHW->NHWC', inputs: (b, c) => [[b, c(768), 32, 32]], run: ([x]) => ops.permute(x, [0, 2, 3, 1]) },
  { op: 'permute NHWC->NCHW', inputs: (b, c) => [[b, 32, 32, c(768)]], run: ([x]) => ops.permute(x, [0, 3, 1, 2]) },
  // C2f in stage 0: cat of 2 + n = 5 maps of h = 96 channels at 128², and the chunk of the first 1x1 conv.
  { op: 'cat dim 1 (5 maps)', inputs: (b, c) => Array.from({ length: 5 }, () => [b, c(96), 128, 128]), run: (xs) => ops.cat(xs, 1) },
  { op: 'chunk dim 1 (half)', inputs: (b, c) => [[b, c(192), 128, 128]], run: ([x]) => ops.chunk(x, 2, 1)[1] },
  // Padding a map to the window multiple and the GRA block's pad back to the skip's size.
  { op: 'pad2d zero', inputs: (b, c) => [[b, c(768), 30, 30]], run: ([x]) => ops.pad2d(x, [0, 2, 0, 2]) },
  { op: 'pad2d reflect', inputs: (b, c) => [[b, c(768), 30, 30]], run: ([x]) => ops.pad2d(x, [0, 2, 0, 2], 'reflect') },
  { op: 'windowPartition ws16', inputs: (b, c) => [[b, 32, 32, c(768)]], run: ([x]) => ops.windowPartition(x, 16).tokens },
  { op: 'windowPartition ws16 padded', inputs: (b, c) => [[b, 30, 30, c(768)]], run: ([x]) => ops.windowPartition(x, 16).tokens },
  { op: 'windowReverse ws16', inputs: (b, c) => [[b * 4, 256, c(768)]], run: ([t]) => ops.windowReverse(t, 16, 32, 32, 32, 32) },
  // RADIO's E-RADIO summary: features [B, 32², 1536] averaged over the tokens; and a last-dim sum.
  { op: 'mean dim 1', inputs: (b, c) => [[b, 1024, c(1536)]], run: ([x]) => ops.mean(x, 1) },
  { op: 'sum dim -1', inputs: (b, c) => [[b * 1024, c(768)]], run: ([x]) => ops.sum(x, -1) },
];

const bytesOf = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

async function benchDevice(device: Device, dtypes: DType[]): Promise<BenchRecord[]> {
  const { ceilings, record } = await copyCeiling(device);
  const records = [record];
  const batch = device === 'cuda' ? 8 : 1;
  const channels = (n: number) => (device === 'sim' ? Math.max(8, n / 16) : n);
  const note = device === 'sim' ? 'sim: batch 1, channels/16' : '';
  for (const dtype of dtypes) {
    for (const c of CASES) {
      const shapes = c.inputs(batch, channels);
      const xs = shapes.map((s, i) => randn(s, { seed: 10 + i, device, dtype, requiresGrad: true }));
      const plain = xs.map((x) => x.detach());
      const y = c.run(xs);
      const g = randn(y.shape, { seed: 5, device, dtype });
      const inElems = shapes.reduce((a, s) => a + numel(s), 0);
      const bytes = (inElems + y.numel) * bytesOf(dtype);
      const base = { shape: shapes.length > 1 ? `${shapes.length} x [${shapes[0].join(', ')}]` : `[${shapes[0].join(', ')}]`, dtype, backend: device, bytes, note };
      records.push({ ...(await timeCase({ ...base, op: c.op }, device, () => c.run(plain).dispose(), { ceilings })), note });
      records.push({
        ...(await timeCase({ ...base, op: `${c.op} backward` }, device, () => y.gradNode!.backward(g).forEach((t) => t?.dispose()), { ceilings })),
        note,
      });
      for (const t of [...xs, ...plain, y, g]) t.dispose();
    }
  }
  return records;
}

async function main(): Promise<void> {
  // AM_RADIO_BENCH_DEVICES=cpu,sim and AM_RADIO_BENCH_DTYPES=f32 narrow the run.
  const records: BenchRecord[] = [];
  for (const device of benchDevices()) records.push(...(await benchDevice(device, benchDtypes())));
  printTable('layout (GB/s = (input + output bytes) / median time; % of floor = against the copy row)', records);
  console.log(`results: ${writeResults('layout', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
