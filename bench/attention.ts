// Fused attention throughput at RADIO ViT-B shapes (D 768, 12 heads, head dim 64): 16×16 windows at 768 px (48×48
// patches, 9 windows of 256 tokens) and global attention at 224 px (197 tokens) and 512 px (1025 tokens).
// FLOPs: 4·B·heads·windows·L²·headDim forward, 2.5× that backward (timed as forward + backward, so 3.5×).
// SAM-B's image encoder (ViTDet, head dim 64, 12 heads) with its decomposed relative position terms (relPos), each
// beside the same attention without them: a global block over the 64×64 grid (T = 4096, batch 1) and a windowed
// block, whose 14×14 windows SAM partitions into the batch first (25 windows of 196 tokens over the padded 70×70 grid).
import { ops, randn } from '../ts';
import type { Device, Tensor } from '../ts';
import type { AttentionOptions } from '../ts/ops';
import { BenchCase, BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

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

interface SamShape {
  name: string;
  batch: number;
  grid: [number, number];
}

const SAM_SHAPES: SamShape[] = [
  { name: 'SAM-B global 64x64', batch: 1, grid: [64, 64] },
  { name: 'SAM-B window 14x14 (25 windows as batch)', batch: 25, grid: [14, 14] },
];

type Quick = { minRepeats: number; minTimeMs: number; warmup: number };

/** Forward, then forward + backward, of attention(qkv, opts) with every leaf of `leaves` taking a gradient. */
async function timeBoth(records: BenchRecord[], c: BenchCase, device: Device, qkv: Tensor, leaves: Tensor[], opts: () => AttentionOptions, quick: Quick) {
  const fwd = opts();
  records.push(await timeCase({ ...c, op: `${c.op} fwd` }, device, () => ops.attention(qkv, fwd).dispose(), quick));
  const withGrad = opts();
  const bwdTorch = c.torch && { ...c.torch, args: { ...c.torch.args, backward: true } };
  records.push(
    await timeCase({ ...c, op: `${c.op} fwd+bwd`, flops: 3.5 * c.flops!, torch: bwdTorch }, device, () => {
      const y = ops.attention(qkv, withGrad);
      const loss = y.sum();
      loss.backward();
      loss.dispose();
      y.dispose();
      for (const t of leaves) {
        t.grad?.dispose();
        t.grad = null;
      }
    }, quick),
  );
}

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
      for (const s of SAM_SHAPES) {
        const T = s.grid[0] * s.grid[1];
        const flops = 4 * s.batch * HEADS * T * T * HEAD_DIM;
        const shape = `B${s.batch} T${T} ${HEADS}x${HEAD_DIM} grid ${s.grid.join('x')}`;
        const qkv = randn([s.batch, T, 3 * D], { seed: 3, device, dtype, requiresGrad: true });
        const h = randn([s.batch, HEADS, T, s.grid[0]], { seed: 4, device, dtype, requiresGrad: true });
        const w = randn([s.batch, HEADS, T, s.grid[1]], { seed: 5, device, dtype, requiresGrad: true });
        const quick = { minRepeats: device === 'cpu' ? 1 : 5, minTimeMs: device === 'cpu' ? 100 : 300, warmup: 1 };
        // PyTorch's SDPA of the same size without the terms: torch_reference.py's sdpa takes no bias, so the relPos
        // records carry no torch spec rather than one that times a different computation.
        const torch = { fn: 'sdpa', args: { batch: s.batch, heads: HEADS, headDim: HEAD_DIM, windows: 1, length: T, dtype: 'bf16' } };
        const base = { shape, dtype, backend: device, flops };
        await timeBoth(records, { ...base, op: `attention ${s.name}`, torch }, device, qkv, [qkv], () => ({ heads: HEADS }), quick);
        await timeBoth(records, { ...base, op: `attention+relPos ${s.name}` }, device, qkv, [qkv, h, w],
          () => ({ heads: HEADS, relPos: { h, w, grid: s.grid } }), quick);
        for (const t of [qkv, h, w]) t.dispose();
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
