// The cpu backend's built-in GEMM, each micro-kernel this CPU runs: shapes on both sides of every block edge (the
// kernels' MR×NR tiles, the row blocks, the 256-deep k slices, the 512-column L2 blocks), transposes, batches and
// epilogues against float64 references; and the serial product (cpu_kernel.h) with leading dimensions, alpha and beta.
import { debug, ops, tensor } from '../ts';
import type { DType } from '../ts';
import { freshSeed, poisonOutputs, randomArray, refGelu, relativeError, roundBf16 } from './support/reference';

poisonOutputs();

const KERNELS = ['avx512', 'avx2', 'generic'] as const;

/** out = alpha·op(A)·op(B) + beta·C over row-major storage with leading dimensions, in float64. */
function refGemm(p: { transA: boolean; transB: boolean; m: number; n: number; k: number; alpha: number; beta: number; lda: number; ldb: number; ldc: number }, a: Float64Array, b: Float64Array, c: Float64Array): Float64Array {
  const out = Float64Array.from(c);
  for (let i = 0; i < p.m; i++)
    for (let j = 0; j < p.n; j++) {
      let s = 0;
      for (let q = 0; q < p.k; q++) s += a[p.transA ? q * p.lda + i : i * p.lda + q] * b[p.transB ? j * p.ldb + q : q * p.ldb + j];
      out[i * p.ldc + j] = p.alpha * s + (p.beta === 0 ? 0 : p.beta * c[i * p.ldc + j]);
    }
  return out;
}

const f32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
const q = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : f32(a));
const cpu = (a: Float64Array, shape: number[], dtype: DType = 'f32') => tensor(Float32Array.from(a), shape, { device: 'cpu', dtype });

/** x·Wᵀ + b through GELU, plus the residual, in float64. */
function refLinear(x: Float64Array, w: Float64Array, b: Float64Array, r: Float64Array, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = b[j];
      for (let p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
      out[i * n + j] = refGelu(s) + r[i * n + j];
    }
  return out;
}

