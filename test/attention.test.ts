// Fused attention against a naive float64 reference (global and window modes, prefix, bias, SAM's decomposed relative
// position terms, every head dim); gradients against the float64 analytic backward and sampled finite differences of
// the reference.
import { debug, ops, tensor } from '../ts';
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

/**
 * out [B, T, D] and, given dout, dqkv and dbias, all in float64. batchBias [B, heads, L, L] (global mode) is a second
 * bias, one per sample, with its gradient dbatchBias: the materialised relative position terms.
 */
function refAttention(qkv: Float64Array, g: Geo, bias: Float64Array | null, dout?: Float64Array, rounding: Rounding = {}, batchBias: Float64Array | null = null) {
  const { intermediate: inter = unrounded, operand = unrounded, result = unrounded } = rounding;
  const { D, L, nw, token, scale } = dims(g);
  const out = new Float64Array(g.B * g.T * D);
  const dqkv = new Float64Array(qkv.length);
  const dbias = bias ? new Float64Array(bias.length) : null;
  const dbatchBias = batchBias ? new Float64Array(batchBias.length) : null;
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
            s = inter(inter(s * scale) + (bias ? bias[(h * L + i) * L + j] : 0) + (batchBias ? batchBias[((b * g.heads + h) * L + i) * L + j] : 0));
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
            if (dbatchBias) dbatchBias[((b * g.heads + h) * L + i) * L + j] = ds;
            const dsk = operand(ds) * scale;
            const kj = at(b, token(w, j), 1, h);
            for (let d = 0; d < g.hd; d++) {
              dqkv[qi + d] += dsk * qkv[kj + d];
              dqkv[kj + d] += dsk * qkv[qi + d];
            }
          }
        }
      }
  return { out: out.map(result), dqkv: dqkv.map(result), dbias: dbias && dbias.map(result), dbatchBias };
}

/** SAM's relative position inputs: h [B, heads, T, gh], w [B, heads, T, gw] over a token grid [gh, gw]. */
interface Rel {
  h: Float64Array;
  w: Float64Array;
  grid: [number, number];
}

/**
 * The [B, heads, T, T] bias SAM's add_decomposed_rel_pos adds, written out: bias[b, n, q, k] = h[b, n, q, k / gw] +
 * w[b, n, q, k % gw] (keys in raster order over the grid).
 */
function materialiseRelPos(rel: Rel, g: Geo): Float64Array {
  const [gh, gw] = rel.grid;
  const full = new Float64Array(g.B * g.heads * g.T * g.T);
  for (let row = 0; row < g.B * g.heads * g.T; row++)
    for (let y = 0; y < gh; y++)
      for (let x = 0; x < gw; x++) full[row * g.T + y * gw + x] = rel.h[row * gh + y] + rel.w[row * gw + x];
  return full;
}

/** refAttention with the relative position terms as a full bias; dh and dw are sums of its gradient over key rows and key columns. */
function refRelPos(qkv: Float64Array, g: Geo, bias: Float64Array | null, rel: Rel, dout?: Float64Array) {
  const [gh, gw] = rel.grid;
  const r = refAttention(qkv, g, bias, dout, {}, materialiseRelPos(rel, g));
  const dh = new Float64Array(rel.h.length);
  const dw = new Float64Array(rel.w.length);
  if (dout)
    for (let row = 0; row < g.B * g.heads * g.T; row++)
      for (let y = 0; y < gh; y++)
        for (let x = 0; x < gw; x++) {
          const ds = r.dbatchBias![row * g.T + y * gw + x];
          dh[row * gh + y] += ds;
          dw[row * gw + x] += ds;
        }
  return { ...r, dh, dw };
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : Float64Array.from(Float32Array.from(a)));

