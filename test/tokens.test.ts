// Token assembly (patchify, assembleTokens, gatherRows/sliceRows) against float64 references; gradients against
// finite differences of the reference.
import { ops, tensor } from '../ts';
import type { DType, Device, Tensor } from '../ts';
import { native } from '../ts/native';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError } from './support/reference';

poisonOutputs();

const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : a.map(Math.fround));
const tol = (dtype: DType) => (dtype === 'bf16' ? 1e-2 : 1e-6);

function refPatchify(x: Float64Array, B: number, C: number, H: number, W: number, P: number, mean: number[], std: number[]): Float64Array {
  const gh = H / P;
  const gw = W / P;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let py = 0; py < gh; py++)
      for (let px = 0; px < gw; px++)
        for (let c = 0; c < C; c++)
          for (let yy = 0; yy < P; yy++)
            for (let xx = 0; xx < P; xx++) {
              const v = x[((b * C + c) * H + py * P + yy) * W + px * P + xx];
              out[((b * gh + py) * gw + px) * C * P * P + c * P * P + yy * P + xx] = (v - mean[c]) / std[c];
            }
  return out;
}

/** cat(prefix, patches + pos) in float64; prefix/pos given with their batch counts (1 = shared). */
function refAssemble(prefix: Float64Array, pb: number, patches: Float64Array, pos: Float64Array | null, qb: number, B: number, S: number, N: number, D: number): Float64Array {
  const out = new Float64Array(B * (S + N) * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < S + N; t++)
      for (let d = 0; d < D; d++) {
        const o = (b * (S + N) + t) * D + d;
        if (t < S) out[o] = prefix[((pb > 1 ? b : 0) * S + t) * D + d];
        else out[o] = patches[(b * N + t - S) * D + d] + (pos ? pos[((qb > 1 ? b : 0) * N + t - S) * D + d] : 0);
      }
  return out;
}

function refGather(x: Float64Array, B: number, T: number, D: number, index: number[]): Float64Array {
  const out = new Float64Array(B * index.length * D);
  for (let b = 0; b < B; b++) index.forEach((t, k) => out.set(x.subarray((b * T + t) * D, (b * T + t + 1) * D), (b * index.length + k) * D));
  return out;
}

const dot = (a: Float64Array, r: Float64Array) => a.reduce((s, v, i) => s + v * r[i], 0);

async function expectGrad(t: Tensor, f: (v: Float64Array) => number, x0: Float64Array): Promise<void> {
  const fd = sampledFiniteDifference(f, x0, { seed: freshSeed(), h: 1e-3 });
  expect(sampledRelativeError(await t.grad!.toArray(), fd)).toBeLessThanOrEqual(1e-5);
}

