// AdamW against a float64 step-by-step reference over 10 steps, several tensors in one fused step.
import { AdamW, tensor, Tensor } from '../ts';
import type { DType } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16 } from './support/reference';

poisonOutputs();

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

function refAdamWStep(s: RefState, g: Float64Array, t: number, lr: number, b1: number, b2: number, eps: number, wd: number): void {
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] -= lr * wd * s.p[i];
    s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
    s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
    const mh = s.m[i] / (1 - b1 ** t);
    const vh = s.v[i] / (1 - b2 ** t);
    s.p[i] -= (lr * mh) / (Math.sqrt(vh) + eps);
  }
}

describeEachDevice('AdamW on %s', (device) => {
  test.each(['f32', 'bf16'] as DType[])('%s parameters: 10 fused steps match the float64 reference', async (dtype) => {
    const sizes = [1, 7, 300, 4099];
    const [lr, b1, b2, eps, wd] = [0.01, 0.9, 0.95, 1e-8, 0.05];
    const round = dtype === 'bf16' ? roundBf16 : Math.fround;
    const init = sizes.map((n) => Float64Array.from(randomArray(n, freshSeed()), round));
    const params = init.map((a, i) => tensor(Float32Array.from(a), [sizes[i]], { device, dtype, requiresGrad: true }));
    const ref: RefState[] = init.map((a) => ({ p: Float64Array.from(a), m: new Float64Array(a.length), v: new Float64Array(a.length) }));
    const opt = new AdamW(params, { lr, betas: [b1, b2], eps, weightDecay: wd });
    for (let t = 1; t <= 10; t++) {
      opt.zeroGrad();
      const grads = sizes.map((n) => Float64Array.from(randomArray(n, freshSeed()), round));
      // d/dp Σ p·g = g: the gradient arrives through autograd as in training.
      let loss: Tensor | null = null;
      params.forEach((p, i) => {
        const term = p.mul(tensor(Float32Array.from(grads[i]), [sizes[i]], { device, dtype })).sum();
        loss = loss ? loss.add(term) : term;
      });
      loss!.backward();
      opt.step();
      ref.forEach((s, i) => refAdamWStep(s, grads[i], t, lr, b1, b2, eps, wd));
    }
    for (let i = 0; i < sizes.length; i++) {
      const got = await params[i].toArray();
      expect(relativeError(got, ref[i].p)).toBeLessThanOrEqual(dtype === 'f32' ? 1e-5 : 1e-2);
    }
  });

  test('parameters without a gradient are left alone; bad construction is an Error', async () => {
    const a = tensor([1, 2], [2], { device, requiresGrad: true });
    const b = tensor([3, 4], [2], { device, requiresGrad: true });
    const opt = new AdamW([a, b], { lr: 0.1 });
    a.mul(a).sum().backward();
    opt.step();
    expect(Array.from(await b.toArray())).toEqual([3, 4]);
    expect(Array.from(await a.toArray())).not.toEqual([1, 2]);
    expect(() => new AdamW([tensor([1], [1], { device })], { lr: 0.1 })).toThrow('AdamW: parameter 0 does not require a gradient');
    expect(() => new AdamW([a], { lr: 0.1, betas: [1, 0.9] })).toThrow(/betas must be in \[0, 1\)/);
  });
});
