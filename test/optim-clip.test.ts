// Fused global gradient norm and clipping against a float64 reference, on every backend, several tensors (empty,
// odd-sized, and large enough to span many reduction blocks) in one pass; outputs poisoned.
import { clipGradNorm, gradNorm, tensor, Tensor } from '../ts';
import type { Device, DType } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, testDevices } from './support/reference';

poisonOutputs();

const SIZES = [1, 7, 0, 4099, 70001, 300_003];

function makeParams(device: Device, dtype: DType, sizes = SIZES, scale = 1): { params: Tensor[]; grads: Float64Array[] } {
  const round = dtype === 'bf16' ? roundBf16 : Math.fround;
  const params: Tensor[] = [];
  const grads: Float64Array[] = [];
  for (const n of sizes) {
    const p = tensor(new Float32Array(n), [n], { device, dtype, requiresGrad: true });
    const g = Float64Array.from(randomArray(n, freshSeed(), scale), round);
    p.grad = tensor(Float32Array.from(g), [n], { device, dtype });
    params.push(p);
    grads.push(g);
  }
  return { params, grads };
}

const refNorm = (grads: Float64Array[]) => Math.sqrt(grads.reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0));

describeEachDevice('gradient norm and clipping on %s', (device) => {
  test.each(['f32', 'bf16'] as DType[])('%s: the norm over every gradient matches float64', async (dtype) => {
    const { params, grads } = makeParams(device, dtype);
    const got = await gradNorm(params);
    expect(Math.abs(got - refNorm(grads)) / refNorm(grads)).toBeLessThan(1e-5);
    // Fixed reduction order: the same input gives the same bits.
    expect(await gradNorm(params)).toBe(got);
  });

  test.each(['f32', 'bf16'] as DType[])('%s: clipping scales every gradient by maxNorm / norm', async (dtype) => {
    const { params, grads } = makeParams(device, dtype);
    const norm = refNorm(grads);
    const maxNorm = norm / 3;
    const before = await clipGradNorm(params, maxNorm);
    expect(Math.abs(before - norm) / norm).toBeLessThan(1e-5);
    const c = maxNorm / (norm + 1e-6);
    const round = dtype === 'bf16' ? roundBf16 : Math.fround;
    for (const [i, p] of params.entries()) {
      if (grads[i].length === 0) continue;
      const want = grads[i].map((g) => round(g * c));
      expect(relativeError(await p.grad!.toArray(), want)).toBeLessThan(dtype === 'f32' ? 1e-6 : 5e-3);
    }
    expect(Math.abs((await gradNorm(params)) - maxNorm) / maxNorm).toBeLessThan(dtype === 'f32' ? 1e-5 : 5e-3);
  });

  test('a norm below maxNorm leaves the gradients bit for bit', async () => {
    const { params, grads } = makeParams(device, 'f32', [5, 1000]);
    const norm = await clipGradNorm(params, refNorm(grads) * 2);
    expect(norm).toBeCloseTo(refNorm(grads), 4);
    for (const [i, p] of params.entries()) expect(Array.from(await p.grad!.toArray())).toEqual(Array.from(grads[i], Math.fround));
  });

  test.each([
    ['NaN', NaN],
    ['Infinity', Infinity],
  ])('a %s anywhere: the norm says so and nothing is scaled', async (_name, bad) => {
    const { params, grads } = makeParams(device, 'f32', [9, 20000]);
    const g = Float32Array.from(grads[1]);
    g[12345] = bad;
    params[1].grad = tensor(g, [g.length], { device });
    const norm = await clipGradNorm(params, 1e-3);
    if (Number.isNaN(bad)) expect(norm).toBeNaN();
    else expect(norm).toBe(Infinity);
    expect(Array.from(await params[0].grad!.toArray())).toEqual(Array.from(grads[0], Math.fround));
    expect(Array.from(await params[1].grad!.toArray())).toEqual(Array.from(g));
  });

  test('parameters without a gradient take no part; none at all gives 0', async () => {
    const { params, grads } = makeParams(device, 'f32', [3, 4]);
    const bare = tensor([1, 2, 3], [3], { device, requiresGrad: true });
    expect(await gradNorm([bare, ...params])).toBeCloseTo(refNorm(grads), 5);
    expect(await gradNorm([bare])).toBe(0);
    expect(await clipGradNorm([bare], 1)).toBe(0);
    expect(await gradNorm([])).toBe(0);
  });

  test('gradients from autograd', async () => {
    const x = tensor([1, -2, 3, -4], [4], { device, requiresGrad: true });
    x.mul(x).sum().backward();  // grad 2x
    expect(await clipGradNorm([x], 1)).toBeCloseTo(2 * Math.sqrt(30), 4);
    const want = [2, -4, 6, -8].map((v) => v / (2 * Math.sqrt(30) + 1e-6));
    expect(relativeError(await x.grad!.toArray(), want)).toBeLessThan(1e-6);
  });
});

describe('clipGradNorm refuses bad input', () => {
  test.each([0, -1, NaN, -Infinity, '1' as unknown as number])('maxNorm %p', async (bad) => {
    const x = tensor([1], [1], { requiresGrad: true });
    x.grad = tensor([1], [1]);
    await expect(clipGradNorm([x], bad)).rejects.toThrow(/clipGradNorm: maxNorm must be a number > 0/);
  });

  test('maxNorm Infinity measures without scaling', async () => {
    const x = tensor([1, 1], [2], { requiresGrad: true });
    x.grad = tensor([3, 4], [2]);
    expect(await clipGradNorm([x], Infinity)).toBeCloseTo(5, 6);
    expect(Array.from(await x.grad.toArray())).toEqual([3, 4]);
  });

  test('not tensors', async () => {
    await expect(gradNorm('x' as unknown as Tensor[])).rejects.toThrow(/params must be an array of Tensors/);
    await expect(gradNorm([1 as unknown as Tensor])).rejects.toThrow(/params\[0\] is not a Tensor/);
  });

  const devs = testDevices();
  (devs.length >= 2 ? test : test.skip)('gradients on different devices', async () => {
    const a = tensor([1], [1], { device: devs[0], requiresGrad: true });
    const b = tensor([1], [1], { device: devs[1], requiresGrad: true });
    a.grad = tensor([1], [1], { device: devs[0] });
    b.grad = tensor([1], [1], { device: devs[1] });
    await expect(gradNorm([a, b])).rejects.toThrow(/gradients are on different devices/);
  });
});