describe.each(KERNELS)('built-in cpu GEMM, %s kernel', (kernel) => {
  const runs = debug.cpuGemmKernel(kernel);
  debug.cpuGemmKernel('auto');
  beforeAll(() => {
    debug.useCpuBlas(false);
    debug.cpuGemmKernel(kernel);
  });
  afterAll(() => {
    debug.useCpuBlas(false);
    debug.cpuGemmKernel('auto');
  });
  // A CPU without the kernel's instructions refuses it; the kernels it has are still tested.
  const maybe = runs ? test : test.skip;

  maybe('is the kernel in use', () => {
    expect(debug.cpuGemmKernelName()).toBe(kernel);
  });

  maybe.each([
    [1, 1, 1],
    [13, 31, 255],
    [15, 33, 257],
    [113, 65, 7],
    [225, 513, 300],
    [197, 130, 64],
    [6, 600, 90],
  ])('linear M=%i N=%i K=%i with bias, GELU and residual', async (m, n, k) => {
    const x0 = f32(randomArray(m * k, freshSeed()));
    const w0 = f32(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)));
    const b0 = f32(randomArray(n, freshSeed()));
    const r0 = f32(randomArray(m * n, freshSeed()));
    const y = ops.linear(cpu(x0, [m, k]), cpu(w0, [n, k]), cpu(b0, [n]), { activation: 'gelu', residual: cpu(r0, [m, n]) });
    expect(relativeError(await y.toArray(), refLinear(x0, w0, b0, r0, m, n, k))).toBeLessThanOrEqual(1e-5);
  });

  maybe.each([
    [false, false, false],
    [true, false, false],
    [false, true, false],
    [true, true, false],
    [false, true, true],
    [true, false, true],
  ])('matmul transA=%s transB=%s sharedB=%s over a batch, rows and columns past the tiles', async (transA, transB, sharedB) => {
    const [batch, m, n, k] = [3, 29, 45, 270];
    const a0 = f32(randomArray(batch * m * k, freshSeed()));
    const b0 = f32(randomArray((sharedB ? 1 : batch) * k * n, freshSeed()));
    const c = ops.matmul(cpu(a0, [batch, ...(transA ? [k, m] : [m, k])]), cpu(b0, [...(sharedB ? [] : [batch]), ...(transB ? [n, k] : [k, n])]), { transA, transB });
    const ref = new Float64Array(batch * m * n);
    for (let e = 0; e < batch; e++) {
      const p = { transA, transB, m, n, k, alpha: 1, beta: 0, lda: transA ? m : k, ldb: transB ? k : n, ldc: n };
      const part = refGemm(p, a0.subarray(e * m * k), b0.subarray(sharedB ? 0 : e * k * n), new Float64Array(m * n));
      ref.set(part, e * m * n);
    }
    expect(relativeError(await c.toArray(), ref)).toBeLessThanOrEqual(1e-5);
  });

  // Each element of C is one chain of fused multiply-adds over k in increasing order, whoever computes it: the same
  // rows come out bit for bit from a product of 7 rows (split into groups of columns), of 1000 rows (row blocks on
  // a machine of up to 8 threads), and from one entry of a batch.
  maybe('rows do not depend on how the product is split', async () => {
    const [m, n, k] = [1000, 200, 600];
    const x0 = f32(randomArray(m * k, freshSeed()));
    const w0 = f32(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)));
    const w = cpu(w0, [n, k]);
    const all = await ops.linear(cpu(x0, [m, k]), w).toArray();
    const few = await ops.linear(cpu(x0.subarray(140 * k, 147 * k), [7, k]), w).toArray();
    expect(Array.from(few)).toEqual(Array.from(all.subarray(140 * n, 147 * n)));
    const batch = await ops.matmul(cpu(x0, [40, 25, k]), cpu(w0, [n, k]), { transB: true }).toArray();
    const entry = await ops.linear(cpu(x0.subarray(5 * 25 * k, 6 * 25 * k), [25, k]), w).toArray();
    expect(Array.from(entry)).toEqual(Array.from(batch.subarray(5 * 25 * n, 6 * 25 * n)));
    expect(Array.from(entry)).toEqual(Array.from(all.subarray(5 * 25 * n, 6 * 25 * n)));
  });

  maybe.each([
    [113, 70, 300],
    [15, 33, 257],
  ])('bf16 operands M=%i N=%i K=%i, f32 accumulation: no worse than 2x one bf16 rounding of the exact result', async (m, n, k) => {
    const x0 = q(randomArray(m * k, freshSeed()), 'bf16');
    const w0 = q(randomArray(n * k, freshSeed(), 1 / Math.sqrt(k)), 'bf16');
    const b0 = q(randomArray(n, freshSeed()), 'bf16');
    const r0 = q(randomArray(m * n, freshSeed()), 'bf16');
    const y = ops.linear(cpu(x0, [m, k], 'bf16'), cpu(w0, [n, k], 'bf16'), cpu(b0, [n], 'bf16'), { activation: 'gelu', residual: cpu(r0, [m, n], 'bf16') });
    const ref = refLinear(x0, w0, b0, r0, m, n, k);
    expect(relativeError(await y.toArray(), ref)).toBeLessThanOrEqual(Math.max(2 * relativeError(ref.map(roundBf16), ref), 1e-3));
  });

  // bf16 operands in every layout (the packing reads rows along k or across them) with an odd k, whose last pair of
  // the bf16 dot-product kernel has one real element.
  maybe.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('bf16 matmul transA=%s transB=%s, K odd: no worse than 2x one bf16 rounding of the exact result', async (transA, transB) => {
    const [batch, m, n, k] = [2, 29, 45, 37];
    const a0 = q(randomArray(batch * m * k, freshSeed()), 'bf16');
    const b0 = q(randomArray(batch * k * n, freshSeed()), 'bf16');
    const c = ops.matmul(cpu(a0, [batch, ...(transA ? [k, m] : [m, k])], 'bf16'), cpu(b0, [batch, ...(transB ? [n, k] : [k, n])], 'bf16'), { transA, transB });
    const ref = new Float64Array(batch * m * n);
    for (let e = 0; e < batch; e++) {
      const p = { transA, transB, m, n, k, alpha: 1, beta: 0, lda: transA ? m : k, ldb: transB ? k : n, ldc: n };
      ref.set(refGemm(p, a0.subarray(e * m * k), b0.subarray(e * k * n), new Float64Array(m * n)), e * m * n);
    }
    expect(relativeError(await c.toArray(), ref)).toBeLessThanOrEqual(Math.max(2 * relativeError(ref.map(roundBf16), ref), 1e-3));
  });

  // Shapes of attention's tiles (64×64 blocks, head dims 64 and 80, a whole 197-token sequence) and ones past every
  // block edge; leading dimensions longer than the rows, whose padding must stay untouched.
  maybe.each([
    [64, 64, 64],
    [64, 80, 64],
    [64, 64, 80],
    [197, 197, 64],
    [1, 1, 1],
    [15, 33, 257],
    [113, 513, 7],
    [30, 20, 0],
  ])('sgemm_serial M=%i N=%i K=%i, every transposition, alpha and beta, leading dimensions', async (m, n, k) => {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]])
      for (const [alpha, beta] of [[1, 0], [0.5, 1], [-1.25, -0.75]]) {
        const lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 5;
        const p = { transA, transB, m, n, k, alpha, beta, lda, ldb, ldc };
        const a0 = f32(randomArray((transA ? k : m) * lda, freshSeed()));
        const b0 = f32(randomArray((transB ? n : k) * ldb, freshSeed()));
        // beta = 0 must not read C: a NaN there would otherwise come through.
        const c0 = beta === 0 ? new Float64Array(m * ldc).fill(NaN) : f32(randomArray(m * ldc, freshSeed()));
        const c = cpu(c0, [m * ldc]);
        debug.cpuSgemmSerial(cpu(a0, [a0.length]), cpu(b0, [b0.length]), c, p);
        const out = await c.toArray();
        const ref = refGemm(p, a0, b0, c0);
        const inside = (idx: number) => idx % ldc < n;
        const got = Array.from(out).filter((_, idx) => inside(idx));
        const want = Array.from(ref).filter((_, idx) => inside(idx));
        const label = `transA=${transA} transB=${transB} alpha=${alpha} beta=${beta}`;
        expect([label, relativeError(got, want) <= 1e-5]).toEqual([label, true]);
        const padBefore = Array.from(Float32Array.from(c0)).filter((_, idx) => !inside(idx));
        expect(Array.from(out).filter((_, idx) => !inside(idx))).toEqual(padBefore);
      }
  });
});

test('an unknown kernel name is refused', () => {
  expect(() => debug.cpuGemmKernel('sse' as never)).toThrow("setCpuGemmKernel: expected 'auto', 'avx512', 'avx2' or 'generic'");
});
