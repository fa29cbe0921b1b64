// conv2d throughput at E-RADIO-L's shapes (512 px), beside the GEMM of the same size: conv is im2col + that
// GEMM + an epilogue, so the GEMM's rate is its ceiling and the ratio says what the column and layout passes cost.
// The cuda records carry a torch spec, so the GPU check times F.conv2d (cuDNN) beside them. On cuda the backward's
// two products (input and weight gradient, bf16: the implicit GEMMs) are timed too, beside torch.nn.grad's; sim
// leaves them out: its times say nothing about the GPU.
import { ops, randn } from '../ts';
import { emptyTensor } from '../ts/tensor';
import { native } from '../ts/native';
import type { ConvGeometry } from '../ts/native';
import { BenchRecord, benchDevices, benchDtypes, printTable, timeCase, writeResults } from './harness';

// [name, C, H (= W), O, k, stride, groups] at 512 px: the two stem convs, a C2f 3x3 bottleneck conv and its 1x1
// entry at H/4, the stage-0 downsample, and the neck's depthwise 3x3 at H/16.
const SHAPES: Array<[string, number, number, number, number, number, number]> = [
  ['stem conv 1', 3, 512, 64, 3, 2, 1],
  ['stem conv 2', 64, 256, 192, 3, 2, 1],
  ['C2f 1x1', 192, 128, 192, 1, 1, 1],
  ['C2f 3x3', 96, 128, 96, 3, 1, 1],
  ['downsample', 192, 128, 384, 3, 2, 1],
  ['neck depthwise 3x3', 768, 32, 768, 3, 1, 768],
];

interface Shape { batch: number; c: number; h: number; o: number; k: number; s: number; p: number; groups: number; ho: number }

// The input and the weight gradient alone, as conv2d's backward queues them (the binding's ops, no autograd):
// each is one product of the forward's FLOPs. The depthwise shape runs its direct kernels.
async function backwardRecords(name: string, shape: string, device: 'cuda', dtype: 'f32' | 'bf16', x: ReturnType<typeof randn>,
                               w: ReturnType<typeof randn>, d: Shape, flops: number) {
  const g: ConvGeometry = { batch: d.batch, inC: d.c, inH: d.h, inW: d.h, outC: d.o, outH: d.ho, outW: d.ho, groups: d.groups,
    kernel: [d.k, d.k], stride: [d.s, d.s], padding: [d.p, d.p], dilation: [1, 1] };
  const dy = randn([d.batch, d.o, d.ho, d.ho], { seed: 6, device, dtype });
  const size = dtype === 'f32' ? 4 : 2;
  const torch = { batch: d.batch, c: d.c, h: d.h, o: d.o, k: d.k, stride: d.s, padding: d.p, groups: d.groups, dtype };
  const op = 'conv2d backward';
  const runs: Array<[string, string, () => void]> = [
    ['input gradient', 'conv2d_backward_input', () => {
      const dx = emptyTensor(x.shape, dtype, device);
      native.conv2dBackwardInput({ dx: dx.native(op), dy: dy.native(op), weight: w.native(op), dtype, geometry: g });
      dx.dispose();
    }],
    ['weight gradient', 'conv2d_backward_weight', () => {
      const dw = emptyTensor(w.shape, dtype, device);
      native.conv2dBackwardWeight({ dw: dw.native(op), x: x.native(op), dy: dy.native(op), dtype, geometry: g });
      dw.dispose();
    }],
  ];
  const out: BenchRecord[] = [];
  for (const [what, fn, run] of runs)
    out.push(await timeCase({ op: `  ${name} ${what}`, shape, dtype, backend: device, flops, bytes: (x.numel + w.numel + dy.numel) * size,
      torch: { fn, args: torch } }, device, run, { minRepeats: 3, minTimeMs: 200 }));
  dy.dispose();
  return out;
}

async function main(): Promise<void> {
  const records: BenchRecord[] = [];
  for (const device of benchDevices()) {
    // sim runs the same kernels on the CPU emulator: 1/8 of each side.
    const shrink = device === 'sim' ? 8 : 1;
    const batch = device === 'cuda' ? 32 : 1;
    for (const dtype of benchDtypes()) {
      for (const [name, c, h0, o, k, s, groups] of SHAPES) {
        const h = Math.max(k, Math.round(h0 / shrink));
        const p = (k - 1) >> 1;
        const ho = Math.floor((h + 2 * p - k) / s) + 1;
        const x = randn([batch, c, h, h], { seed: 1, device, dtype });
        const w = randn([o, c / groups, k, k], { seed: 2, device, dtype });
        const b = randn([o], { seed: 3, device, dtype });
        const kk = (c / groups) * k * k;
        const q = batch * ho * ho;
        const flops = 2 * o * kk * q;
        const size = dtype === 'f32' ? 4 : 2;
        const shape = `${batch}x${c}x${h}x${h} ⋆ ${o}x${c / groups}x${k}x${k} s${s}${groups > 1 ? ` g${groups}` : ''}`;
        records.push(
          await timeCase(
            { op: `conv2d ${name}`, shape, dtype, backend: device, flops, bytes: (x.numel + w.numel + o * q) * size,
              torch: { fn: 'conv2d', args: { batch, c, h, o, k, stride: s, padding: p, groups, dtype } } },
            device,
            () => { ops.conv2d(x, w, b, { stride: s, padding: p, groups, activation: 'silu' }).dispose(); },
            { minRepeats: 3, minTimeMs: 200 },
          ),
        );
        // The product alone (one group's worth × groups), as linear computes it: the ceiling conv is measured against.
        const a = randn([o / groups, kk], { seed: 4, device, dtype });
        const bt = randn([q, kk], { seed: 5, device, dtype });
        const gemm = await timeCase(
          { op: `  gemm of ${name}`, shape: `${groups} × ${o / groups}x${kk} · ${kk}x${q}`, dtype, backend: device, flops },
          device,
          () => { for (let g = 0; g < groups; g++) ops.linear(a, bt).dispose(); },
          { minRepeats: 3, minTimeMs: 200 },
        );
        const conv = records[records.length - 1];
        conv.note = `${((100 * gemm.medianMs) / conv.medianMs).toFixed(0)}% of the GEMM rate${device === 'sim' ? ', 1/8 of each side' : ''}`;
        records.push(gemm);
        if (device === 'cuda') records.push(...(await backwardRecords(name, shape, device, dtype, x, w, { batch, c, h, o, k, s, p, groups, ho }, flops)));
        for (const t of [x, w, b, a, bt]) t.dispose();
      }
    }
  }
  printTable('conv', records);
  console.log(`results: ${writeResults('conv', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