/** Forward and backward (loss Σ y·r) of the op on device: out, dqkv, dbias and the relative position gradients as arrays. */
async function run(device: Device, g: Geo, dtype: DType, q0: Float64Array, b0: Float64Array | null, r0: Float64Array, rel?: Rel) {
  const { D, L } = dims(g);
  const qkv = tensor(f32(q0), [g.B, g.T, 3 * D], { device, dtype, requiresGrad: true });
  const bias = b0 ? tensor(f32(b0), [g.heads, L, L], { device, dtype, requiresGrad: true }) : undefined;
  const relPos = rel && {
    h: tensor(f32(rel.h), [g.B, g.heads, g.T, rel.grid[0]], { device, dtype, requiresGrad: true }),
    w: tensor(f32(rel.w), [g.B, g.heads, g.T, rel.grid[1]], { device, dtype, requiresGrad: true }),
    grid: rel.grid,
  };
  const y = ops.attention(qkv, { heads: g.heads, prefix: g.prefix, window: g.window, bias, relPos });
  expect(y.shape).toEqual([g.B, g.T, D]);
  y.mul(tensor(f32(r0), [g.B, g.T, D], { device, dtype })).sum().backward();
  return {
    out: await y.toArray(), dqkv: await qkv.grad!.toArray(), dbias: bias ? await bias.grad!.toArray() : null,
    dh: relPos ? await relPos.h.grad!.toArray() : null, dw: relPos ? await relPos.w.grad!.toArray() : null,
  };
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

/** A relative position case: global attention over a grid [gh, gw] (T = gh·gw), h and w drawn fresh. */
async function checkRel(device: Device, g: Geo, grid: [number, number], withBias: boolean, dtype: DType = 'f32', fd = dtype === 'f32') {
  const { D } = dims(g);
  const rows = g.B * g.heads * g.T;
  const q0 = quant(randomArray(g.B * g.T * 3 * D, freshSeed(), 1.5), dtype);
  const b0 = withBias ? quant(randomArray(g.heads * g.T * g.T, freshSeed()), dtype) : null;
  // Terms of about the scores' size, so a wrong gather moves the softmax visibly.
  const rel: Rel = { h: quant(randomArray(rows * grid[0], freshSeed(), 2), dtype), w: quant(randomArray(rows * grid[1], freshSeed(), 2), dtype), grid };
  const r0 = quant(randomArray(g.B * g.T * D, freshSeed()), dtype);
  const got = await run(device, g, dtype, q0, b0, r0, rel);
  const ref = refRelPos(q0, g, b0, rel, r0);
  const tol = dtype === 'f32' ? 1e-5 : 1e-2;  // as check(): bf16 in and out, f32 math
  expect(relativeError(got.out, ref.out)).toBeLessThanOrEqual(tol);
  expect(relativeError(got.dqkv, ref.dqkv)).toBeLessThanOrEqual(tol);
  // With a single grid row, dh is Σ_k dS = 0 for every query (a term shared by all keys does not move the softmax),
  // and so is dw with a single column; such a gradient is held to the scale of the other one instead of its own.
  const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((acc, v) => acc + v * v, 0));
  const errTo = (got: ArrayLike<number>, ref: ArrayLike<number>, scale: number) =>
    norm(Float64Array.from(ref, (v, i) => (Number.isFinite(got[i]) ? got[i] - v : Infinity))) / scale;
  const [hScale, wScale] = [grid[0] > 1 ? norm(ref.dh) : norm(ref.dw), grid[1] > 1 ? norm(ref.dw) : norm(ref.dh)];
  expect(errTo(got.dh!, ref.dh, hScale)).toBeLessThanOrEqual(tol);
  expect(errTo(got.dw!, ref.dw, wScale)).toBeLessThanOrEqual(tol);
  if (withBias) expect(relativeError(got.dbias!, ref.dbias!)).toBeLessThanOrEqual(tol);
  if (fd) {
    const loss = (q: Float64Array, h: Float64Array, w: Float64Array) =>
      refRelPos(q, g, b0, { h, w, grid }).out.reduce((acc, v, i) => acc + v * r0[i], 0);
    const fdq = sampledFiniteDifference((v) => loss(v, rel.h, rel.w), q0, { seed: freshSeed(), h: 1e-5 });
    expect(sampledRelativeError(got.dqkv, fdq)).toBeLessThanOrEqual(1e-4);
    // Sampled entries against their central differences, relative to the sampled differences' norm (or, for a
    // gradient that is zero, the other's, as above).
    const fdh = sampledFiniteDifference((v) => loss(q0, v, rel.w), rel.h, { seed: freshSeed(), h: 1e-5 });
    const fdw = sampledFiniteDifference((v) => loss(q0, rel.h, v), rel.w, { seed: freshSeed(), h: 1e-5 });
    const [fdhScale, fdwScale] = [grid[0] > 1 ? norm(fdh.values) : norm(fdw.values), grid[1] > 1 ? norm(fdw.values) : norm(fdh.values)];
    expect(errTo(fdh.indices.map((i) => got.dh![i]), fdh.values, fdhScale)).toBeLessThanOrEqual(1e-4);
    expect(errTo(fdw.indices.map((i) => got.dw![i]), fdw.values, fdwScale)).toBeLessThanOrEqual(1e-4);
  }
  return { got, q0, b0, rel, r0 };
}

