// linear and matmul against float64 references: odd shapes, every epilogue, transposes, batches, gradients.
import { debug, ops, tensor, Tensor } from '../ts';
import type { Device, DType } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, refGelu, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError } from './support/reference';

poisonOutputs();

const ACT = {
  none: (v: number) => v,
  gelu: refGelu,
  relu: (v: number) => Math.max(v, 0),
  quickGelu: (v: number) => v / (1 + Math.exp(-1.702 * v)),
  geluTanh: (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
};

/** out[i, j] = Σ_p opA[i, p] · opB[p, j], float64, per batch entry. */
function refMatmul(a: Float64Array, b: Float64Array, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, sharedB: boolean): Float64Array {
  const out = new Float64Array(batch * m * n);
  for (let e = 0; e < batch; e++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a[e * m * k + (transA ? p * m + i : i * k + p)];
          const bv = b[(sharedB ? 0 : e * k * n) + (transB ? j * k + p : p * n + j)];
          s += av * bv;
        }
        out[e * m * n + i * n + j] = s;
      }
  return out;
}

function refLinear(x: Float64Array, w: Float64Array, b: Float64Array | null, res: Float64Array | null, m: number, n: number, k: number, act: keyof typeof ACT): Float64Array {
  const z = refMatmul(x, w, 1, m, n, k, false, true, false);
  return z.map((v, idx) => ACT[act](v + (b ? b[idx % n] : 0)) + (res ? res[idx] : 0));
}

const q = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : Float64Array.from(Float32Array.from(a)));
const up = (a: Float64Array, shape: number[], device: Device, dtype: DType = 'f32', requiresGrad = false) => tensor(Float32Array.from(a), shape, { device, dtype, requiresGrad });
const weights = (n: number) => Float64Array.from(randomArray(n, freshSeed()), (v) => Math.fround(v));
const dot = (y: Float64Array, r: Float64Array) => y.reduce((s, v, i) => s + v * r[i], 0);

const cpuModes: Array<[string, boolean]> = [['built-in GEMM', false], ['host BLAS when present', true]];

