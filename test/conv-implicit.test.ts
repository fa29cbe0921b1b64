// The bf16 implicit-GEMM backward of conv2d on cuda and sim (native/conv/cuda.cu): the input gradient (dy gathered
// through the transposed convolution's index map, one GEMM per stride phase) and the weight gradient (split over the batch's pixels), with the
// implicit forward whose gather they share, against
// the float64 adjoints of bf16-rounded inputs, on odd shapes that hit the tile edges, with outputs poisoned, a check
// that the implicit path ran, and the same bits twice. Finite differences of the reference are test/conv.test.ts's.
import { debug, ops, tensor } from '../ts';
import type { Device } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16 } from './support/reference';
import { conv, refConv, refGrads, taps } from './support/conv-reference';
import type { Conv } from './support/conv-reference';

poisonOutputs();

const f32 = (a: Float64Array) => Float32Array.from(a);
const bf16 = (n: number) => randomArray(n, freshSeed()).map(roundBf16);

// Each gradient is an f32 sum over exactly bf16 products, rounded once to bf16 on store: bf16 keeps 8 significant
// bits, so every element is within 2⁻⁸ of its exact value relatively (half a step, just above a power of two), and
// so is the norm-wise error; the f32 sums add ~1e-6 at these K. (2⁻⁹, the typical size, was exceeded by a 40-element
// output: 4.2346 rounds to 4.25, 3.6e-3 off, and such draws took the norm to 2.1e-3.) The check below against the
// exact values rounded once is the sharp one.
const BF16_ONCE = 2 ** -8 + 1e-5;

const CASES: Array<[string, Conv]> = [
  ['3x3 pad 1, 24 → 40 channels, batch 3, 7x10', conv(3, 24, 7, 10, 40, [3, 3], { padding: [1, 1] })],
  ['1x1, 72 → 8 channels, 5x9 (rows of dy not a multiple of 8)', conv(1, 72, 5, 9, 8, [1, 1])],
  ['5x5 pad 2 stride 2, 8 → 24, 11x9', conv(1, 8, 11, 9, 24, [5, 5], { stride: [2, 2], padding: [2, 2] })],
  ['3x3 stride 2 dilation 2, 40 → 24, batch 3, 13x10', conv(3, 40, 13, 10, 24, [3, 3], { stride: [2, 2], dilation: [2, 2] })],
  ['groups 2, 3x3 pad 1, 16 → 48, 8x8', conv(1, 16, 8, 8, 48, [3, 3], { groups: 2, padding: [1, 1] })],
  ['2x2 stride 2 (E-RADIO downsample), 24 → 72, 8x12', conv(1, 24, 8, 12, 72, [2, 2], { stride: [2, 2] })],
  ['3x3 pad 1, 8 → 8, batch 3, 16x16 (the weight gradient split over blocks)', conv(3, 8, 16, 16, 8, [3, 3], { padding: [1, 1] })],
  ['5x5 pad 2, 8 → 24, batch 3, 15x13 (split, a split boundary inside an image, rows not a multiple of 8)', conv(3, 8, 15, 13, 24, [5, 5], { padding: [2, 2] })],
  ['3x3 pad 2 dilation 2, 24 → 24, batch 1, 6x11', conv(1, 24, 6, 11, 24, [3, 3], { padding: [2, 2], dilation: [2, 2] })],
  ['3x2 kernel stride [2, 1] pad [1, 0], groups 4, 24 → 40, 9x7', conv(1, 24, 9, 7, 40, [3, 2], { groups: 4, stride: [2, 1], padding: [1, 0] })],
  // The input gradient's phases (conv.h's DgradPhase): unequal tap counts, dilation coprime to the stride, a phase
  // with no pixels, phase rows a multiple of 8 wide.
  ['5x5 stride 3 pad 1, 8 → 24, 11x13 (phases of 1 and 2 taps)', conv(1, 8, 11, 13, 24, [5, 5], { stride: [3, 3], padding: [1, 1] })],
  ['3x3 stride 2 dilation 3 pad 2, 16 → 16, batch 3, 12x9', conv(3, 16, 12, 9, 16, [3, 3], { stride: [2, 2], padding: [2, 2], dilation: [3, 3] })],
  ['1x3 stride 2 pad [0, 1] on a 1-row input (a phase with no pixels), 8 → 8', conv(1, 8, 1, 9, 8, [1, 3], { stride: [2, 2], padding: [0, 1] })],
  ['3x3 stride 2 pad 1, 8 → 16, 6x32 (phase rows of 16: whole chunks)', conv(1, 8, 6, 32, 16, [3, 3], { stride: [2, 2], padding: [1, 1] })],
  // Rows a multiple of 8 wide with stride 1 along them: the gathers' whole-chunk cp.async (every chunk for 1×1,
  // the aligned tap columns otherwise) beside the element-wise chunks at the edges.
  ['1x1, 24 → 40, batch 3, 4x16 (every gather chunk whole)', conv(3, 24, 4, 16, 40, [1, 1])],
  ['3x3 pad 1, 8 → 24, 5x8', conv(1, 8, 5, 8, 24, [3, 3], { padding: [1, 1] })],
  ['3x3 pad 2 dilation 2, 16 → 24, batch 3, 6x16', conv(3, 16, 6, 16, 24, [3, 3], { padding: [2, 2], dilation: [2, 2] })],
  ['3x3 stride [2, 1] pad 1, 16 → 24, 9x16', conv(1, 16, 9, 16, 24, [3, 3], { stride: [2, 1], padding: [1, 1] })],
];

