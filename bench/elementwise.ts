// Elementwise and reduction throughput: bytes moved over time, per backend. The rows a ViT block runs besides its
// GEMMs (LayerNorm, the standalone GELU of the adaptor heads) at ViT-B's 224 px batch-8 shapes are reported against
// the bandwidth the residual add of the same shape reaches in the same run (the floor: each of them reads its input
// once and writes its output once, as the add does, and at these sizes all three run from the caches, where the
// 16M-element add's DRAM bandwidth would be too low a ceiling).
import { ops, randn } from '../ts';
import { BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

async function main(): Promise<void> {
  const devices = benchDevices();
  const records: BenchRecord[] = [];
  for (const device of devices) {
    const n = device === 'sim' ? 1 << 18 : 1 << 24;
    const a = randn([n], { seed: 1, device });
    const b = randn([n], { seed: 2, device });
    const add = await timeCase({ op: 'add', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 12 * n, torch: { fn: 'add', args: { n, dtype: 'f32' } } }, device, () => { a.add(b).dispose(); });
    records.push(add);
    // ViT-B at 224 px, batch 8: 1576 tokens of 768 (the blocks), 1568 of 1536 (the adaptor heads' hidden width).
    const rows = device === 'sim' ? 64 : 1576;
    for (const cols of [768, 1536]) {
      const x = randn([rows, cols], { seed: 4, device });
      const y = randn([rows, cols], { seed: 5, device });
      const w = randn([cols], { seed: 6, device });
      const bias = randn([cols], { seed: 7, device });
      const shape = `[${rows}, ${cols}]`;
      const bytes = 8 * rows * cols;
      const residual = await timeCase({ op: 'residual add', shape, dtype: 'f32', backend: device, bytes: 12 * rows * cols }, device, () => { x.add(y).dispose(); });
      records.push(residual);
      const ceilings = { bandwidth: residual.gbPerS! * 1e9 };
      const layerNormTorch = { fn: 'layer_norm', args: { rows, cols, dtype: 'f32' } };
      records.push(await timeCase({ op: 'layerNorm', shape, dtype: 'f32', backend: device, bytes, torch: layerNormTorch }, device, () => { ops.layerNorm(x, w, bias, 1e-6).dispose(); }, { ceilings }));
      const geluTorch = { fn: 'gelu', args: { n: rows * cols, dtype: 'f32' } };
      records.push(await timeCase({ op: 'gelu', shape, dtype: 'f32', backend: device, bytes, torch: geluTorch }, device, () => { ops.gelu(x).dispose(); }, { ceilings }));
      for (const t of [x, y, w, bias]) t.dispose();
    }
    records.push(await timeCase({ op: 'sum', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 4 * n, torch: { fn: 'sum', args: { n, dtype: 'f32' } } }, device, () => { a.sum().dispose(); }));
    records.push(await timeCase({ op: 'randn', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 4 * n, torch: { fn: 'randn', args: { n, dtype: 'f32' } } }, device, () => { randn([n], { seed: 3, device }).dispose(); }));
  }
  printTable('elementwise', records);
  console.log(`results: ${writeResults('elementwise', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
