// Gradients of composed expressions against finite differences of a float64 reference.
import { noGrad, tensor, Tensor } from '../ts';
import { describeEachDevice, finiteDifferenceGrad, freshSeed, poisonOutputs, randomArray, relativeError, testDevices } from './support/reference';

poisonOutputs();

// f(x, y) = mean((x*y - 0.5 x) * x + 3 y) · 2 + sum(y * y)
function referenceLoss(x: Float64Array, y: Float64Array): number {
  let m = 0;
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    m += (x[i] * y[i] - 0.5 * x[i]) * x[i] + 3 * y[i];
    s += y[i] * y[i];
  }
  return (m / x.length) * 2 + s;
}

function loss(x: Tensor, y: Tensor): Tensor {
  return x.mul(y).sub(x.scale(0.5)).mul(x).add(y.scale(3)).mean().scale(2).add(y.mul(y).sum());
}

describeEachDevice('autograd on %s', (device) => {
  test.each([1, 5, 301])('composed expression of %i elements: gradients match finite differences', async (n) => {
    const x0 = Float64Array.from(Float32Array.from(randomArray(n, freshSeed())));
    const y0 = Float64Array.from(Float32Array.from(randomArray(n, freshSeed())));
    const x = tensor(Float32Array.from(x0), [n], { device, requiresGrad: true });
    const y = tensor(Float32Array.from(y0), [n], { device, requiresGrad: true });
    const out = loss(x, y);
    expect(out.shape).toEqual([]);
    out.backward();
    const gx = finiteDifferenceGrad((v) => referenceLoss(v, y0), x0);
    const gy = finiteDifferenceGrad((v) => referenceLoss(x0, v), y0);
    expect(relativeError(await x.grad!.toArray(), gx)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(await y.grad!.toArray(), gy)).toBeLessThanOrEqual(1e-5);
    expect(Math.abs((await out.item()) - referenceLoss(x0, y0)) / Math.abs(referenceLoss(x0, y0))).toBeLessThan(1e-5);
  });

  test('gradients flow through reshape, cast and to(), and accumulate over backward calls', async () => {
    const n = 12;
    const x0 = randomArray(n, freshSeed());
    const x = tensor(Float32Array.from(x0), [3, 4], { device, requiresGrad: true });
    const other = testDevices().find((d) => d !== device) ?? device;
    const f = () => x.reshape([12]).cast('f32').to(other).mul(tensor(Float32Array.from(x0), [12], { device: other })).sum();
    f().backward();
    f().backward();
    // d/dx sum(x * c) = c, twice.
    expect(relativeError(await x.grad!.toArray(), x0.map((v) => 2 * Math.fround(v)))).toBeLessThanOrEqual(1e-6);
    expect(x.grad!.device).toBe(device);
    x.zeroGrad();
    expect(x.grad).toBeNull();
  });

  test('noGrad records nothing; inputs without requiresGrad get no gradient', () => {
    const x = tensor([1, 2], [2], { device, requiresGrad: true });
    const c = tensor([3, 4], [2], { device });
    const y = noGrad(() => x.mul(c).sum());
    expect(y.requiresGrad).toBe(false);
    expect(() => y.backward()).toThrow(/does not require a gradient/);
    const z = x.mul(c).sum();
    z.backward();
    expect(c.grad).toBeNull();
    expect(x.grad).not.toBeNull();
  });
});
