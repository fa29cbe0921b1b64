// conv2d and convTranspose2d against float64 references: forward, the fused epilogue, and every gradient (the
// reference's exact adjoint, itself checked by central differences), odd shapes, groups, depthwise, stride,
// padding, dilation, bf16, and the errors.
import { debug, ops, tensor } from '../ts';
import type { DType } from '../ts';
import {
  describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError,
} from './support/reference';
import { conv, refConv, refGrads, taps } from './support/conv-reference';
import type { Conv } from './support/conv-reference';

poisonOutputs();

const f32 = (a: Float64Array) => Float32Array.from(a);
const asF64 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : asF64(a));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const silu = (v: number) => v / (1 + Math.exp(-v));
const siluGrad = (v: number) => {
  const s = 1 / (1 + Math.exp(-v));
  return s * (1 + v * (1 - s));
};

const CASES: Array<[string, Conv]> = [
  ['3x3 pad 1, odd sizes', conv(2, 3, 7, 9, 5, [3, 3], { padding: [1, 1] })],
  ['groups 2, stride [2, 1], pad [1, 0], dilation [1, 2], 3x2 kernel', conv(1, 4, 8, 7, 6, [3, 2], { groups: 2, stride: [2, 1], padding: [1, 0], dilation: [1, 2] })],
  ['depthwise 3x3 (the direct path)', conv(2, 6, 5, 5, 6, [3, 3], { groups: 6, padding: [1, 1] })],
  ['depthwise ×2 channels, stride 2, dilation 2, pad 2, 3x2 kernel (direct)', conv(2, 3, 9, 8, 6, [3, 2], { groups: 3, stride: [2, 2], padding: [2, 2], dilation: [2, 2] })],
  ['1x1', conv(3, 8, 4, 3, 16, [1, 1])],
  ['2x2 stride 2 (E-RADIO downsample)', conv(1, 4, 6, 6, 4, [2, 2], { stride: [2, 2] })],
  ['3x3 stride 2 pad 1 on odd input (E-RADIO stem)', conv(1, 3, 9, 7, 4, [3, 3], { stride: [2, 2], padding: [1, 1] })],
];

