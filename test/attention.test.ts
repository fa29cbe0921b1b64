// Fused attention against a naive float64 reference (global and window modes, prefix, bias, every head dim);
// gradients against the float64 analytic backward and sampled finite differences of the reference.
import { ops, tensor } from '../ts';
import type { DType, Device } from '../ts';
import { native } from '../ts/native';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError } from './support/reference';

poisonOutputs();

interface Geo {
  B: number;
  T: number;
  heads: number;
  hd: number;
  prefix: number;
  window?: { size: number; gridH: number; gridW: number };
}

const dims = (g: Geo) => {
  const D = g.heads * g.hd;
  const ws = g.window?.size ?? 0;
  const L = ws ? ws * ws : g.T;
  const nw = ws ? (g.window!.gridH / ws) * (g.window!.gridW / ws) : 1;
  const token = (w: number, i: number) => {
    if (!ws) return i;
    const per = g.window!.gridW / ws;
    const wy = Math.floor(w / per);
    const wx = w % per;
    return g.prefix + (wy * ws + Math.floor(i / ws)) * g.window!.gridW + wx * ws + (i % ws);
  };
  return { D, L, nw, token, scale: 1 / Math.sqrt(g.hd) };
};

type Round = (x: number) => number;
const unrounded: Round = (x) => x;
/**
 * Where the reference rounds: the intermediates (S, P, dP, delta, dS), the operands of the tensor-core products (P in
 * P·V and Pᵀ·dO, dS in dS·K and dSᵀ·Q) and the results. Nowhere by default.
 */
interface Rounding {
  intermediate?: Round;
  operand?: Round;
  result?: Round;
}
/** The same math done naively in bf16: every matrix stored in bf16. */
const NAIVE_BF16: Rounding = { intermediate: roundBf16, operand: roundBf16, result: roundBf16 };
/** What the bf16 tensor-core kernels round: the mma operands and the results; everything else stays f32. */
const TENSOR_CORE_BF16: Rounding = { operand: roundBf16, result: roundBf16 };

/** out [B, T, D] and, given dout, dqkv and dbias, all in float64. */
function refAttention(qkv: Float64Array, g: Geo, bias: Float64Array | null, dout?: Float64Array, rounding: Rounding = {}) {
  const { intermediate: inter = unrounded, operand = unrounded, result = unrounded } = rounding;
  const { D, L, nw, token, scale } = dims(g);
  const out = new Float64Array(g.B * g.T * D);
  const dqkv = new Float64Array(qkv.length);
  const dbias = bias ? new Float64Array(bias.length) : null;
  const at = (b: number, t: number, part: number, h: number) => ((b * g.T + t) * 3 + part) * D + h * g.hd;
  for (let b = 0; b < g.B; b++)
    for (let h = 0; h < g.heads; h++)
      for (let w = 0; w < nw; w++) {
        const P = new Float64Array(L * L);
        for (let i = 0; i < L; i++) {
          const qi = at(b, token(w, i), 0, h);
          let m = -Infinity;
          for (let j = 0; j < L; j++) {
            const kj = at(b, token(w, j), 1, h);
            let s = 0;
            for (let d = 0; d < g.hd; d++) s += qkv[qi + d] * qkv[kj + d];
            s = inter(inter(s * scale) + (bias ? bias[(h * L + i) * L + j] : 0));
            P[i * L + j] = s;
            m = Math.max(m, s);
          }
          let sum = 0;
          for (let j = 0; j < L; j++) sum += P[i * L + j] = Math.exp(P[i * L + j] - m);
          const o = (b * g.T + token(w, i)) * D + h * g.hd;
          for (let j = 0; j < L; j++) {
            P[i * L + j] = inter(P[i * L + j] / sum);
            const pv = operand(P[i * L + j]);
            const vj = at(b, token(w, j), 2, h);
            for (let d = 0; d < g.hd; d++) out[o + d] += pv * qkv[vj + d];
          }
        }
        if (!dout) continue;
        for (let i = 0; i < L; i++) {
          const oi = (b * g.T + token(w, i)) * D + h * g.hd;
          const dp = new Float64Array(L);
          // delta = Σ_j P·dP = dO·O, taken from the output as stored.
          let delta = 0;
          for (let d = 0; d < g.hd; d++) delta += dout[oi + d] * result(out[oi + d]);
          delta = inter(delta);
          for (let j = 0; j < L; j++) {
            const vj = at(b, token(w, j), 2, h);
            const pv = operand(P[i * L + j]);
            for (let d = 0; d < g.hd; d++) {
              dp[j] += dout[oi + d] * qkv[vj + d];
              dqkv[vj + d] += pv * dout[oi + d];
            }
            dp[j] = inter(dp[j]);
          }
          const qi = at(b, token(w, i), 0, h);
          for (let j = 0; j < L; j++) {
            const ds = inter(P[i * L + j] * (dp[j] - delta));
            if (dbias) dbias[(h * L + i) * L + j] += ds;
            const dsk = operand(ds) * scale;
            const kj = at(b, token(w, j), 1, h);
            for (let d = 0; d < g.hd; d++) {
              dqkv[qi + d] += dsk * qkv[kj + d];
              dqkv[kj + d] += dsk * qkv[qi + d];
            }
          }
        }
      }
  return { out: out.map(result), dqkv: dqkv.map(result), dbias: dbias && dbias.map(result) };
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : Float64Array.from(Float32Array.from(a)));

