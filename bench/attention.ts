// Fused attention throughput at RADIO ViT-B shapes (D 768, 12 heads, head dim 64): 16×16 windows at 768 px (48×48
// patches, 9 windows of 256 tokens) and global attention at 224 px (197 tokens) and 512 px (1025 tokens).
// FLOPs: 4·B·heads·windows·L²·headDim forward, 2.5× that backward (timed as forward + backward, so 3.5×).
import { ops, randn } from '../ts';
import { BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

interface Shape {
  name: string;
  tokens: number;
  prefix: number;
  window?: { size: number; gridH: number; gridW: number };
}

const HEADS = 12;
const HEAD_DIM = 64;
const D = HEADS * HEAD_DIM;
const SHAPES: Shape[] = [
  { name: 'window 16x16 @768px', tokens: 1 + 48 * 48, prefix: 1, window: { size: 16, gridH: 48, gridW: 48 } },
  { name: 'global @224px', tokens: 1 + 14 * 14, prefix: 1 },
  { name: 'global @512px', tokens: 1 + 32 * 32, prefix: 1 },
];

async function main(): Promise<void> {
  // sim runs each CUDA thread as a fiber: far too slow at these shapes, so it is left out.
  const devices = benchDevices(['sim']);
  const records: BenchRecord[] = [];
  for (const device of devices) {
    const batch = device === 'cpu' ? 1 : 8;
    const dtypes = device === 'cpu' ? (['f32'] as const) : (['f32', 'bf16'] as const);
    for (const dtype of dtypes) {
      for (const s of SHAPES) {
        const L = s.window ? s.window.size ** 2 : s.tokens;
        const windows = s.window ? (s.window.gridH / s.window.size) * (s.window.gridW / s.window.size) : 1;
        const fwdFlops = 4 * batch * HEADS * windows * L * L * HEAD_DIM;
        const shape = `B${batch} T${s.tokens} ${HEADS}x${HEAD_DIM}` + (s.window ? ` win ${s.window.size}² x${windows}` : '');
        const torch = { fn: 'sdpa', args: { batch, heads: HEADS, headDim: HEAD_DIM, windows, length: L, dtype: 'bf16' } };
        const qkv = randn([batch, s.tokens, 3 * D], { seed: 1, device, dtype });
        const opts = { heads: HEADS, prefix: s.prefix, window: s.window };
        const quick = { minRepeats: device === 'cpu' ? 2 : 5, minTimeMs: device === 'cpu' ? 100 : 300, warmup: 1 };
        records.push(
          await timeCase({ op: `attention fwd ${s.name}`, shape, dtype, backend: device, flops: fwdFlops, torch }, device, () => {
            ops.attention(qkv, opts).dispose();
          }, quick),
        );
        const leaf = randn([batch, s.tokens, 3 * D], { seed: 2, device, dtype, requiresGrad: true });
        records.push(
          await timeCase(
            { op: `attention fwd+bwd ${s.name}`, shape, dtype, backend: device, flops: 3.5 * fwdFlops, torch: { fn: 'sdpa', args: { ...torch.args, backward: true } } },
            device,
            () => {
              const y = ops.attention(leaf, opts);
              const loss = y.sum();
              loss.backward();
              loss.dispose();
              y.dispose();
              leaf.grad?.dispose();
              leaf.grad = null;
            },
            quick,
          ),
        );
      }
    }
  }
  printTable('attention', records);
  console.log(`results: ${writeResults('attention', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
