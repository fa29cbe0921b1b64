// add, sub, mul, scale, sum, mean on every backend against float64 references.
import { Device, DType, tensor } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16 } from './support/reference';

poisonOutputs();

const SIZES = [1, 3, 255, 256, 257, 4097, 100003];

function quantize(x: Float64Array, dtype: DType): Float64Array {
  return dtype === 'bf16' ? x.map(roundBf16) : x.map(Math.fround);
}

const TOL: Record<string, number> = { f32: 1e-6, bf16: 1e-2 };

describeEachDevice('elementwise ops on %s', (device) => {
  describe.each(['f32', 'bf16'] as const)('%s', (dtype) => {
    test.each(SIZES)('add, sub, mul and scale of %i elements match float64', async (n) => {
      const a = quantize(randomArray(n, freshSeed(), 3), dtype);
      const b = quantize(randomArray(n, freshSeed(), 3), dtype);
      const ta = tensor(Float32Array.from(a), [n], { device, dtype });
      const tb = tensor(Float32Array.from(b), [n], { device, dtype });
      const cases: Array<[string, ReturnType<typeof ta.add>, (i: number) => number]> = [
        ['add', ta.add(tb), (i) => a[i] + b[i]],
        ['sub', ta.sub(tb), (i) => a[i] - b[i]],
        ['mul', ta.mul(tb), (i) => a[i] * b[i]],
        ['scale', ta.scale(-0.37), (i) => a[i] * -0.37],
      ];
      for (const [, out, ref] of cases) {
        expect(out.dtype).toBe(dtype);
        const got = await out.toArray();
        expect(relativeError(got, Float64Array.from({ length: n }, (_, i) => ref(i)))).toBeLessThanOrEqual(TOL[dtype]);
      }
    });

    test.each(SIZES)('sum and mean of %i elements match float64', async (n) => {
      const a = quantize(randomArray(n, freshSeed(), 2), dtype);
      const t = tensor(Float32Array.from(a), [n], { device, dtype });
      let ref = 0;
      for (const v of a) ref += v;
      const sum = await t.sum().item();
      const mean = await t.mean().item();
      // Relative to the sum of magnitudes: cancellation in a random sum makes |ref| itself tiny.
      let scale = 0;
      for (const v of a) scale += Math.abs(v);
      const tol = dtype === 'f32' ? 1e-6 : 1e-2;
      expect(Math.abs(sum - ref) / scale).toBeLessThanOrEqual(tol);
      expect(Math.abs(mean - ref / n) / (scale / n)).toBeLessThanOrEqual(tol);
    });
  });

  test('sum is deterministic: the same input gives the same bits', async () => {
    const a = Float32Array.from(randomArray(300007, freshSeed()));
    const t = tensor(a, [a.length], { device });
    const first = await t.sum().item();
    for (let i = 0; i < 3; i++) expect(await t.sum().item()).toBe(first);
  });
});

describeEachDevice('%s agrees with cpu', (device) => {
  test('elementwise and sum within 1e-5 of cpu', async () => {
    const n = 50021;
    const a = Float32Array.from(randomArray(n, freshSeed()));
    const b = Float32Array.from(randomArray(n, freshSeed()));
    const on = (dev: Device) => {
      const ta = tensor(a, [n], { device: dev });
      const tb = tensor(b, [n], { device: dev });
      return [ta.mul(tb).add(ta).sub(tb.scale(2)), ta.mul(tb).sum()];
    };
    const [x, s] = on(device);
    const [xc, sc] = on('cpu');
    expect(relativeError(await x.toArray(), await xc.toArray())).toBeLessThanOrEqual(1e-5);
    expect(relativeError(await s.toArray(), await sc.toArray())).toBeLessThanOrEqual(1e-5);
  });
}, (d) => d !== 'cpu');