/** Forward and backward (loss Σ y·r) of the op on device: out, dqkv and dbias as arrays. */
async function run(device: Device, g: Geo, dtype: DType, q0: Float64Array, b0: Float64Array | null, r0: Float64Array) {
  const { D, L } = dims(g);
  const qkv = tensor(f32(q0), [g.B, g.T, 3 * D], { device, dtype, requiresGrad: true });
  const bias = b0 ? tensor(f32(b0), [g.heads, L, L], { device, dtype, requiresGrad: true }) : undefined;
  const y = ops.attention(qkv, { heads: g.heads, prefix: g.prefix, window: g.window, bias });
  expect(y.shape).toEqual([g.B, g.T, D]);
  y.mul(tensor(f32(r0), [g.B, g.T, D], { device, dtype })).sum().backward();
  return { out: await y.toArray(), dqkv: await qkv.grad!.toArray(), dbias: bias ? await bias.grad!.toArray() : null };
}

async function check(device: Device, g: Geo, withBias: boolean, dtype: DType = 'f32', fd = dtype === 'f32') {
  const { D, L } = dims(g);
  const q0 = quant(randomArray(g.B * g.T * 3 * D, freshSeed(), 1.5), dtype);
  const b0 = withBias ? quant(randomArray(g.heads * L * L, freshSeed()), dtype) : null;
  const r0 = quant(randomArray(g.B * g.T * D, freshSeed()), dtype);
  const got = await run(device, g, dtype, q0, b0, r0);
  const ref = refAttention(q0, g, b0, r0);
  // bf16: rounding the results alone costs about 1.7e-3 (relative rms); the tensor-core kernels also round P (and,
  // in the backward, dS) to bf16 as mma operands, which brings it to about 2.5e-3; 1e-2 leaves room for small cases.
  const tol = dtype === 'f32' ? 1e-5 : 1e-2;
  expect(relativeError(got.out, ref.out)).toBeLessThanOrEqual(tol);
  const dq = got.dqkv;
  expect(relativeError(dq, ref.dqkv)).toBeLessThanOrEqual(tol);
  const db = got.dbias;
  if (db) expect(relativeError(db, ref.dbias!)).toBeLessThanOrEqual(tol);
  if (fd) {
    const loss = (q: Float64Array, bb: Float64Array | null) => refAttention(q, g, bb).out.reduce((s, v, i) => s + v * r0[i], 0);
    const fdq = sampledFiniteDifference((v) => loss(v, b0), q0, { seed: freshSeed(), h: 1e-5 });
    expect(sampledRelativeError(dq, fdq)).toBeLessThanOrEqual(1e-4);
    if (db) {
      const fdb = sampledFiniteDifference((v) => loss(q0, v), b0!, { seed: freshSeed(), h: 1e-5 });
      expect(sampledRelativeError(db, fdb)).toBeLessThanOrEqual(1e-4);
    }
  }
  if (g.window && g.prefix) {
    // Prefix rows take no part: zero output and zero gradient.
    for (let b = 0; b < g.B; b++) for (let c = 0; c < g.prefix * D; c++) expect(got.out[b * g.T * D + c]).toBe(0);
    for (let b = 0; b < g.B; b++) for (let c = 0; c < g.prefix * 3 * D; c++) expect(dq[b * g.T * 3 * D + c]).toBe(0);
  }
}