async function gradients(device: Device, g: Conv, x0: Float64Array, w0: Float64Array, r0: Float64Array) {
  const cg = g.c / g.groups;
  const opts = { device, dtype: 'bf16' as const, requiresGrad: true };
  const x = tensor(f32(x0), [g.n, g.c, g.h, g.w], opts);
  const w = tensor(f32(w0), [g.o, cg, g.kh, g.kw], opts);
  const y = ops.conv2d(x, w, undefined, { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups });
  y.mul(tensor(f32(r0), y.shape, { device, dtype: 'bf16' })).sum().backward();
  return { y: await y.toArray(), dx: await x.grad!.toArray(), dw: await w.grad!.toArray() };
}

describeEachDevice('conv2d implicit-GEMM backward (bf16) on %s', (device) => {
  test.each(CASES)('%s: forward, input and weight gradients within one bf16 rounding, deterministic', async (_, g) => {
    const [ho, wo] = taps(g, () => undefined);
    const x0 = bf16(g.n * g.c * g.h * g.w);
    const w0 = bf16(g.o * (g.c / g.groups) * g.kh * g.kw);
    const r0 = bf16(g.n * g.o * ho * wo);
    const ref = { y: refConv(g, x0, w0), ...refGrads(g, x0, w0, r0) };
    // The forward is implicit when K = Cg·kh·kw is a multiple of 8 (conv.h's implicit_gemm).
    const forward = ((g.c / g.groups) * g.kh * g.kw) % 8 === 0 ? 1 : 0;
    try {
      for (const tile of ['small', 'large'] as const) {
        debug.gemmTile(tile);
        const before = debug.convImplicitCounts();
        const first = await gradients(device, g, x0, w0, r0);
        const after = debug.convImplicitCounts();
        expect(after.backwardInput - before.backwardInput).toBe(1);
        expect(after.backwardWeight - before.backwardWeight).toBe(1);
        expect(after.forward - before.forward).toBe(forward);
        const errs = { tile, y: relativeError(first.y, ref.y), dx: relativeError(first.dx, ref.dx), dw: relativeError(first.dw, ref.dw) };
        expect({ tile, y: errs.y <= BF16_ONCE, dx: errs.dx <= BF16_ONCE, dw: errs.dw <= BF16_ONCE }).toEqual({ tile, y: true, dx: true, dw: true });
        // Closer: against the exact gradient rounded once, only the elements whose f32 sum falls on the other side of
        // a rounding boundary differ (by one bf16 step, 2⁻⁸), so a path that rounded twice (im2col's bf16 products,
        // then col2im's sums) would differ at many elements; one rounding measured 0 to 3e-8 on sim.
        const once = (out: Float32Array, exact: Float64Array) => relativeError(out, exact.map(roundBf16)) <= 2 ** -11;
        expect({ tile, y: !forward || once(first.y, ref.y), dx: once(first.dx, ref.dx), dw: once(first.dw, ref.dw) }).toEqual({ tile, y: true, dx: true, dw: true });
        // Fixed reduction orders (no float atomics; split partials summed in split order): the same bits again.
        const second = await gradients(device, g, x0, w0, r0);
        expect(Array.from(second.y)).toEqual(Array.from(first.y));
        expect(Array.from(second.dx)).toEqual(Array.from(first.dx));
        expect(Array.from(second.dw)).toEqual(Array.from(first.dw));
      }
    } finally {
      debug.gemmTile('auto');
    }
  });

  test('convTranspose2d with bias (its forward is the implicit input gradient), 2x2 stride 2, 24 → 40', async () => {
    // convTranspose2d(x [1, 24, 5, 7], w [24, 40, 2, 2]) is the adjoint of conv g from [1, 40, 10, 14] to x's shape.
    const g = conv(1, 40, 10, 14, 24, [2, 2], { stride: [2, 2] });
    const x0 = bf16(24 * 5 * 7), w0 = bf16(24 * 40 * 4), b0 = bf16(40);
    const before = debug.convImplicitCounts();
    const x = tensor(f32(x0), [1, 24, 5, 7], { device, dtype: 'bf16' });
    const wt = tensor(f32(w0), [24, 40, 2, 2], { device, dtype: 'bf16' });
    const b = tensor(f32(b0), [40], { device, dtype: 'bf16' });
    const y = await ops.convTranspose2d(x, wt, b, { stride: 2 }).toArray();
    expect(debug.convImplicitCounts().backwardInput - before.backwardInput).toBe(1);
    const ref = refGrads(g, new Float64Array(40 * 140), w0, x0).dx.map((v, i) => v + b0[Math.floor(i / 140)]);
    expect(relativeError(y, ref)).toBeLessThanOrEqual(BF16_ONCE);
  });
}, (d) => d !== 'cpu');