describeEachDevice('patchify on %s', (device: Device) => {
  test.each([
    [2, 3, 6, 9, 3, 'f32', 'f32'],
    [1, 1, 5, 7, 1, 'f32', 'f32'],
    [3, 5, 8, 12, 4, 'f32', 'bf16'],
    [2, 3, 32, 48, 16, 'bf16', 'bf16'],
    [1, 2, 14, 28, 14, 'bf16', 'f32'],
  ] as const)('B%i C%i %ix%i P%i, %s image → %s patches match float64', async (B, C, H, W, P, inDtype, outDtype) => {
    const x0 = quant(randomArray(B * C * H * W, freshSeed()).map((v) => (v + 1) / 2), inDtype);
    const mean = Array.from(randomArray(C, freshSeed(), 0.5)).map(Math.fround);
    const std = Array.from(randomArray(C, freshSeed(), 0.1)).map((v) => Math.fround(0.25 + v));
    const x = tensor(Float32Array.from(x0), [B, C, H, W], { device, dtype: inDtype });
    const out = ops.patchify(x, { patch: P, mean: tensor(mean, [C], { device }), std: tensor(std, [C], { device }), dtype: outDtype });
    expect(out.shape).toEqual([B, (H / P) * (W / P), C * P * P]);
    expect(out.dtype).toBe(outDtype);
    expect(relativeError(await out.toArray(), refPatchify(x0, B, C, H, W, P, mean, std))).toBeLessThanOrEqual(outDtype === 'bf16' ? 1e-2 : 1e-6);
  });

  test('bad input names the problem', () => {
    const x = tensor(new Float32Array(2 * 3 * 8 * 8), [2, 3, 8, 8], { device });
    const m = tensor([0, 0, 0], [3], { device });
    expect(() => ops.patchify(x, { patch: 3, mean: m, std: m })).toThrow('patchify: image 8x8 is not a multiple of the patch size 3');
    // The rule is the native family's (native/tokens/tokens.h), which the op asks; an empty image has nothing to cut.
    expect(native.patchifyUnsupported({ batch: 0, channels: 3, height: 0, width: 8, patch: 4 })).toBeNull();
    expect(native.patchifyUnsupported({ batch: 1, channels: 3, height: 8, width: 6, patch: 4 })).toBe('image 8x6 is not a multiple of the patch size 4');
    expect(() => ops.patchify(x, { patch: 4, mean: tensor([0, 0], [2], { device }), std: m })).toThrow(/mean must be f32 with 3 values/);
    expect(() => ops.patchify(x.reshape([6, 8, 8]), { patch: 4, mean: m, std: m })).toThrow(/expected \[B, C, H, W\]/);
    const g = tensor(new Float32Array(3 * 8 * 8), [1, 3, 8, 8], { device, requiresGrad: true });
    expect(() => ops.patchify(g, { patch: 4, mean: m, std: m })).toThrow(/cannot require a gradient/);
  });
});

describeEachDevice('assembleTokens on %s', (device: Device) => {
  test.each([
    // B, S, N, D, prefix batch count, pos batch count (0: no pos)
    [2, 8, 6, 64, 1, 1],
    [3, 1, 5, 7, 1, 3],
    [2, 3, 4, 5, 2, 0],
    [1, 0, 9, 3, 1, 1],
    [4, 5, 1, 33, 4, 4],
  ])('B%i S%i N%i D%i (prefix ×%i, pos ×%i): forward and the gradients of all three inputs', async (B, S, N, D, pb, qb) => {
    const p0 = quant(randomArray(pb * S * D, freshSeed()), 'f32');
    const x0 = quant(randomArray(B * N * D, freshSeed()), 'f32');
    const q0 = qb ? quant(randomArray(qb * N * D, freshSeed()), 'f32') : null;
    const r0 = quant(randomArray(B * (S + N) * D, freshSeed()), 'f32');
    const prefix = tensor(Float32Array.from(p0), pb > 1 ? [pb, S, D] : [S, D], { device, requiresGrad: true });
    const patches = tensor(Float32Array.from(x0), [B, N, D], { device, requiresGrad: true });
    const pos = q0 ? tensor(Float32Array.from(q0), [qb, N, D], { device, requiresGrad: true }) : undefined;
    const out = ops.assembleTokens(prefix, patches, pos);
    expect(out.shape).toEqual([B, S + N, D]);
    expect(relativeError(await out.toArray(), refAssemble(p0, pb, x0, q0, qb, B, S, N, D))).toBeLessThanOrEqual(1e-7);
    out.mul(tensor(Float32Array.from(r0), out.shape, { device })).sum().backward();
    if (S > 0) await expectGrad(prefix, (v) => dot(refAssemble(v, pb, x0, q0, qb, B, S, N, D), r0), p0);
    await expectGrad(patches, (v) => dot(refAssemble(p0, pb, v, q0, qb, B, S, N, D), r0), x0);
    if (pos && q0) await expectGrad(pos, (v) => dot(refAssemble(p0, pb, x0, v, qb, B, S, N, D), r0), q0);
  });

  test('bf16 within 1e-2 of float64', async () => {
    const [B, S, N, D] = [2, 4, 12, 40];
    const p0 = quant(randomArray(S * D, freshSeed()), 'bf16');
    const x0 = quant(randomArray(B * N * D, freshSeed()), 'bf16');
    const q0 = quant(randomArray(N * D, freshSeed()), 'bf16');
    const o = { device, dtype: 'bf16' as const };
    const out = ops.assembleTokens(tensor(Float32Array.from(p0), [S, D], o), tensor(Float32Array.from(x0), [B, N, D], o), tensor(Float32Array.from(q0), [1, N, D], o));
    expect(relativeError(await out.toArray(), refAssemble(p0, 1, x0, q0, 1, B, S, N, D))).toBeLessThanOrEqual(tol('bf16'));
  });

  test('bad input names the problem', () => {
    const patches = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4], { device });
    expect(() => ops.assembleTokens(tensor(new Float32Array(10), [2, 5], { device }), patches)).toThrow(/prefix has shape \[2, 5\], expected \[S, 4\]/);
    expect(() => ops.assembleTokens(tensor(new Float32Array(8), [2, 4], { device }), patches, tensor(new Float32Array(8), [2, 4], { device })))
      .toThrow(/pos has shape \[2, 4\], expected \[3, 4\]/);
    expect(() => ops.assembleTokens(tensor(new Float32Array(8), [2, 4], { device, dtype: 'bf16' }), patches)).toThrow(/dtype mismatch/);
  });
});