const cases: Array<[string, Geo, boolean]> = [
  ['global, batch 2, 2 heads', { B: 2, T: 7, heads: 2, hd: 32, prefix: 0 }, false],
  ['global with bias', { B: 2, T: 9, heads: 2, hd: 32, prefix: 1 }, true],
  ['global, T = 70 (not a tile multiple)', { B: 1, T: 70, heads: 1, hd: 32, prefix: 0 }, true],
  ['windows 2x2 over a 4x6 grid, 1 prefix token', { B: 2, T: 25, heads: 2, hd: 32, prefix: 1, window: { size: 2, gridH: 4, gridW: 6 } }, false],
  ['windows with bias and 2 prefix tokens', { B: 2, T: 26, heads: 2, hd: 32, prefix: 2, window: { size: 2, gridH: 6, gridW: 4 } }, true],
  ['a single 3x3 window', { B: 1, T: 9, heads: 1, hd: 32, prefix: 0, window: { size: 3, gridH: 3, gridW: 3 } }, true],
  ['9x9 windows (L = 81, two tiles) over 9x18', { B: 1, T: 163, heads: 1, hd: 32, prefix: 1, window: { size: 9, gridH: 9, gridW: 18 } }, true],
];

// Head dims, one of each kind the kernels tell apart (cuda.cu's dispatch): the SIMT kernels' exact capacities (16,
// 32, 64, 80, 96, 128, 256, the last with 16-row tiles) and padded ones (8 → 16, 40 → 48, 72 → 80, 136 → 160,
// 200 → 224); for bf16 the tensor cores forward and backward (multiples of 16 to 128; 112 and 128 with 32- and
// 16-query dK/dV tiles), the tensor-core forward with the SIMT backward (144, 256), and SIMT both ways at
// the dims that are not multiples of 16.
const HEAD_DIMS = [8, 16, 32, 40, 64, 72, 80, 96, 112, 128, 136, 144, 200, 256];

