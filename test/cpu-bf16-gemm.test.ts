// The cpu backend's bf16 products through AMX (native/gemm/cpu_bf16.cpp) and through the f32 conversion
// path, element by element against float64: shapes at every blocking edge of the packed kernel (32 × 32 register
// blocks of 16 × 16 tiles, 128-row tasks, 512-deep slices padded to 32, 2048-column blocks), odd k, every
// transposition, batches with their own and with a shared b.
import { debug, ops, tensor } from '../ts';
import { freshSeed, poisonOutputs, randomArray, roundBf16 } from './support/reference';

poisonOutputs();

const bf16 = (n: number, scale = 1) => Float64Array.from(randomArray(n, freshSeed(), scale), roundBf16);

/**
 * Each element of op(a)·op(b) in float64 and the bound one bf16 result may be off by: half a bf16 ulp of the exact
 * value (the output's own rounding, 2^-8 relative) plus an f32 accumulation of the k products (2^-22 of Σ|a·b|,
 * generous for k up to a few thousand).
 */
function reference(a: Float64Array, b: Float64Array, batch: number, m: number, n: number, k: number, ta: boolean, tb: boolean, sharedB: boolean) {
  const value = new Float64Array(batch * m * n);
  const bound = new Float64Array(batch * m * n);
  for (let e = 0; e < batch; e++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        let mag = 0;
        for (let p = 0; p < k; p++) {
          const av = a[e * m * k + (ta ? p * m + i : i * k + p)];
          const bv = b[(sharedB ? 0 : e * k * n) + (tb ? j * k + p : p * n + j)];
          s += av * bv;
          mag += Math.abs(av * bv);
        }
        value[(e * m + i) * n + j] = s;
        bound[(e * m + i) * n + j] = 2 ** -8 * Math.abs(s) + 2 ** -22 * mag;
      }
  return { value, bound };
}

const supported = debug.cpuBf16Amx().supported;

describe.each([
  ['AMX tiles', true],
  ['f32 conversion', false],
] as const)('cpu bf16 matmul through %s', (_label, amx) => {
  const run = amx && !supported ? test.skip : test;
  beforeAll(() => debug.useCpuBf16Amx(amx));
  afterAll(() => debug.useCpuBf16Amx(true));

  run.each([
    [1, 1, 1, 1, false, false, false],
    [1, 13, 33, 3, false, true, false],
    [1, 32, 32, 512, false, false, false],
    [1, 129, 65, 513, false, true, false],
    [1, 11, 31, 1025, true, false, false],
    [1, 3, 2049, 2, false, false, false],
    [1, 29, 47, 77, true, true, false],
    [3, 25, 40, 50, false, true, false],
    [2, 19, 70, 33, true, false, true],
  ] as const)('batch %i, M=%i N=%i K=%i, transA %s transB %s, shared b %s: every element within its bf16 bound', async (batch, m, n, k, ta, tb, shared) => {
    if (amx) expect(debug.cpuBf16Amx().enabled).toBe(true);
    const a0 = bf16(batch * m * k);
    const b0 = bf16((shared ? 1 : batch) * k * n, 1 / Math.sqrt(k));
    const aShape = batch > 1 ? [batch, ta ? k : m, ta ? m : k] : [ta ? k : m, ta ? m : k];
    const bShape = [...(batch > 1 && !shared ? [batch] : []), tb ? n : k, tb ? k : n];
    const y = ops.matmul(tensor(Float32Array.from(a0), aShape, { dtype: 'bf16' }), tensor(Float32Array.from(b0), bShape, { dtype: 'bf16' }), { transA: ta, transB: tb });
    const got = await y.toArray();
    const { value, bound } = reference(a0, b0, batch, m, n, k, ta, tb, shared);
    let worst = 0;
    for (let i = 0; i < value.length; i++) worst = Math.max(worst, Math.abs(got[i] - value[i]) / (bound[i] + 1e-300));
    expect(worst).toBeLessThanOrEqual(1);
  });
});

test('the switch reports what it does', () => {
  debug.useCpuBf16Amx(false);
  expect(debug.cpuBf16Amx()).toEqual({ supported, enabled: false });
  debug.useCpuBf16Amx(true);
  expect(debug.cpuBf16Amx()).toEqual({ supported, enabled: supported });
});