describeEachDevice('gatherRows on %s', (device: Device) => {
  test.each([
    [2, 11, 8, 'summary rows', [0, 2, 1]],
    [3, 5, 3, 'repeated rows', [4, 4, 0, 4]],
    [1, 104, 64, 'the feature rows 8..103', Array.from({ length: 96 }, (_, i) => 8 + i)],
    [2, 6, 5, 'a permutation', [5, 3, 1, 0, 2, 4]],
    [2, 4, 3, 'no rows', []],
  ] as const)('B%i T%i D%i, %s: forward and gradient (repeats add up)', async (B, T, D, _what, rows) => {
    const index = [...rows];
    const x0 = quant(randomArray(B * T * D, freshSeed()), 'f32');
    const r0 = quant(randomArray(B * index.length * D, freshSeed()), 'f32');
    const x = tensor(Float32Array.from(x0), [B, T, D], { device, requiresGrad: true });
    const out = ops.gatherRows(x, index);
    expect(out.shape).toEqual([B, index.length, D]);
    expect(relativeError(await out.toArray(), refGather(x0, B, T, D, index))).toBe(0);
    if (index.length === 0) return;
    out.mul(tensor(Float32Array.from(r0), out.shape, { device })).sum().backward();
    await expectGrad(x, (v) => dot(refGather(v, B, T, D, index), r0), x0);
  });

  test('sliceRows is a range of rows; bf16 rows are copied exactly', async () => {
    const x0 = quant(randomArray(2 * 7 * 5, freshSeed()), 'bf16');
    const x = tensor(Float32Array.from(x0), [2, 7, 5], { device, dtype: 'bf16' });
    expect(Array.from(await ops.sliceRows(x, 2, 6).toArray())).toEqual(Array.from(refGather(x0, 2, 7, 5, [2, 3, 4, 5])));
  });

  test('bad input names the problem', () => {
    const x = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4], { device });
    expect(() => ops.gatherRows(x, [0, 3])).toThrow('gatherRows: index 3 is out of range for 3 rows');
    expect(() => ops.gatherRows(x, [1.5])).toThrow(/index 1.5 is out of range/);
    expect(() => ops.sliceRows(x, 2, 4)).toThrow('sliceRows: rows 2..4 are out of range for 3 rows');
    expect(() => ops.gatherRows(x.reshape([6, 4]), [0])).toThrow(/expected \[B, T, D\]/);
  });
});
