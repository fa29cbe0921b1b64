// LayerNorm and the activations (GELU and its quick/tanh approximations, ReLU, SiLU, sigmoid) against float64 references; gradients against finite differences of the reference.
import { debug, ops, tensor } from '../ts';
import type { DType, Tensor } from '../ts';
import { describeEachDevice, freshSeed, refGelu, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError } from './support/reference';

poisonOutputs();

function refLayerNorm(x: Float64Array, w: Float64Array, b: Float64Array, rows: number, cols: number, eps: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[r * cols + c];
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c] - mu) ** 2;
    v /= cols;
    for (let c = 0; c < cols; c++) y[r * cols + c] = ((x[r * cols + c] - mu) / Math.sqrt(v + eps)) * w[c] + b[c];
  }
  return y;
}


const f32 = (a: Float64Array) => Float32Array.from(a);
const asF64 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : asF64(a));

describeEachDevice('layerNorm on %s', (device) => {
  test.each([
    [1, 1],
    [1, 7],
    [3, 64],
    [5, 257],
    [33, 768],
  ])('%i rows × %i cols: forward and all three gradients match float64', async (rows, cols) => {
    const eps = 1e-6;
    const x0 = asF64(randomArray(rows * cols, freshSeed(), 2));
    const w0 = asF64(randomArray(cols, freshSeed()));
    const b0 = asF64(randomArray(cols, freshSeed()));
    const r0 = asF64(randomArray(rows * cols, freshSeed()));
    const x = tensor(f32(x0), [rows, cols], { device, requiresGrad: true });
    const w = tensor(f32(w0), [cols], { device, requiresGrad: true });
    const b = tensor(f32(b0), [cols], { device, requiresGrad: true });
    const y = ops.layerNorm(x, w, b, eps);
    expect(relativeError(await y.toArray(), refLayerNorm(x0, w0, b0, rows, cols, eps))).toBeLessThanOrEqual(1e-5);
    y.mul(tensor(f32(r0), [rows, cols], { device })).sum().backward();
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) =>
      refLayerNorm(xx, ww, bb, rows, cols, eps).reduce((s, v, i) => s + v * r0[i], 0);
    if (cols > 1) {
      const fd = sampledFiniteDifference((v) => loss(v, w0, b0), x0, { seed: freshSeed(), h: 1e-5 });
      expect(sampledRelativeError(await x.grad!.toArray(), fd)).toBeLessThanOrEqual(1e-4);
    }
    const fdw = sampledFiniteDifference((v) => loss(x0, v, b0), w0, { seed: freshSeed() });
    const fdb = sampledFiniteDifference((v) => loss(x0, w0, v), b0, { seed: freshSeed() });
    expect(sampledRelativeError(await w.grad!.toArray(), fdw)).toBeLessThanOrEqual(1e-5);
    expect(sampledRelativeError(await b.grad!.toArray(), fdb)).toBeLessThanOrEqual(1e-5);
  });

  test('large-mean rows keep their precision, forward and backward', async () => {
    const rows = 4;
    const cols = 512;
    // Against the f32 inputs the op actually gets. A plain f32 row mean is off by up to half an ulp of 1e4 (5e-4),
    // 1e-3 of these deviations, and the naive E[x²] − E[x]² loses everything (1e8 − 1e8 in f32).
    const x0 = Float64Array.from(f32(asF64(randomArray(rows * cols, freshSeed()).map((v) => 1e4 + v))));
    const w0 = asF64(randomArray(cols, freshSeed()));
    const b0 = asF64(randomArray(cols, freshSeed()));
    const r0 = asF64(randomArray(rows * cols, freshSeed()));
    const x = tensor(f32(x0), [rows, cols], { device, requiresGrad: true });
    const w = tensor(f32(w0), [cols], { device, requiresGrad: true });
    const y = ops.layerNorm(x, w, tensor(f32(b0), [cols], { device }), 1e-5);
    expect(relativeError(await y.toArray(), refLayerNorm(x0, w0, b0, rows, cols, 1e-5))).toBeLessThanOrEqual(1e-5);
    y.mul(tensor(f32(r0), [rows, cols], { device })).sum().backward();
    const loss = (xx: Float64Array, ww: Float64Array) => refLayerNorm(xx, ww, b0, rows, cols, 1e-5).reduce((s, v, i) => s + v * r0[i], 0);
    const fd = sampledFiniteDifference((v) => loss(v, w0), x0, { seed: freshSeed(), h: 1e-5 });
    expect(sampledRelativeError(await x.grad!.toArray(), fd)).toBeLessThanOrEqual(1e-4);
    const fdw = sampledFiniteDifference((v) => loss(x0, v), w0, { seed: freshSeed() });
    expect(sampledRelativeError(await w.grad!.toArray(), fdw)).toBeLessThanOrEqual(1e-5);
  });

  test('bf16 storage stays within 1e-2 of float64', async () => {
    const rows = 9;
    const cols = 96;
    const x0 = quant(randomArray(rows * cols, freshSeed(), 3), 'bf16');
    const w0 = quant(randomArray(cols, freshSeed()), 'bf16');
    const b0 = quant(randomArray(cols, freshSeed()), 'bf16');
    const opts = { device, dtype: 'bf16' as const };
    const y = ops.layerNorm(tensor(f32(x0), [rows, cols], opts), tensor(f32(w0), [cols], opts), tensor(f32(b0), [cols], opts));
    expect(relativeError(await y.toArray(), refLayerNorm(x0, w0, b0, rows, cols, 1e-6))).toBeLessThanOrEqual(1e-2);
  });

  test.each([
    [7, 80],
    [3, 257],
  ])('mixed precision, %i rows × %i cols: bf16 input with f32 weight and bias, forward and all three gradients', async (rows, cols) => {
    const eps = 1e-6;
    // Norm weights of a trained model sit near 1: 1 + δ with small δ is what bf16 cannot hold and f32 can.
    const x0 = quant(randomArray(rows * cols, freshSeed(), 3), 'bf16');
    const w0 = asF64(randomArray(cols, freshSeed(), 0.05).map((v) => 1 + v));
    const b0 = asF64(randomArray(cols, freshSeed(), 0.05));
    const r0 = quant(randomArray(rows * cols, freshSeed()), 'bf16');
    const x = tensor(f32(x0), [rows, cols], { device, dtype: 'bf16', requiresGrad: true });
    const w = tensor(f32(w0), [cols], { device, requiresGrad: true });
    const b = tensor(f32(b0), [cols], { device, requiresGrad: true });
    const y = ops.layerNorm(x, w, b, eps);
    expect(y.dtype).toBe('bf16');
    const ref = refLayerNorm(x0, w0, b0, rows, cols, eps);
    expect(relativeError(await y.toArray(), ref)).toBeLessThanOrEqual(1e-2);
    // The f32 weights are used as they are: rounding them to bf16 first is measurably worse (by the 2⁻⁹ steps
    // near 1, against the bf16 rounding of the output only).
    const yRounded = ops.layerNorm(x, w.cast('bf16'), b.cast('bf16'), eps);
    expect(relativeError(await y.toArray(), ref)).toBeLessThan(relativeError(await yRounded.toArray(), ref));
    y.mul(tensor(f32(r0), [rows, cols], { device, dtype: 'bf16' })).sum().backward();
    expect([x.grad!.dtype, w.grad!.dtype, b.grad!.dtype]).toEqual(['bf16', 'f32', 'f32']);
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) =>
      refLayerNorm(xx, ww, bb, rows, cols, eps).reduce((s, v, i) => s + v * r0[i], 0);
    const fd = sampledFiniteDifference((v) => loss(v, w0, b0), x0, { seed: freshSeed(), h: 1e-5 });
    expect(sampledRelativeError(await x.grad!.toArray(), fd)).toBeLessThanOrEqual(1e-2);
    // dw and db are f32 sums, kept f32: with dy and x exact in bf16 (quantised above) only f32 rounding remains.
    const fdw = sampledFiniteDifference((v) => loss(x0, v, b0), w0, { seed: freshSeed() });
    const fdb = sampledFiniteDifference((v) => loss(x0, w0, v), b0, { seed: freshSeed() });
    expect(sampledRelativeError(await w.grad!.toArray(), fdw)).toBeLessThanOrEqual(1e-4);
    expect(sampledRelativeError(await b.grad!.toArray(), fdb)).toBeLessThanOrEqual(1e-4);
  });

  test('bad input names the problem', () => {
    const x = tensor(new Float32Array(12), [3, 4], { device });
    const w = tensor(new Float32Array(4), [4], { device });
    const wb = tensor(new Float32Array(4), [4], { device, dtype: 'bf16' });
    expect(() => ops.layerNorm(x, wb, wb)).toThrow('layerNorm: weight and bias are bf16, expected f32');
    expect(() => ops.layerNorm(x, w, wb)).toThrow('layerNorm: dtype mismatch (f32 and bf16)');
    expect(() => ops.layerNorm(x, tensor(new Float32Array(3), [3], { device }), w)).toThrow('layerNorm: weight has shape [3], expected [4] to match the last dimension of [3, 4]');
    expect(() => ops.layerNorm(x, w, w, 0)).toThrow(/eps must be positive/);
  });
});

