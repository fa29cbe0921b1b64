// Token assembly throughput at RADIO's shapes (ViT-B/16 at 768 px and ViT-H/16 at 1024 px, batch 8): bytes moved
// (inputs read once + outputs written once) over time, per backend, next to the device's measured copy bandwidth.
// All three ops are pure data movement, so the copy row is their floor.
//   npm run bench -- tokens
// sim runs batch 1 at a quarter of the resolution and width / 16: it emulates every CUDA thread on the CPU.
import { Device, DType, ops, randn, tensor, Tensor } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, Ceilings, copyCeiling, printTable, timeCase, writeResults } from './harness';

interface Shape {
  name: string;
  batch: number;
  image: number;
  patch: number;
  dim: number;
  prefix: number;
}

const SHAPES: Shape[] = [
  { name: 'ViT-B/16 768px', batch: 8, image: 768, patch: 16, dim: 768, prefix: 8 },
  { name: 'ViT-H/16 1024px', batch: 8, image: 1024, patch: 16, dim: 1280, prefix: 8 },
];

const bytesOf = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);

function scaled(s: Shape, device: Device): Shape {
  return device === 'sim' ? { ...s, batch: 1, image: s.image / 4, dim: s.dim / 16 } : s;
}

async function benchShape(full: Shape, device: Device, dtype: DType, ceilings: Ceilings): Promise<BenchRecord[]> {
  const s = scaled(full, device);
  const { batch: B, image, patch: P, dim: D, prefix: S } = s;
  const N = (image / P) ** 2;
  const T = S + N;
  const el = bytesOf(dtype);
  const note = device === 'sim' ? 'sim: batch 1, image/4, width/16' : '';
  const images = randn([B, 3, image, image], { seed: 1, device });
  const mean = tensor([0.48, 0.46, 0.41], [3], { device });
  const std = tensor([0.27, 0.26, 0.28], [3], { device });
  const prefix = randn([S, D], { seed: 2, device, dtype, requiresGrad: true });
  const patches = randn([B, N, D], { seed: 3, device, dtype, requiresGrad: true });
  const pos = randn([1, N, D], { seed: 4, device, dtype, requiresGrad: true });
  const x = ops.assembleTokens(prefix, patches, pos);
  const g = randn(x.shape, { seed: 5, device, dtype });
  const plain = [prefix.detach(), patches.detach(), pos.detach()] as const;
  const shape = `${s.name} [${B}, ${S}+${N}, ${D}]`;
  const records: BenchRecord[] = [];
  const time = async (op: string, bytes: number, run: () => void) => {
    const r = await timeCase({ op, shape, dtype, backend: device, bytes }, device, run, { ceilings });
    r.note = note;
    records.push(r);
  };
  const imageBytes = B * 3 * image * image * 4;
  await time('patchify (f32 image)', imageBytes + (imageBytes / 4) * el, () => ops.patchify(images, { patch: P, mean, std, dtype }).dispose());
  await time('assembleTokens', (B * N * D + N * D + S * D + B * T * D) * el, () => ops.assembleTokens(...plain).dispose());
  await time('assembleTokens backward', (2 * B * T * D + N * D + S * D) * el, () => x.gradNode!.backward(g).forEach((t) => t?.dispose()));
  await time('sliceRows (features)', 2 * B * N * D * el, () => ops.sliceRows(plain[1], 0, N).dispose());
  for (const t of [images, mean, std, prefix, patches, pos, x, g, ...plain] as Tensor[]) t.dispose();
  return records;
}

async function main(): Promise<void> {
  // AM_RADIO_BENCH_DEVICES=cpu,sim and AM_RADIO_BENCH_DTYPES=f32 narrow the run.
  const devices = benchDevices();
  const dtypes = benchDtypes();
  const records: BenchRecord[] = [];
  for (const device of devices) {
    const { ceilings, record } = await copyCeiling(device);
    records.push(record);
    for (const dtype of dtypes) for (const s of SHAPES) records.push(...(await benchShape(s, device, dtype, ceilings)));
  }
  printTable('tokens (GB/s = (input + output bytes) / median time; % of floor = against the copy row)', records);
  console.log(`results: ${writeResults('tokens', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