// Grids of SAM's kind at small sizes: odd and non-square (3x5, 7x7), a single grid row or column (dh or dw is the
// whole dS row), and T = 70 and 81 (two 64-row query blocks, a partial 32-key tile on the SIMT kernels).
const REL_CASES: Array<[string, Geo, [number, number], boolean]> = [
  ['3x5 grid, batch 2, 2 heads', { B: 2, T: 15, heads: 2, hd: 32, prefix: 0 }, [3, 5], false],
  ['7x7 grid, 3 heads, head dim 40 (padded)', { B: 1, T: 49, heads: 3, hd: 40, prefix: 0 }, [7, 7], false],
  ['7x10 grid (T = 70), batch 2, 2 heads', { B: 2, T: 70, heads: 2, hd: 16, prefix: 0 }, [7, 10], false],
  ['9x9 grid (T = 81), head dim 64', { B: 1, T: 81, heads: 2, hd: 64, prefix: 0 }, [9, 9], false],
  ['a 1x9 grid (dh is zero)', { B: 2, T: 9, heads: 1, hd: 8, prefix: 0 }, [1, 9], false],
  ['a 9x1 grid (dw is zero)', { B: 2, T: 9, heads: 1, hd: 8, prefix: 0 }, [9, 1], false],
  ['3x5 grid with a bias as well', { B: 2, T: 15, heads: 2, hd: 32, prefix: 0 }, [3, 5], true],
];

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

  test.each(REL_CASES)('relPos, %s: forward, dqkv, dh and dw match float64 and finite differences', async (_name, g, grid, withBias) => {
    await checkRel(device, g, grid, withBias);
  });

  // bf16 head dims of each kernel choice (cuda.cu's dispatch): tensor cores both ways (16, 64, 128, the last with
  // 16-query dK/dV tiles), the tensor-core forward with the SIMT backward (144), SIMT both ways (40). T = 70 over
  // 7x10 gives two query blocks and a partial last key tile, and key rows of 10 that straddle the 32-key tiles, so
  // dh's running sum crosses tiles.
  test.each([16, 40, 64, 128, 144])('relPos in bf16, head dim %i (bf16 in and out, f32 math) within 1e-2', async (hd) => {
    await checkRel(device, { B: 1, T: 70, heads: 2, hd, prefix: 0 }, [7, 10], hd === 64, 'bf16');
    await checkRel(device, { B: 2, T: 15, heads: 1, hd, prefix: 0 }, [3, 5], false, 'bf16');
  });

  test.each(['f32', 'bf16'] as DType[])('relPos gradients are deterministic (bitwise equal across runs), %s', async (dtype) => {
    const g: Geo = { B: 2, T: 70, heads: 2, hd: 32, prefix: 0 };
    const { got: a, q0, b0, rel, r0 } = await checkRel(device, g, [10, 7], false, dtype, false);
    const b = await run(device, g, dtype, q0, b0, r0, rel);
    expect(Array.from(a.dqkv)).toEqual(Array.from(b.dqkv));
    expect(Array.from(a.dh!)).toEqual(Array.from(b.dh!));
    expect(Array.from(a.dw!)).toEqual(Array.from(b.dw!));
  });

  test('relPos with an empty batch: empty output and gradients', async () => {
    const qkv = tensor(new Float32Array(0), [0, 6, 48], { device, requiresGrad: true });
    const h = tensor(new Float32Array(0), [0, 2, 6, 2], { device, requiresGrad: true });
    const w = tensor(new Float32Array(0), [0, 2, 6, 3], { device, requiresGrad: true });
    const y = ops.attention(qkv, { heads: 2, relPos: { h, w, grid: [2, 3] } });
    y.sum().backward();
    expect(y.shape).toEqual([0, 6, 16]);
    expect(h.grad!.shape).toEqual([0, 2, 6, 2]);
    expect(w.grad!.shape).toEqual([0, 2, 6, 3]);
  });

  test('relPos: bad input names the problem', () => {
    const qkv = tensor(new Float32Array(2 * 15 * 96), [2, 15, 96], { device });
    const h = tensor(new Float32Array(2 * 2 * 15 * 3), [2, 2, 15, 3], { device });
    const w = tensor(new Float32Array(2 * 2 * 15 * 5), [2, 2, 15, 5], { device });
    const ok = { h, w, grid: [3, 5] as [number, number] };
    expect(() => ops.attention(qkv, { heads: 2, relPos: ok })).not.toThrow();
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, grid: [5, 3] } })).toThrow('attention: relPos.h has shape [2, 2, 15, 3], expected [2, 2, 15, 5]');
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, grid: [4, 4] } })).toThrow('attention: relPos grid 4x4 does not cover the 15 tokens');
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, w: h } })).toThrow('attention: relPos.w has shape [2, 2, 15, 3], expected [2, 2, 15, 5]');
    const h1 = tensor(new Float32Array(2 * 15 * 3), [1, 2, 15, 3], { device });
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, h: h1 } })).toThrow('attention: relPos.h has shape [1, 2, 15, 3], expected [2, 2, 15, 3]');
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, grid: [3, 0] } })).toThrow(/^attention: relPos.grid must be two positive integers/);
    expect(() => ops.attention(qkv, { heads: 2, relPos: { h, w } as never })).toThrow('attention: relPos must be { h, w, grid: [gh, gw] }');
    const hb = tensor(new Float32Array(2 * 2 * 15 * 3), [2, 2, 15, 3], { device, dtype: 'bf16' });
    expect(() => ops.attention(qkv, { heads: 2, relPos: { ...ok, h: hb } })).toThrow('attention: dtype mismatch (f32 and bf16)');
    // The combinations the family does not run are refused by the family's own check, by name.
    expect(() => ops.attention(qkv, { heads: 2, prefix: 1, relPos: ok })).toThrow('attention: relPos is not supported with prefix tokens (every token is a grid token)');
    const q16 = tensor(new Float32Array(2 * 16 * 96), [2, 16, 96], { device });
    expect(() => ops.attention(q16, { heads: 2, window: { size: 2, gridH: 4, gridW: 4 }, relPos: { ...ok, grid: [4, 4] } }))
      .toThrow('attention: relPos is not supported with window (global attention only)');
    expect(native.attentionUnsupported(32, 'f32', { relPos: true })).toBeNull();
    expect(native.attentionUnsupported(32, 'bf16', { relPos: true, window: true })).toBe('relPos is not supported with window (global attention only)');
    expect(native.attentionUnsupported(32, 'f32', { relPos: true, prefix: true })).toBe('relPos is not supported with prefix tokens (every token is a grid token)');
    expect(native.attentionUnsupported(32, 'f32', { window: true, prefix: true })).toBeNull();
  });

  test('relPos: the binding checks the grid and the buffers by itself', () => {
    const [T, hd] = [6, 8];
    const qkv = tensor(new Float32Array(T * 3 * hd), [1, T, 3 * hd], { device });
    const out = tensor(new Float32Array(T * hd), [1, T, hd], { device });
    const lse = tensor(new Float32Array(T), [T], { device });
    const h = tensor(new Float32Array(T * 2), [1, 1, T, 2], { device });
    const w = tensor(new Float32Array(T * 3), [1, 1, T, 3], { device });
    const geometry = { batch: 1, tokens: T, heads: 1, headDim: hd, prefix: 0, window: 0, gridH: 0, gridW: 0, scale: 1, relGridH: 2, relGridW: 3 };
    const [o, l, q, rh, rw] = [out.native('t'), lse.native('t'), qkv.native('t'), h.native('t'), w.native('t')];
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, relH: rh, relW: rw, dtype: 'f32', geometry: { ...geometry, relGridW: 2 } }))
      .toThrow('attention: relPos grid 2x2 does not cover the 6 tokens');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, relH: rh, relW: rw, dtype: 'f32', geometry: { ...geometry, relGridW: 0 } }))
      .toThrow('attention: relGridH and relGridW are both 0 or both positive');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, relH: rh, dtype: 'f32', geometry })).toThrow('attention: relH and relW go together');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, dtype: 'f32', geometry })).toThrow('attention: relH and relW go with a relPos grid (relGridH, relGridW)');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, relH: rw, relW: rh, dtype: 'f32', geometry })).toThrow('attention: relW holds 48 bytes, fewer than 18 f32 elements');
    expect(() => native.attentionForward({ out: o, lse: l, qkv: q, relH: rh, relW: rw, dtype: 'f32', geometry: { ...geometry, prefix: 1, relGridH: 1, relGridW: 5 } }))
      .toThrow('attention: relPos is not supported with prefix tokens (every token is a grid token)');
    expect(() => native.attentionBackward({ dqkv: q, dout: o, qkv: q, out: o, lse: l, relH: rh, relW: rw, dtype: 'f32', geometry }))
      .toThrow('attention backward: drelH and drelW go with a relPos grid (relGridH, relGridW)');
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