describeEachDevice('gelu on %s', (device) => {
  const valueAndGradient = async (n: number) => {
    const x0 = asF64(randomArray(n, freshSeed(), 4));
    const r0 = asF64(randomArray(n, freshSeed()));
    const x = tensor(f32(x0), [n], { device, requiresGrad: true });
    const y = ops.gelu(x);
    expect(relativeError(await y.toArray(), x0.map(refGelu))).toBeLessThanOrEqual(1e-6);
    y.mul(tensor(f32(r0), [n], { device })).sum().backward();
    // At the f32 inputs the op got, measured against the gradient's own scale ‖r‖ (gelu' is O(1)): gelu' crosses
    // zero near x = −0.75, so a plain relative error of a few elements has no fixed bound.
    const h = 1e-6;
    const stored = Float64Array.from(f32(x0));
    const fd = stored.map((v, i) => (r0[i] * (refGelu(v + h) - refGelu(v - h))) / (2 * h));
    const got = await x.grad!.toArray();
    const diff = Math.hypot(...fd.map((v, i) => got[i] - v));
    expect(diff / Math.hypot(...r0)).toBeLessThanOrEqual(1e-5);
  };
  test.each([1, 31, 1000, 70001])('%i elements: value and gradient match float64', valueAndGradient);

  const negativeTail = async () => {
    // Down to x = −13.5, where gelu is 1e-40 (subnormal). f32 rounds the erfc argument −x/√2, and that alone moves
    // the result by the condition number |x·gelu'/gelu| (about x²) times the rounding, so each element's relative
    // error is weighed down by 1 + that number, as for the other smooth activations below.
    const n = 4001;
    const x0 = Float64Array.from(f32(Float64Array.from({ length: n }, (_, i) => -13.5 + (19.5 * i) / (n - 1) + 1e-3 * Math.sin(freshSeed() + i))));
    const ref = x0.map(refGelu);
    const check = (got: ArrayLike<number>) => {
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const dv = 1e-6 * Math.max(1, Math.abs(x0[i]));
        const kappa = Math.abs((x0[i] * (refGelu(x0[i] + dv) - refGelu(x0[i] - dv))) / (2 * dv)) / Math.max(Math.abs(ref[i]), 1e-300);
        // Below f32's normal range a value has fewer digits than 1e-6 asks; its error counts against 2^-120.
        const e = Math.abs(got[i] - ref[i]) <= 2 ** -120 ? 0 : Math.abs(got[i] - ref[i]) / Math.abs(ref[i]) / (1 + kappa);
        worst = Math.max(worst, e);
      }
      return worst;
    };
    const x = tensor(f32(x0), [n, 1], { device });
    expect(check(await ops.gelu(x).toArray())).toBeLessThanOrEqual(1e-6);
    // linear with a 1×1 identity weight: the same values through the GEMM epilogue.
    const fused = ops.linear(x, tensor([1], [1, 1], { device }), undefined, { activation: 'gelu' });
    expect(check(await fused.toArray())).toBeLessThanOrEqual(1e-6);
  };
  test('the negative tail keeps its relative precision, element by element, alone and fused into linear', negativeTail);

  // cpu's rows take GELU as 0 from x = −12.87 on, where its value is below 2^-120 (runtime/vector_math.h,
  // kErfcTailCut), so that no lane works on subnormals (each costs a microcode assist); before that point nothing
  // it returns or its gradient returns is subnormal. cuda and sim keep the scalar erfcf, subnormals included.
  (device === 'cpu' ? test : test.skip)('cpu: no subnormal values or gradients in the negative tail; 0 past x = -12.87', async () => {
    const n = 2001;
    const x0 = Float64Array.from(f32(Float64Array.from({ length: n }, (_, i) => -14 + (4 * i) / (n - 1))));
    const x = tensor(f32(x0), [n], { device, requiresGrad: true });
    const y = ops.gelu(x);
    y.sum().backward();
    const [v, g] = [await y.toArray(), await x.grad!.toArray()];
    const tiny = 2 ** -126;
    for (let i = 0; i < n; i++) {
      for (const [what, u] of [['value', v[i]], ['gradient', g[i]]] as const)
        if (u !== 0 && Math.abs(u) < tiny) throw new Error(`gelu ${what} at x = ${x0[i]} is subnormal: ${u}`);
      if (x0[i] < -12.87) expect({ x: x0[i], v: Math.abs(v[i]) }).toEqual({ x: x0[i], v: 0 });
      else expect({ x: x0[i], ok: Math.abs(v[i] - refGelu(x0[i])) <= 2 ** -120 || Math.abs(v[i] / refGelu(x0[i]) - 1) < 1e-4 }).toEqual({ x: x0[i], ok: true });
    }
  });

  // On cpu the GELU rows run on AVX-512 with fma exactly when the GEMM's AVX-512 kernel does, and on the portable
  // vector clones otherwise: every kernel this CPU has gets the value, gradient and tail checks.
  for (const kernel of ['avx512', 'avx2', 'generic'] as const) {
    // A CPU without the kernel's instructions refuses it (and sim has no micro-kernels): those cases are skipped.
    const runs = device === 'cpu' && debug.cpuGemmKernel(kernel);
    debug.cpuGemmKernel('auto');
    (runs ? test : test.skip)(`under the cpu ${kernel} micro-kernel: value, gradient and tail`, async () => {
      try {
        debug.cpuGemmKernel(kernel);
        expect(debug.cpuGemmKernelName()).toBe(kernel);
        await valueAndGradient(70001);
        await negativeTail();
      } finally {
        debug.cpuGemmKernel('auto');
      }
    });
  }

  test('bf16', async () => {
    const x0 = quant(randomArray(999, freshSeed(), 4), 'bf16');
    const y = ops.gelu(tensor(f32(x0), [999], { device, dtype: 'bf16' }));
    expect(relativeError(await y.toArray(), x0.map(refGelu))).toBeLessThanOrEqual(1e-2);
  });
});

