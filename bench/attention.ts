// Fused attention throughput at RADIO shapes: ViT-B (D 768, 12 heads, head dim 64) with 16×16 windows at 768 px (48×48
// patches, 9 windows of 256 tokens) and global attention at 224 px (197 tokens) and 512 px (1025 tokens); ViT-L at
// 512 px (16 heads × 64) and SigLIP's 27×27 grid (729 tokens, 16 heads × 72).
// FLOPs: 4·B·heads·windows·L²·headDim forward, 2.5× that backward (timed as forward + backward, so 3.5×).
// Beside each shape, its qkv projection through linear ([B·T, D] · [3D, D]ᵀ, the GEMM the attention sits behind):
// the rate attention is judged against, measured in the same run.
// SAM-B's image encoder (ViTDet, head dim 64, 12 heads) with its decomposed relative position terms (relPos), each
// beside the same attention without them: a global block over the 64×64 grid (T = 4096, batch 1) and a windowed
// block, whose 14×14 windows SAM partitions into the batch first (25 windows of 196 tokens over the padded 70×70 grid).
// AM_RADIO_BENCH_CASES=224,SigLIP runs only the cases whose name contains one of the words.
import { ops, randn } from '../ts';
import type { Device, Tensor } from '../ts';
import type { AttentionOptions } from '../ts/ops';
import { BenchCase, BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

interface Shape {
  name: string;
  tokens: number;
  prefix: number;
  heads: number;
  headDim: number;
  /** Batch on cpu and on the GPU. */
  batch: { cpu: number; gpu: number };
  window?: { size: number; gridH: number; gridW: number };
}

const SHAPES: Shape[] = [
  { name: 'window 16x16 @768px', tokens: 1 + 48 * 48, prefix: 1, heads: 12, headDim: 64, batch: { cpu: 1, gpu: 8 }, window: { size: 16, gridH: 48, gridW: 48 } },
  { name: 'global @224px', tokens: 1 + 14 * 14, prefix: 1, heads: 12, headDim: 64, batch: { cpu: 8, gpu: 8 } },
  { name: 'global @512px', tokens: 1 + 32 * 32, prefix: 1, heads: 12, headDim: 64, batch: { cpu: 1, gpu: 8 } },
  { name: 'ViT-L global @512px', tokens: 1 + 32 * 32, prefix: 1, heads: 16, headDim: 64, batch: { cpu: 1, gpu: 8 } },
  { name: 'SigLIP global 27x27', tokens: 27 * 27, prefix: 0, heads: 16, headDim: 72, batch: { cpu: 1, gpu: 8 } },
];

// SAM-B's heads (the SAM cases below).
const HEADS = 12;
const HEAD_DIM = 64;
const D = HEADS * HEAD_DIM;

const wantedCases = process.env.AM_RADIO_BENCH_CASES?.split(',').map((s) => s.trim()).filter(Boolean);
const wanted = (name: string) => !wantedCases || wantedCases.some((w) => name.includes(w));

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
        if (!wanted(s.name)) continue;
        const batch = device === 'cpu' ? s.batch.cpu : s.batch.gpu;
        const dim = s.heads * s.headDim;
        const L = s.window ? s.window.size ** 2 : s.tokens;
        const windows = s.window ? (s.window.gridH / s.window.size) * (s.window.gridW / s.window.size) : 1;
        const fwdFlops = 4 * batch * s.heads * windows * L * L * s.headDim;
        const shape = `B${batch} T${s.tokens} ${s.heads}x${s.headDim}` + (s.window ? ` win ${s.window.size}² x${windows}` : '');
        const torch = { fn: 'sdpa', args: { batch, heads: s.heads, headDim: s.headDim, windows, length: L, dtype: 'bf16' } };
        const qkv = randn([batch, s.tokens, 3 * dim], { seed: 1, device, dtype });
        const opts = { heads: s.heads, prefix: s.prefix, window: s.window };
        const quick = { minRepeats: device === 'cpu' ? 2 : 5, minTimeMs: device === 'cpu' ? 100 : 300, warmup: 1 };
        const x = randn([batch * s.tokens, dim], { seed: 6, device, dtype });
        const wqkv = randn([3 * dim, dim], { seed: 7, device, dtype });
        const [m, n, k] = [batch * s.tokens, 3 * dim, dim];
        records.push(
          await timeCase({ op: `qkv linear (reference) ${s.name}`, shape: `${m}x${k} · ${n}x${k}ᵀ`, dtype, backend: device, flops: 2 * m * n * k, torch: { fn: 'linear', args: { m, k, n, dtype } } }, device, () => {
            ops.linear(x, wqkv).dispose();
          }, quick),
        );
        for (const t of [x, wqkv]) t.dispose();
        records.push(
          await timeCase({ op: `attention fwd ${s.name}`, shape, dtype, backend: device, flops: fwdFlops, torch }, device, () => {
            ops.attention(qkv, opts).dispose();
          }, quick),
        );
        const leaf = randn([batch, s.tokens, 3 * dim], { seed: 2, device, dtype, requiresGrad: true });
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
        for (const t of [qkv, leaf]) t.dispose();
      }
      for (const s of SAM_SHAPES) {
        if (!wanted(s.name)) continue;
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
