// GEMM throughput: linear at RADIO shapes. On cpu, the built-in kernel against the host BLAS (OpenBLAS's own sgemm).
import { debug, ops, randn } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, printTable, timeCase, writeResults } from './harness';

// ViT-B/16 at 224 px, batch 8 and batch 1: tokens × (in → out) of qkv, proj, mlp fc1, fc2, and the patch embedding;
// SigLIP's MLP (27² patches, 1152 → 4304); and the qkv of ViT-H/16 at 432 px (27² patches + 8 prefix tokens), batch 8,
// where the large tensor-core tile is chosen.
const SHAPES: Array<[string, number, number, number]> = [
  ['qkv', 8 * 197, 768, 3 * 768],
  ['proj', 8 * 197, 768, 768],
  ['fc1', 8 * 197, 768, 3072],
  ['fc2', 8 * 197, 3072, 768],
  ['qkv batch 1', 197, 768, 3 * 768],
  ['proj batch 1', 197, 768, 768],
  ['fc1 batch 1', 197, 768, 3072],
  ['fc2 batch 1', 197, 3072, 768],
  ['SigLIP fc1', 729, 1152, 4304],
  ['patch-embed', 8 * 196, 3 * 16 * 16, 768],
  ['qkv ViT-H 432px', 8 * 737, 1280, 3 * 1280],
];

async function main(): Promise<void> {
  const devices = benchDevices();
  const records: BenchRecord[] = [];
  const blas = debug.cpuBlas();
  for (const device of devices) {
    const scale = device === 'sim' ? 1 / 64 : 1;
    for (const dtype of benchDtypes()) {
      // cpu: the built-in GEMM and, for f32 (it cannot read bf16, which always runs built-in), the host BLAS; cuda
      // bf16: the tile chosen by size, then each tile forced.
      const modes: Array<[string, () => void]> =
        device === 'cpu'
          ? [['built-in', () => debug.useCpuBlas(false)], ...(blas.loaded && dtype === 'f32' ? [[`BLAS ${blas.library}`, () => debug.useCpuBlas(true)] as [string, () => void]] : [])]
          : device === 'cuda' && dtype === 'bf16'
            ? [['', () => debug.gemmTile('auto')], ['small tile', () => debug.gemmTile('small')], ['large tile', () => debug.gemmTile('large')]]
            : [['', () => {}]];
      for (const [name, m0, k, n] of SHAPES) {
        const m = Math.max(1, Math.round(m0 * scale));
        const x = randn([m, k], { seed: 1, device, dtype });
        const w = randn([n, k], { seed: 2, device, dtype });
        const first = records.length;
        for (const [note, select] of modes) {
          select();
          records.push(
            await timeCase(
              { op: note.endsWith('tile') ? `linear ${name} (${note})` : `linear ${name}`, shape: `${m}x${k} · ${n}x${k}ᵀ`, dtype, backend: device, flops: 2 * m * n * k, bytes: (m * k + n * k + m * n) * (dtype === 'f32' ? 4 : 2), torch: { fn: 'linear', args: { m, k, n, dtype } } },
              device,
              () => { ops.linear(x, w).dispose(); },
              { minRepeats: 3, minTimeMs: 200 },
            ).then((r) => ({ ...r, note: note + (device === 'sim' ? ' (1/64 of the rows)' : '') })),
          );
        }
        // cpu: the built-in kernel's speed as a fraction of the host BLAS's on the same case, in the same run.
        const [builtIn, host] = records.slice(first);
        if (device === 'cpu' && host && builtIn.gflopPerS && host.gflopPerS) {
          const ratio = builtIn.gflopPerS / host.gflopPerS;
          builtIn.details = { ...builtIn.details, vsBlas: ratio, kernel: debug.cpuGemmKernelName() };
          builtIn.note = `${builtIn.note} (${debug.cpuGemmKernelName()}), ${ratio.toFixed(2)}x BLAS`;
        }
        debug.useCpuBlas(false);
        debug.gemmTile('auto');
        x.dispose();
        w.dispose();
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