describeEachDevice('conv2d on %s', (device) => {
  test.each(CASES)('%s: forward, input, weight and bias gradients match float64', async (_, g) => {
    const cg = g.c / g.groups;
    const x0 = asF64(randomArray(g.n * g.c * g.h * g.w, freshSeed()));
    const w0 = asF64(randomArray(g.o * cg * g.kh * g.kw, freshSeed()));
    const b0 = asF64(randomArray(g.o, freshSeed()));
    const x = tensor(f32(x0), [g.n, g.c, g.h, g.w], { device, requiresGrad: true });
    const w = tensor(f32(w0), [g.o, cg, g.kh, g.kw], { device, requiresGrad: true });
    const b = tensor(f32(b0), [g.o], { device, requiresGrad: true });
    const y = ops.conv2d(x, w, b, { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups });
    const ref = refConv(g, x0, w0, b0);
    expect(y.shape).toEqual([g.n, g.o, ...taps(g, () => undefined)]);
    expect(relativeError(await y.toArray(), ref)).toBeLessThanOrEqual(1e-6);
    const r0 = asF64(randomArray(ref.length, freshSeed()));
    y.mul(tensor(f32(r0), y.shape, { device })).sum().backward();
    const { dx, dw } = refGrads(g, x0, w0, r0);
    expect(relativeError(await x.grad!.toArray(), dx)).toBeLessThanOrEqual(1e-6);
    expect(relativeError(await w.grad!.toArray(), dw)).toBeLessThanOrEqual(1e-6);
    const [ho, wo] = taps(g, () => undefined);
    const db = new Float64Array(g.o);
    r0.forEach((v, i) => (db[Math.floor(i / (ho * wo)) % g.o] += v));
    expect(relativeError(await b.grad!.toArray(), db)).toBeLessThanOrEqual(1e-6);
    // The adjoints are the derivative of the reference itself.
    const loss = (xx: Float64Array, ww: Float64Array) => dot(refConv(g, xx, ww, b0), r0);
    expect(sampledRelativeError(dx, sampledFiniteDifference((v) => loss(v, w0), x0, { seed: freshSeed(), count: 8 }))).toBeLessThan(1e-6);
    expect(sampledRelativeError(dw, sampledFiniteDifference((v) => loss(x0, v), w0, { seed: freshSeed(), count: 8 }))).toBeLessThan(1e-6);
  });

  test('fused SiLU and residual: forward and gradients through the preactivation', async () => {
    const g = conv(2, 4, 5, 6, 6, [3, 3], { padding: [1, 1] });
    const x0 = asF64(randomArray(g.n * g.c * g.h * g.w, freshSeed()));
    const w0 = asF64(randomArray(g.o * g.c * 9, freshSeed(), 0.5));
    const r0 = asF64(randomArray(g.n * g.o * g.h * g.w, freshSeed()));
    const res0 = asF64(randomArray(r0.length, freshSeed()));
    const x = tensor(f32(x0), [g.n, g.c, g.h, g.w], { device, requiresGrad: true });
    const w = tensor(f32(w0), [g.o, g.c, 3, 3], { device, requiresGrad: true });
    const res = tensor(f32(res0), [g.n, g.o, g.h, g.w], { device, requiresGrad: true });
    const y = ops.conv2d(x, w, undefined, { padding: 'same', activation: 'silu', residual: res });
    const pre = refConv(g, x0, w0);
    expect(relativeError(await y.toArray(), pre.map((v, i) => silu(v) + res0[i]))).toBeLessThanOrEqual(1e-6);
    y.mul(tensor(f32(r0), y.shape, { device })).sum().backward();
    const { dx, dw } = refGrads(g, x0, w0, r0.map((v, i) => v * siluGrad(pre[i])));
    expect(relativeError(await x.grad!.toArray(), dx)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(await w.grad!.toArray(), dw)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(await res.grad!.toArray(), r0)).toBe(0);
  });

  // bf16 forward: K = Cg·kh·kw a multiple of 8 takes the implicit GEMM on the tensor-core tile (each tile size
  // forced in turn), otherwise im2col + the GEMM family's product; on cuda and sim the gradients take their
  // implicit GEMMs (test/conv-implicit.test.ts checks those closely), on cpu im2col.
  test.each([
    ['3x3 pad 1, 16 channels (implicit GEMM)', conv(2, 16, 6, 10, 24, [3, 3], { padding: [1, 1] }), ['small', 'large']],
    ['groups 2, stride 2, dilation 2, pad 2, odd sizes (implicit GEMM)', conv(1, 16, 11, 9, 20, [3, 3], { groups: 2, stride: [2, 2], padding: [2, 2], dilation: [2, 2] }), ['small', 'large']],
    ['3x3 stride 2 on 3 channels, K 27 (im2col)', conv(2, 3, 9, 7, 8, [3, 3], { stride: [2, 2], padding: [1, 1] }), ['auto']],
  ] as const)('bf16 %s: forward and gradients within the bf16 rounding of inputs and outputs', async (_, g, tiles) => {
    const cg = g.c / g.groups;
    const x0 = quant(randomArray(g.n * g.c * g.h * g.w, freshSeed()), 'bf16');
    const w0 = quant(randomArray(g.o * cg * 9, freshSeed()), 'bf16');
    const b0 = quant(randomArray(g.o, freshSeed()), 'bf16');
    const ref = refConv(g, x0, w0, b0);
    const r0 = quant(randomArray(ref.length, freshSeed()), 'bf16');
    const opts = { device, dtype: 'bf16' as const, requiresGrad: true };
    const conv2dOpts = { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
    try {
      for (const tile of tiles) {
        debug.gemmTile(tile);
        const x = tensor(f32(x0), [g.n, g.c, g.h, g.w], opts);
        const w = tensor(f32(w0), [g.o, cg, 3, 3], opts);
        const b = tensor(f32(b0), [g.o], opts);
        const y = ops.conv2d(x, w, b, conv2dOpts);
        expect(y.dtype).toBe('bf16');
        // The exact result rounded once is 2⁻⁹ relative; rounding the product before the bias adds (im2col) is as much again.
        expect({ tile, err: relativeError(await y.toArray(), ref) <= 8e-3 }).toEqual({ tile, err: true });
        y.mul(tensor(f32(r0), y.shape, { device, dtype: 'bf16' })).sum().backward();
        const { dx, dw } = refGrads(g, x0, w0, r0);
        expect(relativeError(await x.grad!.toArray(), dx)).toBeLessThanOrEqual(1e-2);
        expect(relativeError(await w.grad!.toArray(), dw)).toBeLessThanOrEqual(1e-2);
      }
    } finally {
      debug.gemmTile('auto');
    }
  });

  test('bf16 depthwise (direct) with fused SiLU: forward and gradients', async () => {
    const g = conv(2, 8, 7, 6, 8, [3, 3], { groups: 8, padding: [1, 1] });
    const x0 = quant(randomArray(g.n * g.c * g.h * g.w, freshSeed()), 'bf16');
    const w0 = quant(randomArray(g.o * 9, freshSeed()), 'bf16');
    const r0 = quant(randomArray(g.n * g.o * g.h * g.w, freshSeed()), 'bf16');
    const opts = { device, dtype: 'bf16' as const, requiresGrad: true };
    const x = tensor(f32(x0), [g.n, g.c, g.h, g.w], opts);
    const w = tensor(f32(w0), [g.o, 1, 3, 3], opts);
    const y = ops.conv2d(x, w, undefined, { padding: 1, groups: 8, activation: 'silu' });
    const pre = refConv(g, x0, w0);
    expect(relativeError(await y.toArray(), pre.map(silu))).toBeLessThanOrEqual(8e-3);
    y.mul(tensor(f32(r0), y.shape, { device, dtype: 'bf16' })).sum().backward();
    const { dx, dw } = refGrads(g, x0, w0, r0.map((v, i) => v * siluGrad(pre[i])));
    expect(relativeError(await x.grad!.toArray(), dx)).toBeLessThanOrEqual(2e-2);
    expect(relativeError(await w.grad!.toArray(), dw)).toBeLessThanOrEqual(2e-2);
  });

  test('bad arguments raise Errors naming the problem', () => {
    const x = tensor(new Float32Array(2 * 4 * 5 * 5), [2, 4, 5, 5], { device });
    const w = tensor(new Float32Array(6 * 4 * 9), [6, 4, 3, 3], { device });
    expect(() => ops.conv2d(tensor(new Float32Array(20), [4, 5, 1], { device }), w)).toThrow('conv2d: input must be 4-D [N, C, H, W], got [4, 5, 1]');
    expect(() => ops.conv2d(x, tensor(new Float32Array(6 * 3 * 9), [6, 3, 3, 3], { device }))).toThrow('expects 3 input channels');
    expect(() => ops.conv2d(x, w, undefined, { groups: 3 })).toThrow('groups 3 must divide both the input channels (4)');
    expect(() => ops.conv2d(x, w, undefined, { stride: 0 })).toThrow('stride must be an integer >= 1');
    expect(() => ops.conv2d(x, w, undefined, { padding: [1, -1] })).toThrow('padding must be an integer >= 0');
    expect(() => ops.conv2d(x, w, undefined, { padding: 'same', stride: 2 })).toThrow("padding 'same' needs stride 1");
    expect(() => ops.conv2d(x, w, undefined, { dilation: 3 })).toThrow('smaller than the dilated kernel 7x7');
    expect(() => ops.conv2d(x, w, tensor(new Float32Array(5), [5], { device }))).toThrow('bias has shape [5], expected [6]');
    expect(() => ops.conv2d(x, w, undefined, { residual: x })).toThrow('residual has shape [2, 4, 5, 5], expected [2, 6, 3, 3]');
    expect(() => ops.conv2d(x, w, undefined, { activation: 'tanh' as never })).toThrow('unknown activation "tanh"');
    expect(() => ops.conv2d(x, w.cast('bf16'))).toThrow('conv2d');
  });
});

// The transposed convolution of input x [N, Cin, H, W] with weight [Cin, Cout/groups, kh, kw] is the adjoint of
// the convolution g from [N, Cout, Ho, Wo] to [N, Cin, H, W] with the same weight.
function transposed(n: number, cin: number, h: number, w: number, cout: number, k: [number, number], s: [number, number], p: [number, number], op: [number, number], groups: number): Conv {
  const ho = (h - 1) * s[0] - 2 * p[0] + (k[0] - 1) + op[0] + 1;
  const wo = (w - 1) * s[1] - 2 * p[1] + (k[1] - 1) + op[1] + 1;
  return conv(n, cout, ho, wo, cin, k, { stride: s, padding: p, groups });
}

describeEachDevice('convTranspose2d on %s', (device) => {
  test.each([
    ['2x2 stride 2 with bias (E-RADIO up-projection)', 2, 4, 3, 5, 3, [2, 2], [2, 2], [0, 0], [0, 0], 1],
    ['3x3 stride 2 pad 1 output padding 1, groups 2', 1, 4, 4, 3, 6, [3, 3], [2, 2], [1, 1], [1, 1], 2],
  ] as const)('%s: forward and gradients match float64', async (_, n, cin, h, w, cout, k, s, p, op, groups) => {
    const g = transposed(n, cin, h, w, cout, [...k], [...s], [...p], [...op], groups);
    const x0 = asF64(randomArray(n * cin * h * w, freshSeed()));
    const w0 = asF64(randomArray(cin * (cout / groups) * k[0] * k[1], freshSeed()));
    const b0 = asF64(randomArray(cout, freshSeed()));
    const x = tensor(f32(x0), [n, cin, h, w], { device, requiresGrad: true });
    const wt = tensor(f32(w0), [cin, cout / groups, k[0], k[1]], { device, requiresGrad: true });
    const b = tensor(f32(b0), [cout], { device, requiresGrad: true });
    const y = ops.convTranspose2d(x, wt, b, { stride: [...s], padding: [...p], outputPadding: [...op], groups });
    expect(y.shape).toEqual([n, cout, g.h, g.w]);
    // Forward: the conv adjoint of x; its own adjoints are conv(r) (for x) and the same weight gradient with roles swapped.
    const hw = g.h * g.w;
    const ref = refGrads(g, new Float64Array(n * cout * hw), w0, x0).dx.map((v, i) => v + b0[Math.floor(i / hw) % cout]);
    expect(relativeError(await y.toArray(), ref)).toBeLessThanOrEqual(1e-6);
    const r0 = asF64(randomArray(ref.length, freshSeed()));
    y.mul(tensor(f32(r0), y.shape, { device })).sum().backward();
    expect(relativeError(await x.grad!.toArray(), refConv(g, r0, w0))).toBeLessThanOrEqual(1e-6);
    expect(relativeError(await wt.grad!.toArray(), refGrads(g, r0, w0, x0).dw)).toBeLessThanOrEqual(1e-6);
    const db = new Float64Array(cout);
    r0.forEach((v, i) => (db[Math.floor(i / hw) % cout] += v));
    expect(relativeError(await b.grad!.toArray(), db)).toBeLessThanOrEqual(1e-6);
    const loss = (xx: Float64Array) => dot(refGrads(g, new Float64Array(n * cout * hw), w0, xx).dx, r0);
    expect(sampledRelativeError(await x.grad!.toArray(), sampledFiniteDifference(loss, x0, { seed: freshSeed(), count: 8 }))).toBeLessThan(1e-5);
  });

  test('bad arguments raise Errors naming the problem', () => {
    const x = tensor(new Float32Array(2 * 4 * 3 * 3), [2, 4, 3, 3], { device });
    const w = tensor(new Float32Array(4 * 2 * 4), [4, 2, 2, 2], { device });
    expect(() => ops.convTranspose2d(x, tensor(new Float32Array(3 * 8), [3, 2, 2, 2], { device }))).toThrow('expects 3 input channels');
    expect(() => ops.convTranspose2d(x, w, undefined, { stride: 2, outputPadding: 2 })).toThrow('outputPadding [2, 2] must be smaller than the stride [2, 2]');
    expect(() => ops.convTranspose2d(x, w, undefined, { padding: 3 })).toThrow('padding [3, 3] is too large');
    expect(() => ops.convTranspose2d(x, w, tensor(new Float32Array(4), [4], { device }))).toThrow('bias has shape [4], expected [2]');
  });
});