describeEachDevice('attention on %s', (device) => {
  test.each(cases)('%s: forward, dqkv and dbias match float64', async (_name, g, withBias) => {
    await check(device, g, withBias);
  });

  test.each(HEAD_DIMS)('head dim %i', async (hd) => {
    await check(device, { B: 1, T: 6, heads: 2, hd, prefix: 0 }, true);
    await check(device, { B: 1, T: 9, heads: 1, hd, prefix: 1, window: { size: 2, gridH: 2, gridW: 4 } }, false);
  });

  test('bf16 (bf16 in and out, f32 math) within 1e-2', async () => {
    await check(device, { B: 2, T: 13, heads: 2, hd: 64, prefix: 0 }, true, 'bf16');
    await check(device, { B: 1, T: 17, heads: 2, hd: 32, prefix: 1, window: { size: 2, gridH: 4, gridW: 4 } }, true, 'bf16');
  });

  // The bf16 backward runs on the tensor cores in 64-row blocks with 16- or 32-row tiles: L = 1 and 4 leave most
  // of a tile out of range, 70 and 81 need a second block and a partial last tile.
  test.each(HEAD_DIMS)('bf16, head dim %i: L = 70, 81, 1 and 4 (one or two blocks, partial tiles), windows, prefix, bias', async (hd) => {
    await check(device, { B: 1, T: 70, heads: 1, hd, prefix: 1 }, true, 'bf16');
    await check(device, { B: 2, T: 82, heads: 1, hd, prefix: 1, window: { size: 9, gridH: 9, gridW: 9 } }, hd === 80, 'bf16');
    await check(device, { B: 1, T: 9, heads: 2, hd, prefix: 1, window: { size: 1, gridH: 2, gridW: 4 } }, true, 'bf16');
    await check(device, { B: 2, T: 25, heads: 2, hd, prefix: 1, window: { size: 2, gridH: 4, gridW: 6 } }, true, 'bf16');
  });

  test.each(HEAD_DIMS)('bf16 gradients, head dim %i: as accurate as rounding only the mma operands', async (hd) => {
    // The kernels round P and dS to bf16 where they enter an mma, and the results; everything else is f32. The
    // float64 model of exactly that (TENSOR_CORE_BF16) errs by about 2.4e-3 on dqkv and 1.8e-3 on dbias, the
    // kernels on sim within a few % of it (rounding dP as well, for one, takes dbias to 1.4x). The naive bf16 math
    // (6e-3) is the looser bound the forward is held to.
    const g: Geo = { B: 1, T: 163, heads: 2, hd, prefix: 1, window: { size: 9, gridH: 9, gridW: 18 } };
    const { D, L } = dims(g);
    const q0 = randomArray(g.B * g.T * 3 * D, freshSeed(), 2).map(roundBf16);
    const b0 = randomArray(g.heads * L * L, freshSeed()).map(roundBf16);
    const r0 = randomArray(g.B * g.T * D, freshSeed()).map(roundBf16);
    const got = await run(device, g, 'bf16', q0, b0, r0);
    const exact = refAttention(q0, g, b0, r0);
    for (const [model, factor] of [[TENSOR_CORE_BF16, 1.25], [NAIVE_BF16, 1]] as Array<[Rounding, number]>) {
      const bound = refAttention(q0, g, b0, r0, model);
      expect(relativeError(got.dqkv, exact.dqkv)).toBeLessThanOrEqual(factor * relativeError(bound.dqkv, exact.dqkv));
      expect(relativeError(got.dbias!, exact.dbias!)).toBeLessThanOrEqual(factor * relativeError(bound.dbias!, exact.dbias!));
    }
  });

  test('bf16 error is no worse than 2x the same math done naively in bf16', async () => {
    const g: Geo = { B: 1, T: 37, heads: 2, hd: 64, prefix: 1, window: { size: 3, gridH: 6, gridW: 6 } };
    const { D } = dims(g);
    const q0 = randomArray(g.B * g.T * 3 * D, freshSeed(), 2).map(roundBf16);
    const y = ops.attention(tensor(f32(q0), [g.B, g.T, 3 * D], { device, dtype: 'bf16' }), { heads: g.heads, prefix: g.prefix, window: g.window });
    const exact = refAttention(q0, g, null).out;
    const naive = refAttention(q0, g, null, undefined, NAIVE_BF16).out;
    const err = relativeError(await y.toArray(), exact);
    expect(err).toBeLessThanOrEqual(1e-2);
    expect(err).toBeLessThanOrEqual(2 * relativeError(naive, exact));
  });

  // bf16 takes the tensor-core backward; L = 81 gives two key blocks and 4 (batch, window) bias partials per head.
  test.each([
    ['f32', { B: 3, T: 17, heads: 2, hd: 32, prefix: 1, window: { size: 2, gridH: 4, gridW: 4 } }],
    ['bf16', { B: 2, T: 163, heads: 2, hd: 64, prefix: 1, window: { size: 9, gridH: 9, gridW: 18 } }],
  ] as Array<[DType, Geo]>)('gradients are deterministic (bitwise equal across runs), %s', async (dtype, g) => {
    const { D, L } = dims(g);
    const q0 = quant(randomArray(g.B * g.T * 3 * D, freshSeed()), dtype);
    const b0 = quant(randomArray(g.heads * L * L, freshSeed()), dtype);
    const r0 = quant(randomArray(g.B * g.T * D, freshSeed()), dtype);
    const [a, b] = [await run(device, g, dtype, q0, b0, r0), await run(device, g, dtype, q0, b0, r0)];
    expect(Array.from(a.dqkv)).toEqual(Array.from(b.dqkv));
    expect(Array.from(a.dbias!)).toEqual(Array.from(b.dbias!));
  });

  test('bad input names the problem', () => {
    const qkv = tensor(new Float32Array(2 * 5 * 192), [2, 5, 192], { device });
    expect(() => ops.attention(tensor(new Float32Array(2 * 5 * 100), [2, 5, 100], { device }), { heads: 1 })).toThrow(/last dim 100 is not 3\*D/);
    expect(() => ops.attention(qkv, { heads: 3 })).toThrow(/heads 3 does not divide D 64/);
    // Head dims that are not a multiple of 8, or past 256, are refused by name, on every backend alike.
    const supported = /\(a multiple of 8 from 8 to 256\)/;
    expect(() => ops.attention(qkv, { heads: 16 })).toThrow(/^attention: head dim 4 is not supported/);
    expect(() => ops.attention(qkv, { heads: 16 })).toThrow(supported);
    expect(() => ops.attention(tensor(new Float32Array(5 * 36), [1, 5, 36], { device }), { heads: 1 })).toThrow(/^attention: head dim 12 is not supported/);
    expect(() => ops.attention(tensor(new Float32Array(5 * 792), [1, 5, 792], { device }), { heads: 1 })).toThrow(/^attention: head dim 264 is not supported/);
    expect(() => ops.attention(tensor(new Float32Array(5 * 300), [1, 5, 300], { device, dtype: 'bf16' }), { heads: 1 })).toThrow(/^attention: head dim 100 is not supported/);
    expect(() => ops.attention(qkv, { heads: 2, prefix: 1, window: { size: 3, gridH: 2, gridW: 2 } })).toThrow(/window size 3 does not divide the grid 2x2/);
    expect(() => ops.attention(qkv, { heads: 2, window: { size: 2, gridH: 2, gridW: 3 } })).toThrow(/does not cover the 5 patch tokens/);
    const bad = tensor(new Float32Array(2 * 5 * 4), [2, 5, 4], { device });
    expect(() => ops.attention(qkv, { heads: 2, bias: bad })).toThrow('attention: bias has shape [2, 5, 4], expected [2, 5, 5]');
    expect(() => ops.attention(tensor(new Float32Array(15), [5, 3], { device }), { heads: 1 })).toThrow(/expected \[B, T, 3\*D\]/);
  });

  test('the binding refuses an unsupported head dim by itself (the kernels are never reached)', () => {
    const hd = 12;
    const qkv = tensor(new Float32Array(5 * 3 * hd), [1, 5, 3 * hd], { device });
    const out = tensor(new Float32Array(5 * hd), [1, 5, hd], { device });
    const lse = tensor(new Float32Array(5), [5], { device });
    const geometry = { batch: 1, tokens: 5, heads: 1, headDim: hd, prefix: 0, window: 0, gridH: 0, gridW: 0, scale: 1 };
    const [o, l, q] = [out.native('t'), lse.native('t'), qkv.native('t')];
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, dtype: 'f32', geometry }))
      .toThrow('attention: head dim 12 is not supported (a multiple of 8 from 8 to 256)');
    expect(() => native.attentionBackward({ dqkv: q, dout: o, qkv: q, out: o, lse: l, dtype: 'f32', geometry }))
      .toThrow('attention backward: head dim 12 is not supported (a multiple of 8 from 8 to 256)');
    // Fields are read by name, each error naming the op and the field.
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, dtype: 'f32', geometry: { ...geometry, heads: 0 } }))
      .toThrow('attention geometry: heads must be an integer in [1, ');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, dtype: 'f64' as never, geometry })).toThrow("attention: dtype must be one of 'f32', 'bf16', got 'f64'");
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, dtype: 'f32', geometry: { ...geometry, headDim: 8, prefix: 6 } }))
      .toThrow('attention geometry: prefix must be an integer in [0, 5]');
  });
});

describe('attentionUnsupported: the one list of head dims', () => {
  test('every multiple of 8 from 8 to 256, f32 and bf16; nothing else', () => {
    for (const dtype of ['f32', 'bf16'] as const)
      for (let hd = 0; hd <= 272; hd++) {
        const why = native.attentionUnsupported(hd, dtype);
        if (hd >= 8 && hd <= 256 && hd % 8 === 0) expect({ hd, why }).toEqual({ hd, why: null });
        else expect({ hd, why }).toEqual({ hd, why: `head dim ${hd} is not supported (a multiple of 8 from 8 to 256)` });
      }
    expect(native.attentionUnsupported(64, 'i32')).toBe('i32 tensors are not supported');
  });
});
