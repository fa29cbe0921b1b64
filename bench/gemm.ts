// GEMM throughput: linear at RADIO shapes. On cpu, the built-in kernel against the host BLAS (OpenBLAS's own sgemm).
import { debug, ops, randn } from '../ts';
import { BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

// ViT-B/16 at 224 px, batch 8: tokens × (in → out) of qkv, proj, mlp fc1, fc2, and the patch embedding.
const SHAPES: Array<[string, number, number, number]> = [
  ['qkv', 8 * 197, 768, 3 * 768],
  ['proj', 8 * 197, 768, 768],
  ['fc1', 8 * 197, 768, 3072],
  ['fc2', 8 * 197, 3072, 768],
  ['patch-embed', 8 * 196, 3 * 16 * 16, 768],
];

async function main(): Promise<void> {
  const devices = benchDevices();
  const records: BenchRecord[] = [];
  const blas = debug.cpuBlas();
  for (const device of devices) {
    const scale = device === 'sim' ? 1 / 64 : 1;
    const modes: Array<[string, boolean]> = device === 'cpu' ? [['built-in', false], ...(blas.loaded ? [[`BLAS ${blas.library}`, true] as [string, boolean]] : [])] : [['', true]];
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const [name, m0, k, n] of SHAPES) {
        const m = Math.max(1, Math.round(m0 * scale));
        const x = randn([m, k], { seed: 1, device, dtype });
        const w = randn([n, k], { seed: 2, device, dtype });
        for (const [note, useBlas] of modes) {
          debug.useCpuBlas(useBlas);
          records.push(
            await timeCase(
              { op: `linear ${name}`, shape: `${m}x${k} · ${n}x${k}ᵀ`, dtype, backend: device, flops: 2 * m * n * k, bytes: (m * k + n * k + m * n) * (dtype === 'f32' ? 4 : 2), torch: { fn: 'linear', args: { m, k, n, dtype } } },
              device,
              () => { ops.linear(x, w).dispose(); },
              { minRepeats: 3, minTimeMs: 200 },
            ).then((r) => ({ ...r, note: note + (device === 'sim' ? ' (1/64 of the rows)' : '') })),
          );
        }
        debug.useCpuBlas(true);
      }
    }
  }
  printTable('gemm', records);
  console.log(`results: ${writeResults('gemm', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