describeEachDevice('relu on %s', (device) => {
  test.each([1, 31, 1000, 70001])('%i elements: value and gradient match float64', async (n) => {
    // Values near 0 in both signs, and exact zeros, where the kink is.
    const x0 = asF64(randomArray(n, freshSeed(), 2)).map((v, i) => (i % 97 === 0 ? 0 : v));
    const r0 = asF64(randomArray(n, freshSeed()));
    const x = tensor(f32(x0), [n], { device, requiresGrad: true });
    const y = ops.relu(x);
    expect(Array.from(await y.toArray())).toEqual(Array.from(x0, (v) => (v < 0 ? 0 : v)));
    y.mul(tensor(f32(r0), [n], { device })).sum().backward();
    // Away from the kink the finite difference of max(x, 0) is exact: r where x > h, 0 where x < −h.
    const h = 1e-3;
    const got = await x.grad!.toArray();
    for (let i = 0; i < n; i++) {
      if (x0[i] > h) expect(got[i]).toBe(Math.fround(r0[i]) * ((Math.max(x0[i] + h, 0) - Math.max(x0[i] - h, 0)) / (2 * h) > 0.5 ? 1 : 0));
      else if (x0[i] < -h) expect(got[i]).toBe(0);
      else if (x0[i] === 0) expect(got[i]).toBe(0);  // PyTorch's threshold_backward: 0 at x ≤ 0
    }
  });

  test('NaN passes through forward and backward, as in PyTorch', async () => {
    const x = tensor([NaN, -1, 2], [3], { device, requiresGrad: true });
    const y = ops.relu(x);
    const v = await y.toArray();
    expect(v[0]).toBeNaN();
    expect([v[1], v[2]]).toEqual([0, 2]);
    y.mul(tensor([5, 6, 7], [3], { device })).sum().backward();
    expect(Array.from(await x.grad!.toArray())).toEqual([5, 0, 7]);
  });

  test('bf16 is exact (a select)', async () => {
    const x0 = quant(randomArray(999, freshSeed(), 4), 'bf16');
    const y = ops.relu(tensor(f32(x0), [999], { device, dtype: 'bf16' }));
    expect(Array.from(await y.toArray())).toEqual(Array.from(x0, (v) => (v < 0 ? 0 : v)));
  });

  test('i32 is refused', () => {
    expect(() => ops.relu(tensor([1], [1], { device, dtype: 'i32' }))).toThrow(/relu: i32 tensors are not supported/);
  });
});