// The cpu kernel's blocking (native/attention/cpu.cpp): query blocks of up to 64 rows (128 from L = 512 on), key
// tiles of up to 256 keys in the forward (the online softmax rescales across them) and 128 in the backward (its
// dK/dV pass's unit of work), each split evenly into multiples of 8. Lengths on either side of each boundary, one
// block and a few rows past two, in both modes, with the head dims of RADIO's models (64, 72, 80) and 40; poisoned
// outputs catch a row or key no tile writes. Finite differences where the reference is cheap enough.
const CPU_BLOCK_CASES: Array<[string, Geo, boolean, boolean]> = [
  ['L = 1', { B: 2, T: 1, heads: 2, hd: 64, prefix: 0 }, true, true],
  ['L = 63 (one query block less a row)', { B: 1, T: 63, heads: 2, hd: 72, prefix: 1 }, true, true],
  ['L = 64 (one full query block)', { B: 1, T: 64, heads: 1, hd: 80, prefix: 0 }, false, true],
  ['L = 65 (two query blocks)', { B: 2, T: 65, heads: 1, hd: 40, prefix: 1 }, true, true],
  ['L = 131 (3 query blocks, 2 backward key tiles)', { B: 1, T: 131, heads: 2, hd: 64, prefix: 0 }, true, true],
  ['L = 127 (one backward key tile)', { B: 1, T: 127, heads: 1, hd: 72, prefix: 0 }, false, false],
  ['L = 128', { B: 1, T: 128, heads: 1, hd: 80, prefix: 1 }, true, false],
  ['L = 129 (two backward key tiles)', { B: 1, T: 129, heads: 1, hd: 64, prefix: 0 }, true, false],
  ['L = 255 (one forward key tile)', { B: 1, T: 255, heads: 1, hd: 64, prefix: 0 }, false, false],
  ['L = 256', { B: 1, T: 256, heads: 1, hd: 72, prefix: 0 }, true, false],
  ['L = 257 (two forward key tiles)', { B: 1, T: 257, heads: 1, hd: 80, prefix: 1 }, true, false],
  ['L = 511 (64-row query blocks)', { B: 1, T: 511, heads: 1, hd: 72, prefix: 0 }, false, false],
  ['L = 512 (128-row query blocks)', { B: 1, T: 512, heads: 1, hd: 64, prefix: 1 }, true, false],
  ['L = 515 (3 forward key tiles, 5 backward)', { B: 1, T: 515, heads: 1, hd: 40, prefix: 0 }, true, false],
  // Without bias or relPos, L <= 512 runs query-major on the AVX-512 kernel (attention/cpu_query_major.h): one block
  // per problem up to 256, query blocks and P·V in two k slices past it, whole problems when there are 4 per thread.
  ['L = 197, 24 problems (query-major, one block each)', { B: 2, T: 197, heads: 12, hd: 64, prefix: 1 }, false, false],
  ['L = 300, 9 problems (query-major, whole problems in query blocks, 2 k slices)', { B: 3, T: 300, heads: 3, hd: 64, prefix: 1 }, false, false],
  ['L = 512, 1 problem (query-major, split into query blocks)', { B: 1, T: 512, heads: 1, hd: 48, prefix: 0 }, false, false],
  ['8x8 windows (L = 64) with a prefix token', { B: 2, T: 129, heads: 1, hd: 64, prefix: 1, window: { size: 8, gridH: 8, gridW: 16 } }, true, true],
  ['11x11 windows (L = 121) with 2 prefix tokens', { B: 1, T: 244, heads: 2, hd: 72, prefix: 2, window: { size: 11, gridH: 11, gridW: 22 } }, false, false],
  ['12x12 windows (L = 144, two backward key tiles)', { B: 2, T: 145, heads: 1, hd: 80, prefix: 1, window: { size: 12, gridH: 12, gridW: 12 } }, true, false],
  ['17x17 windows (L = 289, two forward key tiles)', { B: 1, T: 579, heads: 1, hd: 64, prefix: 1, window: { size: 17, gridH: 17, gridW: 34 } }, true, false],
];