describeEachDevice('linear on %s', (device) => {
  const modes = device === 'cpu' ? cpuModes : cpuModes.slice(0, 1);
  describe.each(modes)('%s', (_label, useBlas) => {
    beforeAll(() => debug.useCpuBlas(useBlas));
    afterAll(() => debug.useCpuBlas(false));

    test.each([
      [1, 1, 1, 'none'],
      [1, 5, 768, 'gelu'],
      [67, 33, 129, 'gelu'],
      [64, 64, 64, 'relu'],
      [45, 19, 71, 'quickGelu'],
      [3, 66, 40, 'geluTanh'],
      [130, 70, 17, 'none'],
    ] as const)('M=%i N=%i K=%i activation %s, with bias and residual: values and gradients', async (m, n, k, act) => {
      const x0 = q(randomArray(m * k, freshSeed()), 'f32');
      const w0 = q(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)), 'f32');
      const b0 = q(randomArray(n, freshSeed()), 'f32');
      const r0 = q(randomArray(m * n, freshSeed()), 'f32');
      const x = up(x0, [m, k], device, 'f32', true);
      const w = up(w0, [n, k], device, 'f32', true);
      const b = up(b0, [n], device, 'f32', true);
      const res = up(r0, [m, n], device, 'f32', true);
      const y = ops.linear(x, w, b, { activation: act === 'none' ? undefined : act, residual: res });
      expect(y.shape).toEqual([m, n]);
      expect(relativeError(await y.toArray(), refLinear(x0, w0, b0, r0, m, n, k, act))).toBeLessThanOrEqual(1e-5);
      const g0 = weights(m * n);
      y.mul(up(g0, [m, n], device)).sum().backward();
      const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array, rr: Float64Array) => dot(refLinear(xx, ww, bb, rr, m, n, k, act), g0);
      // The preactivations x·Wᵀ + b as a function of the checked input (the residual is added after the activation).
      const pre = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => refMatmul(xx, ww, 1, m, n, k, false, true, false).map((v, i) => v + bb[i % n]);
      const z0 = pre(x0, w0, b0);
      const checks: Array<[Tensor, Float64Array, (v: Float64Array) => number, (v: Float64Array) => Float64Array]> = [
        [x, x0, (v) => loss(v, w0, b0, r0), (v) => pre(v, w0, b0)],
        [w, w0, (v) => loss(x0, v, b0, r0), (v) => pre(x0, v, b0)],
        [b, b0, (v) => loss(x0, w0, v, r0), (v) => pre(x0, w0, v)],
        [res, r0, (v) => loss(x0, w0, b0, v), () => z0],
      ];
      const h = 1e-5;
      for (const [t, v0, f, preOf] of checks) {
        const fd = sampledFiniteDifference(f, v0, { seed: freshSeed(), h });
        // relu's kink: where nudging a coordinate by ±h moves a preactivation across 0, the central difference mixes
        // two slopes and means nothing; such samples (rare, but fresh inputs meet them) are left out for relu.
        const crosses = (i: number) => {
          const at = (d: number) => preOf(Float64Array.from(v0, (v, j) => (j === i ? v + d : v)));
          const [lo, hi] = [at(-h), at(h)];
          return lo.some((v, j) => v > 0 !== hi[j] > 0);
        };
        const keep = fd.indices.map((i) => act !== 'relu' || !crosses(i));
        const kept = { indices: fd.indices.filter((_, s) => keep[s]), values: fd.values.filter((_, s) => keep[s]) };
        expect(kept.indices.length).toBeGreaterThan(fd.indices.length / 2);
        expect(sampledRelativeError(await t.grad!.toArray(), kept)).toBeLessThanOrEqual(act === 'relu' ? 1e-3 : 1e-5);
      }
    });
  });

  test('leading dimensions of x are kept; no bias; M of 1', async () => {
    const x0 = q(randomArray(2 * 3 * 10, freshSeed()), 'f32');
    const w0 = q(randomArray(4 * 10, freshSeed()), 'f32');
    const y = ops.linear(up(x0, [2, 3, 10], device), up(w0, [4, 10], device));
    expect(y.shape).toEqual([2, 3, 4]);
    expect(relativeError(await y.toArray(), refLinear(x0, w0, null, null, 6, 4, 10, 'none'))).toBeLessThanOrEqual(1e-5);
  });

  test('bf16 operands, f32 accumulation: within 1e-2 and no worse than 2x naive bf16 math', async () => {
    const [m, n, k] = [37, 29, 300];
    const x0 = q(randomArray(m * k, freshSeed()), 'bf16');
    const w0 = q(randomArray(n * k, freshSeed(), 0.1), 'bf16');
    const b0 = q(randomArray(n, freshSeed()), 'bf16');
    const y = ops.linear(up(x0, [m, k], device, 'bf16'), up(w0, [n, k], device, 'bf16'), up(b0, [n], device, 'bf16'), { activation: 'gelu' });
    const ref = refLinear(x0, w0, b0, null, m, n, k, 'gelu');
    const err = relativeError(await y.toArray(), ref);
    expect(err).toBeLessThanOrEqual(1e-2);
    // Naive bf16: round the exact result once to bf16 (the best a bf16 output can be), and allow twice its error.
    expect(err).toBeLessThanOrEqual(Math.max(2 * relativeError(ref.map(roundBf16), ref), 1e-3));
  });

  // K a multiple of 8 sends bf16 to the tensor-core tile on cuda and sim; odd M and N leave partial tiles. Each
  // shape runs on the tile chosen by size and on both tiles forced (cpu has no tiles), against one float64
  // reference and one finite-difference gradient.
  const tiles = device === 'cpu' ? (['auto'] as const) : (['auto', 'small', 'large'] as const);
  afterEach(() => debug.gemmTile('auto'));
  test.each([
    [1, 8, 8],
    [67, 29, 264],
    [130, 72, 64],
    [200, 136, 96],
  ])('bf16 tensor-core shapes M=%i N=%i K=%i on each tile, with every epilogue, and its gradients', async (m, n, k) => {
    const x0 = q(randomArray(m * k, freshSeed()), 'bf16');
    const w0 = q(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)), 'bf16');
    const b0 = q(randomArray(n, freshSeed()), 'bf16');
    const r0 = q(randomArray(m * n, freshSeed()), 'bf16');
    const g0 = q(weights(m * n), 'bf16');
    const ref = refLinear(x0, w0, b0, r0, m, n, k, 'gelu');
    const fd = sampledFiniteDifference((v) => dot(refLinear(x0, v, b0, r0, m, n, k, 'gelu'), g0), w0, { seed: freshSeed(), h: 1e-4 });
    for (const tile of tiles) {
      debug.gemmTile(tile);
      const x = up(x0, [m, k], device, 'bf16', true);
      const w = up(w0, [n, k], device, 'bf16', true);
      const y = ops.linear(x, w, up(b0, [n], device, 'bf16'), { activation: 'gelu', residual: up(r0, [m, n], device, 'bf16') });
      y.mul(up(g0, [m, n], device, 'bf16')).sum().backward();
      const [out, dw] = [await y.toArray(), await w.grad!.toArray()];
      if (relativeError(out, ref) > 1e-2) throw new Error(`${tile} tile: output relative error ${relativeError(out, ref)}`);
      if (sampledRelativeError(dw, fd) > 3e-2) throw new Error(`${tile} tile: weight gradient relative error ${sampledRelativeError(dw, fd)}`);
    }
  });

  // The tensor-core tile applies the activation in its own epilogue (the bf16 store path): CLIP's and SigLIP's
  // GELU approximations through it, values and the weight gradient through the activation's backward.
  test.each(['quickGelu', 'geluTanh'] as const)('bf16 tensor-core tile fuses %s, and its gradient', async (act) => {
    const [m, n, k] = [67, 29, 264];
    const x0 = q(randomArray(m * k, freshSeed()), 'bf16');
    const w0 = q(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)), 'bf16');
    const b0 = q(randomArray(n, freshSeed()), 'bf16');
    const g0 = q(weights(m * n), 'bf16');
    const ref = refLinear(x0, w0, b0, null, m, n, k, act);
    const fd = sampledFiniteDifference((v) => dot(refLinear(x0, v, b0, null, m, n, k, act), g0), w0, { seed: freshSeed(), h: 1e-4 });
    const w = up(w0, [n, k], device, 'bf16', true);
    const y = ops.linear(up(x0, [m, k], device, 'bf16'), w, up(b0, [n], device, 'bf16'), { activation: act });
    y.mul(up(g0, [m, n], device, 'bf16')).sum().backward();
    expect(relativeError(await y.toArray(), ref)).toBeLessThanOrEqual(1e-2);
    expect(sampledRelativeError(await w.grad!.toArray(), fd)).toBeLessThanOrEqual(3e-2);
  });

  test('bad input names the problem', () => {
    const x = up(new Float64Array(6), [2, 3], device);
    expect(() => ops.linear(x, up(new Float64Array(8), [2, 4], device))).toThrow('linear: K mismatch: input [2, 3] has last dimension 3, weight [2, 4] expects 4');
    expect(() => ops.linear(x, up(new Float64Array(6), [2, 3], device), up(new Float64Array(3), [3], device))).toThrow('linear: bias has shape [3], expected [2]');
    expect(() => ops.linear(x, up(new Float64Array(6), [2, 3], device), undefined, { residual: up(new Float64Array(4), [4], device) })).toThrow(/residual has shape \[4\], expected \[2, 2\]/);
    expect(() => ops.linear(x, up(new Float64Array(6), [6], device))).toThrow(/weight must be \[N, K\]/);
    expect(() => ops.linear(x, up(new Float64Array(6), [2, 3], device), undefined, { activation: 'silu' as never })).toThrow(
      'linear: unknown activation "silu" (expected gelu, relu, quickGelu or geluTanh)',
    );
  });
});

