// BatchNorm2d and LayerNorm2d throughput on E-RADIO's NCHW shapes: bytes that must cross memory (x read once, y
// written once; backward reads x and dy and writes dx) over time, per backend, next to the device's measured copy
// bandwidth (the floor) and PyTorch on the same cases (bench/torch_reference.py, on the GPU check).
//   npm run bench -- batchnorm
// Training passes read x more than once (statistics, then normalise), so they sit below the copy row by design:
// % of floor says how far. sim runs batch 1 and an eighth of the channels: it emulates every CUDA thread on the CPU.
import { Device, DType, ops, randn, Tensor, zeros, ones } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, copyCeiling, printTable, timeCase, writeResults } from './harness';

// E-RADIO (xxxtiny at 192x320 and a larger batch): the stem's Conv+BN, a stage's, and a SAM-style neck's LayerNorm2d.
const SHAPES: Array<[number, number, number, number]> = [
  [32, 32, 96, 160],
  [32, 128, 24, 40],
  [32, 256, 12, 20],
];

const bytesOf = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);

function scaled(shape: [number, number, number, number], device: Device): number[] {
  const [n, c, h, w] = shape;
  if (device === 'sim') return [1, Math.max(4, c / 8), h, w];
  return device === 'cpu' ? [Math.max(1, n / 8), c, h, w] : [n, c, h, w];
}

async function benchDevice(device: Device, dtypes: DType[]): Promise<BenchRecord[]> {
  const { ceilings, record } = await copyCeiling(device);
  const records = [record];
  const note = device === 'sim' ? 'sim: batch 1, channels/8' : device === 'cpu' ? 'cpu: batch/8' : '';
  for (const dtype of dtypes) {
    for (const full of SHAPES) {
      const shape = scaled(full, device);
      const [n, c, h, w] = shape;
      const numel = n * c * h * w;
      const io = numel * bytesOf(dtype);
      const label = `[${shape.join(', ')}]`;
      // Parameters and running stats in f32, as mixed precision keeps norms.
      const like = { device, dtype: 'f32' as const };
      const weight = ones([c], { ...like, requiresGrad: true });
      const bias = zeros([c], { ...like, requiresGrad: true });
      const runningMean = zeros([c], like);
      const runningVar = ones([c], like);
      const x = randn(shape, { seed: 4, device, dtype, requiresGrad: true });
      const plain = x.detach();
      const g = randn(shape, { seed: 5, device, dtype });
      const torchArgs = { n, c, h, w, dtype };
      const time = async (op: string, bytes: number, fn: string, run: () => void) => {
        const r = await timeCase({ op, shape: label, dtype, backend: device, bytes, torch: { fn, args: torchArgs } }, device, run, { ceilings });
        r.note = note;
        records.push(r);
      };
      const bn = (t: Tensor, training: boolean) => ops.batchNorm2d(t, { weight, bias, runningMean, runningVar, training });
      await time('batchNorm2d eval', 2 * io, 'batch_norm_eval', () => bn(plain, false).dispose());
      await time('batchNorm2d training', 2 * io, 'batch_norm_train', () => bn(plain, true).dispose());
      const yt = bn(x, true);
      await time('batchNorm2d training backward', 3 * io, 'batch_norm_train_backward', () => yt.gradNode!.backward(g).forEach((t) => t?.dispose()));
      await time('layerNorm2d', 2 * io, 'layer_norm2d', () => ops.layerNorm2d(plain, weight, bias).dispose());
      const yl = ops.layerNorm2d(x, weight, bias);
      await time('layerNorm2d backward', 3 * io, 'layer_norm2d_backward', () => yl.gradNode!.backward(g).forEach((t) => t?.dispose()));
      for (const t of [x, plain, g, yt, yl, weight, bias, runningMean, runningVar]) t.dispose();
    }
  }
  return records;
}

async function main(): Promise<void> {
  // AM_RADIO_BENCH_DEVICES=cpu,sim and AM_RADIO_BENCH_DTYPES=f32 narrow the run.
  const records: BenchRecord[] = [];
  for (const device of benchDevices()) records.push(...(await benchDevice(device, benchDtypes())));
  printTable('batchnorm (GB/s = bytes that must move / median time; % of floor = against the copy row)', records);
  console.log(`results: ${writeResults('batchnorm', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