// relPos across the tiles: T = 64 (one block), 130 over 13x10 (key rows of 10 straddle the 128-key backward tile)
// and 264 over 11x24 (a key row of 24 straddles the 256-key forward tile).
const CPU_BLOCK_REL_CASES: Array<[string, Geo, [number, number], boolean, boolean]> = [
  ['8x8 grid (T = 64)', { B: 2, T: 64, heads: 1, hd: 64, prefix: 0 }, [8, 8], false, true],
  ['13x10 grid (T = 130), with a bias', { B: 1, T: 130, heads: 2, hd: 72, prefix: 0 }, [13, 10], true, false],
  ['11x24 grid (T = 264)', { B: 1, T: 264, heads: 1, hd: 80, prefix: 0 }, [11, 24], false, false],
];

describeEachDevice('attention blocking on %s', (device) => {
  test.each(CPU_BLOCK_CASES)('%s: forward, dqkv and dbias match float64', async (_name, g, withBias, fd) => {
    await check(device, g, withBias, 'f32', fd);
  });

  test.each(CPU_BLOCK_REL_CASES)('relPos, %s: forward, dqkv, dh and dw match float64', async (_name, g, grid, withBias, fd) => {
    await checkRel(device, g, grid, withBias, 'f32', fd);
  });

  // The backward runs one work item per problem when the problems keep the threads evenly busy and splits each
  // problem into key and query blocks otherwise; both sum in the same order (T = 150: 3 query blocks, 2 key tiles),
  // so a sample's gradients are the same bits alone (one problem: split on 2 threads or more) as among 63 copies of
  // itself (whole problems on 1 to 88 threads).
  test('gradients do not depend on how the backward splits the work (bitwise)', async () => {
    const one: Geo = { B: 1, T: 150, heads: 1, hd: 64, prefix: 0 };
    const many: Geo = { ...one, B: 63 };
    const { D } = dims(one);
    const grid: [number, number] = [15, 10];
    const q0 = quant(randomArray(one.T * 3 * D, freshSeed(), 1.5), 'f32');
    const r0 = quant(randomArray(one.T * D, freshSeed()), 'f32');
    const rel: Rel = { h: quant(randomArray(one.heads * one.T * grid[0], freshSeed(), 2), 'f32'), w: quant(randomArray(one.heads * one.T * grid[1], freshSeed(), 2), 'f32'), grid };
    const copies = (a: Float64Array) => {
      const out = new Float64Array(a.length * many.B);
      for (let b = 0; b < many.B; b++) out.set(a, b * a.length);
      return out;
    };
    const a = await run(device, one, 'f32', q0, null, r0, rel);
    const b = await run(device, many, 'f32', copies(q0), null, copies(r0), { h: copies(rel.h), w: copies(rel.w), grid });
    expect(Array.from(b.out.slice(0, a.out.length))).toEqual(Array.from(a.out));
    expect(Array.from(b.dqkv.slice(0, a.dqkv.length))).toEqual(Array.from(a.dqkv));
    expect(Array.from(b.dh!.slice(0, a.dh!.length))).toEqual(Array.from(a.dh!));
    expect(Array.from(b.dw!.slice(0, a.dw!.length))).toEqual(Array.from(a.dw!));
    expect(relativeError(a.dqkv, refRelPos(q0, one, null, rel, r0).dqkv)).toBeLessThanOrEqual(1e-5);
  });

  // The query-major forward (no terms, L <= 512) runs a whole problem per item when there are enough of them and
  // (problem, query block) items otherwise: each output element is the same chain of operations either way, so a
  // sample alone gives the same bits as among 47 copies of itself (and at L = 300 the whole problem also runs in
  // query blocks).
  test.each([197, 300])('query-major forward at L = %i: the same bits however the problems are split', async (T) => {
    const one: Geo = { B: 1, T, heads: 1, hd: 64, prefix: 1 };
    const many: Geo = { ...one, B: 47 };
    const { D } = dims(one);
    const q0 = quant(randomArray(one.T * 3 * D, freshSeed(), 1.5), 'f32');
    const r0 = quant(randomArray(one.T * D, freshSeed()), 'f32');
    const copies = (a: Float64Array) => {
      const out = new Float64Array(a.length * many.B);
      for (let b = 0; b < many.B; b++) out.set(a, b * a.length);
      return out;
    };
    const a = await run(device, one, 'f32', q0, null, r0);
    const b = await run(device, many, 'f32', copies(q0), null, copies(r0));
    expect(Array.from(b.out.slice(0, a.out.length))).toEqual(Array.from(a.out));
    expect(relativeError(a.out, refAttention(q0, one, null, r0).out)).toBeLessThanOrEqual(1e-5);
  });

  // The softmax's exp pass runs on AVX-512 (fma, scalef) exactly when the GEMM's AVX-512 micro-kernel does, and on
  // the portable vector clones otherwise: each kernel this CPU has gets the cases that cross the tiles.
  for (const kernel of ['avx512', 'avx2', 'generic'] as const) {
    // A CPU without the kernel's instructions refuses it: that case is skipped.
    const runs = debug.cpuGemmKernel(kernel);
    debug.cpuGemmKernel('auto');
    (runs ? test : test.skip)(`under the ${kernel} micro-kernel: forward and gradients match float64`, async () => {
      try {
        debug.cpuGemmKernel(kernel);
        expect(debug.cpuGemmKernelName()).toBe(kernel);
        await check(device, { B: 1, T: 131, heads: 2, hd: 64, prefix: 0 }, true, 'f32', false);
        await check(device, { B: 3, T: 197, heads: 4, hd: 64, prefix: 1 }, false, 'f32', false);
        await check(device, { B: 1, T: 289, heads: 1, hd: 72, prefix: 1, window: { size: 12, gridH: 12, gridW: 24 } }, true, 'f32', false);
        await checkRel(device, { B: 1, T: 130, heads: 2, hd: 72, prefix: 0 }, [13, 10], true, 'f32', false);
      } finally {
        debug.cpuGemmKernel('auto');
      }
    });
  }

  test('bf16 across the tiles (L = 257, 12x12 windows) within 1e-2', async () => {
    await check(device, { B: 1, T: 257, heads: 2, hd: 72, prefix: 1 }, true, 'bf16');
    await check(device, { B: 1, T: 145, heads: 1, hd: 64, prefix: 1, window: { size: 12, gridH: 12, gridW: 12 } }, true, 'bf16');
  });
}, (d) => d === 'cpu');