describeEachDevice('matmul on %s', (device) => {
  test.each([
    [false, false, false],
    [true, false, false],
    [false, true, false],
    [true, true, false],
    [false, false, true],
    [false, true, true],
  ])('transA=%s transB=%s sharedB=%s: batched values and gradients', async (transA, transB, sharedB) => {
    const [batch, m, n, k] = [3, 17, 9, 33];
    const a0 = q(randomArray(batch * m * k, freshSeed()), 'f32');
    const b0 = q(randomArray((sharedB ? 1 : batch) * k * n, freshSeed()), 'f32');
    const aShape = [batch, ...(transA ? [k, m] : [m, k])];
    const bShape = [...(sharedB ? [] : [batch]), ...(transB ? [n, k] : [k, n])];
    const a = up(a0, aShape, device, 'f32', true);
    const b = up(b0, bShape, device, 'f32', true);
    const c = ops.matmul(a, b, { transA, transB });
    expect(c.shape).toEqual([batch, m, n]);
    expect(relativeError(await c.toArray(), refMatmul(a0, b0, batch, m, n, k, transA, transB, sharedB))).toBeLessThanOrEqual(1e-5);
    const g0 = weights(batch * m * n);
    c.mul(up(g0, [batch, m, n], device)).sum().backward();
    const fa = sampledFiniteDifference((v) => dot(refMatmul(v, b0, batch, m, n, k, transA, transB, sharedB), g0), a0, { seed: freshSeed() });
    const fb = sampledFiniteDifference((v) => dot(refMatmul(a0, v, batch, m, n, k, transA, transB, sharedB), g0), b0, { seed: freshSeed() });
    expect(sampledRelativeError(await a.grad!.toArray(), fa)).toBeLessThanOrEqual(1e-5);
    expect(sampledRelativeError(await b.grad!.toArray(), fb)).toBeLessThanOrEqual(1e-5);
  });

  test('bad input names the problem', () => {
    const a = up(new Float64Array(6), [2, 3], device);
    expect(() => ops.matmul(a, up(new Float64Array(8), [4, 2], device))).toThrow('matmul: K mismatch: [2, 3] · [4, 2] (3 vs 4)');
    expect(() => ops.matmul(up(new Float64Array(12), [2, 2, 3], device), up(new Float64Array(18), [3, 3, 2], device))).toThrow(/batch dimensions differ/);
    expect(() => ops.matmul(up(new Float64Array(3), [3], device), a)).toThrow(/at least 2 dimensions/);
  });
});