// σ and SiLU in float64, the stable forms (no overflow in either tail); CLIP's quick_gelu and SigLIP's
// gelu_pytorch_tanh as their definitions read, the latter in its σ form.
const refSigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const refSilu = (x: number) => x * refSigmoid(x);
const refQuickGelu = (x: number) => x * refSigmoid(1.702 * x);
// 0.5·x·(1 + tanh(u)) is x·σ(2u) exactly; written the second way, float64 keeps the deep negative tail too (1 + tanh
// rounds to 0 there long before the value is 0: at x = −9 the value is −1.3e-28).
const refGeluTanh = (x: number) => x * refSigmoid(2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3));
type Smooth = 'silu' | 'sigmoid' | 'quickGelu' | 'geluTanh';
const SMOOTH: Array<[Smooth, (x: number) => number]> = [['silu', refSilu], ['sigmoid', refSigmoid], ['quickGelu', refQuickGelu], ['geluTanh', refGeluTanh]];

describeEachDevice('silu, sigmoid, quickGelu and geluTanh on %s', (device) => {
  const run = (kind: Smooth, x: Tensor) => ops[kind](x);

  test.each(SMOOTH.flatMap(([k, f]) => [1, 31, 1000, 70001].map((n) => [k, n, f] as const)))('%s, %i elements: value and gradient match float64', async (kind, n, f) => {
    // Spread over ±12 so both tails (σ → 0 and → 1, the others → 0 and → x) are reached.
    const x0 = asF64(randomArray(n, freshSeed(), 12));
    const r0 = asF64(randomArray(n, freshSeed()));
    const x = tensor(f32(x0), [n], { device, requiresGrad: true });
    const y = run(kind, x);
    const stored = Float64Array.from(f32(x0));
    // f32 rounds the exp's argument (1.702x, 2u, ...), and the result's relative error from that is the function's
    // condition number |x·f'(x)/f(x)| times the rounding: about 20 at quickGelu(−12), where one element alone can
    // reach 1.2e-6. Each element's error is weighed down by 1 + that condition number (from the float64 reference).
    const ref = stored.map(f);
    const kappa = stored.map((v, i) => {
      const dv = 1e-6 * Math.max(1, Math.abs(v));
      return Math.abs((v * (f(v + dv) - f(v - dv))) / (2 * dv)) / Math.max(Math.abs(ref[i]), 1e-300);
    });
    const got0 = await y.toArray();
    // Below f32's normal range (2^-126) a value has fewer digits than 1e-6 asks; its error counts against 2^-120.
    const weighed = Math.hypot(...ref.map((v, i) => (got0[i] - v) / (1 + kappa[i])));
    expect(weighed).toBeLessThanOrEqual(1e-6 * Math.hypot(...ref) + 2 ** -120);
    y.mul(tensor(f32(r0), [n], { device })).sum().backward();
    // Central differences at the f32 inputs, against the gradient's own scale ‖r‖ (the derivatives are O(1), and
    // all but σ' cross zero, SiLU' near x = −1.28, so a plain relative error of a few elements has no fixed bound).
    const h = 1e-6;
    const fd = stored.map((v, i) => (r0[i] * (f(v + h) - f(v - h))) / (2 * h));
    const got = await x.grad!.toArray();
    expect(Math.hypot(...fd.map((v, i) => got[i] - v)) / Math.hypot(...r0)).toBeLessThanOrEqual(1e-5);
  });

  test('quickGelu and geluTanh differ from the exact GELU (the kind reaches the kernel)', async () => {
    const x0 = [-3, -2, -1, -0.5, 0.5, 1, 2, 3];
    const x = tensor(x0, [8], { device });
    const [q, t, g] = await Promise.all([ops.quickGelu(x).toArray(), ops.geluTanh(x).toArray(), ops.gelu(x).toArray()]);
    for (let i = 0; i < 8; i++) {
      expect(q[i]).toBeCloseTo(refQuickGelu(x0[i]), 6);
      expect(t[i]).toBeCloseTo(refGeluTanh(x0[i]), 6);
    }
    // At these points quick_gelu is off the exact GELU by up to 1.9e-2, the tanh form by up to 4.1e-4 (at ±3),
    // both far above f32 rounding.
    expect(Math.max(...x0.map((_, i) => Math.abs(q[i] - g[i])))).toBeGreaterThan(1e-2);
    expect(Math.max(...x0.map((_, i) => Math.abs(t[i] - g[i])))).toBeGreaterThan(2e-4);
  });

  test.each(SMOOTH)('%s: extreme inputs stay finite and NaN passes through', async (kind, f) => {
    const x0 = [-1e4, -90, -20, 0, 20, 90, 1e4];
    const x = tensor([...x0, NaN], [8], { device, requiresGrad: true });
    const y = run(kind, x);
    const v = await y.toArray();
    for (let i = 0; i < 7; i++) expect(v[i]).toBeCloseTo(Math.fround(f(x0[i])), 5);
    expect(v[7]).toBeNaN();
    y.sum().backward();
    const g = await x.grad!.toArray();
    for (let i = 0; i < 7; i++) expect(Number.isFinite(g[i])).toBe(true);
    expect(g[7]).toBeNaN();
  });

  test.each(SMOOTH)('%s in bf16: value and gradient', async (kind, f) => {
    const x0 = quant(randomArray(999, freshSeed(), 6), 'bf16');
    const r0 = quant(randomArray(999, freshSeed()), 'bf16');
    const x = tensor(f32(x0), [999], { device, dtype: 'bf16', requiresGrad: true });
    const y = run(kind, x);
    expect(y.dtype).toBe('bf16');
    expect(relativeError(await y.toArray(), x0.map(f))).toBeLessThanOrEqual(1e-2);
    y.mul(tensor(f32(r0), [999], { device, dtype: 'bf16' })).sum().backward();
    const h = 1e-6;
    const fd = x0.map((v, i) => (r0[i] * (f(v + h) - f(v - h))) / (2 * h));
    const got = await x.grad!.toArray();
    expect(Math.hypot(...fd.map((v, i) => got[i] - v)) / Math.hypot(...r0)).toBeLessThanOrEqual(1e-2);
  });

  test.each(SMOOTH)('%s: i32 is refused', (kind) => {
    expect(() => run(kind, tensor([1], [1], { device, dtype: 'i32' }))).toThrow(new RegExp(`${kind}: i32 tensors are not supported`));
  });
});
