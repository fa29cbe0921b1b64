// batchNorm2d, foldBatchNorm and layerNorm2d against plain float64 references: forward in both modes, the
// running-stat update, every gradient against the reference's analytic gradient and by finite differences, bf16,
// odd shapes and bad input. Outputs are poisoned before every op (NaN where a kernel fails to write).
import { ops, tensor, zeros } from '../ts';
import { native } from '../ts/native';
import type { Device, DType, Tensor } from '../ts';
import { dimsOf, refBatchNorm, refBatchNormGrads, refLayerNorm2d } from './support/batchnorm-reference';
import type { BnParams } from './support/batchnorm-reference';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference, sampledRelativeError } from './support/reference';

poisonOutputs();

// A running statistic's error against float64, relative to max(1, its largest magnitude): (1 − m)·old + m·mean can
// cancel to near 0 for a channel (mean and old of opposite signs), where a relative error measures only f32's
// absolute rounding (~1e-7 of the data) magnified; CI met 2.6e-6 that way with C = 1.
function statError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let scale = 1;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    err = Math.max(err, Number.isFinite(got[i]) ? Math.abs(got[i] - ref[i]) : Infinity);
  }
  return err / scale;
}

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const quant = (a: Float64Array, dtype: DType) => (dtype === 'bf16' ? a.map(roundBf16) : Float64Array.from(f32(a)));
const read = async (t: Tensor) => Float64Array.from(await t.toArray());
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);
const positive = (n: number, seed: number) => randomArray(n, seed, 0.5).map((v) => 1 + v); // in (0.5, 1.5)

/**
 * The gradients an op gave for x, weight and bias against central differences of the float64 loss(x, w, b) at
 * sampled coordinates of each; a null tolerance leaves that input out.
 */
async function expectFiniteDifferences(
  loss: (x: Float64Array, w: Float64Array, b: Float64Array) => number,
  inputs: [Float64Array, Float64Array, Float64Array],
  grads: [Tensor, Tensor, Tensor],
  tolerances: [number | null, number, number],
): Promise<void> {
  const [x0, w0, b0] = inputs;
  const partial = [(v: Float64Array) => loss(v, w0, b0), (v: Float64Array) => loss(x0, v, b0), (v: Float64Array) => loss(x0, w0, v)];
  for (let k = 0; k < 3; k++) {
    const tol = tolerances[k];
    if (tol === null) continue;
    // x moves the statistics too: a larger step keeps the difference above the float64 rounding of the loss.
    const fd = sampledFiniteDifference(partial[k], inputs[k], { seed: freshSeed(), h: k === 0 ? 1e-5 : 1e-6 });
    expect(sampledRelativeError(await read(grads[k]), fd)).toBeLessThanOrEqual(tol);
  }
}

describeEachDevice('batchNorm2d on %s', (device: Device) => {
  const make = (data: Float64Array, shape: number[], dtype: DType = 'f32', requiresGrad = false) =>
    tensor(f32(data), shape, { device, dtype, requiresGrad });

  const shapes: Array<[string, number[], boolean]> = [
    ['[3, 5, 7, 9]', [3, 5, 7, 9], true],
    ['C = 1', [4, 1, 3, 5], true],
    ['H·W = 1', [6, 4, 1, 1], true],
    ['[N, C] input', [5, 3], true],
    ['N = 1', [1, 3, 4, 5], true],
    ['N = 1, H·W = 1 (eval only)', [1, 4, 1, 1], false],
    ['300 channels', [2, 300, 2, 3], true],
  ];
  const cases = shapes.flatMap(([name, shape, train]) => [...(train ? [[name, 'training', shape] as const] : []), [name, 'eval', shape] as const]);

  test.each(cases)('%s, %s: forward, running stats and all gradients match float64', async (_name, mode, shape) => {
    const training = mode === 'training';
    const { c } = dimsOf(shape);
    const numel = shape.reduce((a, b) => a * b, 1);
    const x0 = quant(randomArray(numel, freshSeed(), 2).map((v) => v + 0.7), 'f32');
    const w0 = quant(randomArray(c, freshSeed()), 'f32');
    const b0 = quant(randomArray(c, freshSeed()), 'f32');
    const rm0 = quant(randomArray(c, freshSeed()), 'f32');
    const rv0 = quant(positive(c, freshSeed()), 'f32');
    const r0 = quant(randomArray(numel, freshSeed()), 'f32');
    const p: BnParams = { w: w0, b: b0, rm: rm0, rv: rv0, training, momentum: 0.3, eps: 1e-5 };
    const x = make(x0, shape, 'f32', true);
    const w = make(w0, [c], 'f32', true);
    const b = make(b0, [c], 'f32', true);
    const rm = make(rm0, [c]);
    const rv = make(rv0, [c]);
    const y = ops.batchNorm2d(x, { weight: w, bias: b, runningMean: rm, runningVar: rv, training, momentum: 0.3 });
    const ref = refBatchNorm(x0, shape, p);
    expect(relativeError(await y.toArray(), ref.y)).toBeLessThanOrEqual(1e-5);
    // Training moves the running stats (the variance unbiased); eval leaves them exactly as they were.
    if (training) {
      expect(statError(await rm.toArray(), ref.rm!)).toBeLessThanOrEqual(1e-6);
      expect(statError(await rv.toArray(), ref.rv!)).toBeLessThanOrEqual(1e-6);
    } else {
      expect(relativeError(await rm.toArray(), ref.rm!)).toBe(0);
      expect(relativeError(await rv.toArray(), ref.rv!)).toBe(0);
    }

    y.mul(make(r0, shape)).sum().backward();
    const g = refBatchNormGrads(x0, r0, shape, p);
    const [dx, dw, db] = [await read(x.grad!), await read(w.grad!), await read(b.grad!)];
    expect(relativeError(dx, g.dx)).toBeLessThanOrEqual(1e-4);
    expect(relativeError(dw, g.dw)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(db, g.db)).toBeLessThanOrEqual(1e-5);
    // Finite differences of the reference, which check the analytic formulas above as well.
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(refBatchNorm(xx, shape, { ...p, w: ww, b: bb }).y, r0);
    await expectFiniteDifferences(loss, [x0, w0, b0], [x.grad!, w.grad!, b.grad!], [1e-4, 1e-5, 1e-5]);
  });

  test.each([true, false])('no weight or bias (training %s): γ = 1, β = 0, and dx alone', async (training) => {
    const shape = [2, 3, 4, 5];
    const x0 = quant(randomArray(120, freshSeed()), 'f32');
    const r0 = quant(randomArray(120, freshSeed()), 'f32');
    const rm0 = quant(randomArray(3, freshSeed()), 'f32');
    const rv0 = quant(positive(3, freshSeed()), 'f32');
    const p: BnParams = { rm: rm0, rv: rv0, training, momentum: 0.1, eps: 1e-3 };
    const x = make(x0, shape, 'f32', true);
    const y = ops.batchNorm2d(x, { runningMean: make(rm0, [3]), runningVar: make(rv0, [3]), training, eps: 1e-3 });
    expect(relativeError(await y.toArray(), refBatchNorm(x0, shape, p).y)).toBeLessThanOrEqual(1e-5);
    y.mul(make(r0, shape)).sum().backward();
    expect(relativeError(await x.grad!.toArray(), refBatchNormGrads(x0, r0, shape, p).dx)).toBeLessThanOrEqual(1e-4);
  });

  test('only the weight and bias require a gradient (training): dx is not computed, dweight and dbias are', async () => {
    const shape = [3, 4, 2, 5];
    const x0 = quant(randomArray(120, freshSeed()), 'f32');
    const r0 = quant(randomArray(120, freshSeed()), 'f32');
    const w0 = quant(randomArray(4, freshSeed()), 'f32');
    const x = make(x0, shape);
    const w = make(w0, [4], 'f32', true);
    const b = make(new Float64Array(4), [4], 'f32', true);
    ops.batchNorm2d(x, { weight: w, bias: b, training: true }).mul(make(r0, shape)).sum().backward();
    const g = refBatchNormGrads(x0, r0, shape, { w: w0, training: true, momentum: 0.1, eps: 1e-5 });
    expect(x.grad).toBeNull();
    expect(relativeError(await w.grad!.toArray(), g.dw)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(await b.grad!.toArray(), g.db)).toBeLessThanOrEqual(1e-5);
  });

  test('training without running stats uses the batch statistics; momentum 0 and 1 are the ends of the update', async () => {
    const shape = [4, 2, 3, 3];
    const x0 = quant(randomArray(72, freshSeed(), 3), 'f32');
    const y = ops.batchNorm2d(make(x0, shape), { training: true });
    expect(relativeError(await y.toArray(), refBatchNorm(x0, shape, { training: true, momentum: 0.1, eps: 1e-5 }).y)).toBeLessThanOrEqual(1e-5);
    const rm0 = quant(randomArray(2, freshSeed()), 'f32');
    const rv0 = quant(positive(2, freshSeed()), 'f32');
    for (const momentum of [0, 1]) {
      const rm = make(rm0, [2]);
      const rv = make(rv0, [2]);
      ops.batchNorm2d(make(x0, shape), { training: true, runningMean: rm, runningVar: rv, momentum });
      const ref = refBatchNorm(x0, shape, { rm: rm0, rv: rv0, training: true, momentum, eps: 1e-5 });
      // momentum 1 stores the batch mean itself, which can sit near 0 for ±3 data: its f32 sum over 36 values is
      // off by up to ~36·2⁻²⁴·3 ≈ 7e-6 absolute, however small the mean (statError's scale is then 1).
      const rmGot = await rm.toArray();
      if (momentum === 0) expect(relativeError(rmGot, ref.rm!)).toBe(0);
      else expect(statError(rmGot, ref.rm!)).toBeLessThanOrEqual(1e-5);
      expect(relativeError(await rv.toArray(), ref.rv!)).toBeLessThanOrEqual(momentum === 0 ? 0 : 1e-5);
    }
  });

  test('a channel with a large mean keeps its precision (training, forward and backward)', async () => {
    const shape = [3, 2, 8, 8];
    const x0 = quant(randomArray(384, freshSeed()).map((v) => 1e4 + v), 'f32');
    const r0 = quant(randomArray(384, freshSeed()), 'f32');
    const p: BnParams = { training: true, momentum: 0.1, eps: 1e-5 };
    const x = make(x0, shape, 'f32', true);
    const y = ops.batchNorm2d(x, { training: true });
    expect(relativeError(await y.toArray(), refBatchNorm(x0, shape, p).y)).toBeLessThanOrEqual(1e-5);
    y.mul(make(r0, shape)).sum().backward();
    expect(relativeError(await x.grad!.toArray(), refBatchNormGrads(x0, r0, shape, p).dx)).toBeLessThanOrEqual(1e-4);
  });

  test('the same inputs give the same bits (no atomics in the reductions)', async () => {
    const shape = [3, 4, 9, 11];
    const x0 = randomArray(1188, freshSeed());
    const r0 = randomArray(1188, freshSeed());
    const run = async () => {
      const x = make(x0, shape, 'f32', true);
      const w = make(randomArray(4, 7), [4], 'f32', true);
      ops.batchNorm2d(x, { weight: w, training: true }).mul(make(r0, shape)).sum().backward();
      return [...(await x.grad!.toArray()), ...(await w.grad!.toArray())];
    };
    expect(await run()).toEqual(await run());
  });

  // bf16 tolerance: the output and dx are rounded to bf16 (2⁻⁹ ≈ 2e-3 relative per element) from f32 work on
  // bf16-exact inputs; the design's bf16 bound is 1e-2, against a float64 reference on the same rounded inputs.
  test.each([['f32'], ['bf16']] as const)('bf16 input with %s parameters and running stats, both modes', async (pdt) => {
    const shape = [3, 6, 5, 7];
    const numel = 630;
    for (const training of [true, false]) {
      const x0 = quant(randomArray(numel, freshSeed(), 3), 'bf16');
      const w0 = quant(randomArray(6, freshSeed(), 0.1).map((v) => 1 + v), pdt);
      const b0 = quant(randomArray(6, freshSeed()), pdt);
      const rm0 = quant(randomArray(6, freshSeed()), pdt);
      const rv0 = quant(positive(6, freshSeed()), pdt);
      const r0 = quant(randomArray(numel, freshSeed()), 'bf16');
      const p: BnParams = { w: w0, b: b0, rm: rm0, rv: rv0, training, momentum: 0.1, eps: 1e-5 };
      const x = make(x0, shape, 'bf16', true);
      const w = make(w0, [6], pdt, true);
      const b = make(b0, [6], pdt, true);
      const rm = make(rm0, [6], pdt);
      const rv = make(rv0, [6], pdt);
      const y = ops.batchNorm2d(x, { weight: w, bias: b, runningMean: rm, runningVar: rv, training });
      expect(y.dtype).toBe('bf16');
      const ref = refBatchNorm(x0, shape, p);
      expect(relativeError(await y.toArray(), ref.y)).toBeLessThanOrEqual(1e-2);
      expect(statError(await rm.toArray(), ref.rm!)).toBeLessThanOrEqual(pdt === 'bf16' ? 1e-2 : 1e-6);
      expect(statError(await rv.toArray(), ref.rv!)).toBeLessThanOrEqual(pdt === 'bf16' ? 1e-2 : 1e-6);
      y.mul(make(r0, shape, 'bf16')).sum().backward();
      expect([x.grad!.dtype, w.grad!.dtype, b.grad!.dtype]).toEqual(['bf16', pdt, pdt]);
      const g = refBatchNormGrads(x0, r0, shape, p);
      expect(relativeError(await x.grad!.toArray(), g.dx)).toBeLessThanOrEqual(1e-2);
      // f32 sums of bf16-exact values: only the f32 rounding (and, for bf16 parameters, the stored gradient's).
      expect(relativeError(await w.grad!.toArray(), g.dw)).toBeLessThanOrEqual(pdt === 'bf16' ? 1e-2 : 1e-4);
      expect(relativeError(await b.grad!.toArray(), g.db)).toBeLessThanOrEqual(pdt === 'bf16' ? 1e-2 : 1e-4);
    }
  });

  test('eval on an empty batch gives an empty output', async () => {
    const y = ops.batchNorm2d(tensor([], [0, 2, 3, 3], { device }), { training: false, runningMean: make(new Float64Array(2), [2]), runningVar: make(positive(2, 1), [2]) });
    expect(y.shape).toEqual([0, 2, 3, 3]);
    expect((await y.toArray()).length).toBe(0);
  });

  test('bad input names the op and the problem', () => {
    const x = make(new Float64Array(2 * 3 * 4), [2, 3, 2, 2]);
    const c3 = make(new Float64Array(3), [3]);
    const c4 = make(new Float64Array(4), [4]);
    const c3bf = make(new Float64Array(3), [3], 'bf16');
    const bn = (opts: Record<string, unknown>, input: Tensor = x) => () => ops.batchNorm2d(input, { training: true, ...opts } as never);
    expect(bn({})).not.toThrow();
    expect(bn({ weight: c4 })).toThrow('batchNorm2d: weight has shape [4], expected [3] to match the channels of [2, 3, 2, 2]');
    expect(bn({ bias: c4 })).toThrow('batchNorm2d: bias has shape [4], expected [3]');
    expect(bn({ runningMean: c4, runningVar: c4 })).toThrow('batchNorm2d: runningMean has shape [4], expected [3]');
    expect(bn({ weight: c3bf })).toThrow('batchNorm2d: weight is bf16, expected f32');
    expect(bn({ weight: c3, bias: make(new Float64Array(3), [3], 'bf16') })).toThrow('batchNorm2d: bias is bf16, expected f32');
    expect(bn({ runningMean: c3 })).toThrow('batchNorm2d: runningMean and runningVar must be given together (only runningMean was)');
    expect(bn({ runningVar: c3 })).toThrow('batchNorm2d: runningMean and runningVar must be given together (only runningVar was)');
    expect(bn({ training: false })).toThrow('batchNorm2d: eval mode (training: false) needs runningMean and runningVar');
    expect(bn({ training: undefined })).toThrow('batchNorm2d: training must be a boolean');
    expect(bn({ eps: 0 })).toThrow('batchNorm2d: eps must be positive and finite, got 0');
    expect(bn({ eps: -1 })).toThrow(/eps must be positive/);
    expect(bn({ momentum: 1.5 })).toThrow('batchNorm2d: momentum must be a number in [0, 1], got 1.5');
    expect(bn({ momentum: null })).not.toThrow();  // null: the default, as undefined
    expect(bn({}, make(new Float64Array(12), [3, 4]).reshape([1, 4, 3, 1]))).not.toThrow();
    expect(bn({}, make(new Float64Array(4), [1, 4, 1, 1]))).toThrow('batchNorm2d: training needs more than one value per channel, got input of shape [1, 4, 1, 1]');
    expect(bn({}, make(new Float64Array(6), [1, 2, 3]))).toThrow('batchNorm2d: input must be [N, C, H, W] or [N, C], got shape [1, 2, 3]');
    expect(bn({}, tensor([1, 2], [1, 2], { device, dtype: 'i32' }))).toThrow('batchNorm2d: i32 tensors are not supported');
    expect(bn({ runningMean: c3, runningVar: make(new Float64Array(3), [3], 'f32', true) })).toThrow('batchNorm2d: runningVar is a buffer updated in place and must not require a gradient');
    expect(bn({ weight: [1, 2, 3] })).toThrow('batchNorm2d: weight must be a Tensor, got object');
    expect(() => ops.batchNorm2d(x, undefined as never)).toThrow('batchNorm2d: options must be an object');
    const other = device === 'cpu' ? undefined : tensor([1, 1, 1], [3]);
    if (other) expect(bn({ weight: other })).toThrow(`batchNorm2d: weight is on cpu, the input on ${device}`);
  });
});

describeEachDevice('batchnorm bindings on %s', (device: Device) => {
  // What TS already checks, checked again against the buffers themselves: a wrong count from JS never overruns.
  test('sizes, fields and modes are re-checked against the buffers', () => {
    const buf = (n: number) => zeros([n], { device }).native('t');
    const geometry = { n: 2, c: 3, hw: 4, dtype: 'f32' as const, paramDtype: 'f32' as const };
    const fwd = { y: buf(24), x: buf(24), mean: buf(3), invstd: buf(3), runningMean: buf(3), runningVar: buf(3),
      eps: 1e-5, momentum: 0.1, training: true, statsDtype: 'f32' as const, geometry };
    expect(() => native.batchNormForward(fwd)).not.toThrow();
    expect(() => native.batchNormForward({ ...fwd, geometry: { ...geometry, hw: 5 } })).toThrow('batchNorm2d: y holds 96 bytes, fewer than 30 f32 elements');
    expect(() => native.batchNormForward({ ...fwd, weight: buf(2) })).toThrow('batchNorm2d: weight holds 8 bytes, fewer than 3 f32 elements');
    expect(() => native.batchNormForward({ ...fwd, runningVar: undefined })).toThrow('batchNorm2d: runningMean and runningVar must be given together');
    expect(() => native.batchNormForward({ ...fwd, geometry: { ...geometry, n: 1, hw: 1 } })).toThrow('batchNorm2d: training needs more than one value per channel');
    expect(() => native.batchNormForward({ ...fwd, momentum: 2 })).toThrow('batchNorm2d: momentum must be in [0, 1]');
    expect(() => native.batchNormForward({ ...fwd, eps: 0 })).toThrow('batchNorm2d: eps must be > 0');
    expect(() => native.batchNormForward({ ...fwd, geometry: { ...geometry, c: 0 } })).toThrow('batchNorm2d geometry: c must be an integer in [1, ');
    expect(() => native.batchNormForward({ ...fwd, statsDtype: 'i32' as never })).toThrow("batchNorm2d: statsDtype must be one of 'f32', 'bf16', got 'i32'");
    expect(() => native.batchNormForward({ ...fwd, geometry: { ...geometry, dtype: 'bf16', paramDtype: 'bf16' }, statsDtype: 'f32' })).not.toThrow();
    expect(() => native.batchNormForward({ ...fwd, geometry: { ...geometry, paramDtype: 'bf16' } })).toThrow("batchNorm2d: paramDtype must be the input's dtype or f32");
    const bwd = { dy: buf(24), x: buf(24), mean: buf(3), invstd: buf(3), training: true, geometry };
    expect(() => native.batchNormBackward({ ...bwd, dx: buf(23) })).toThrow('batchNorm2d backward: dx holds 92 bytes, fewer than 24 f32 elements');
    expect(() => native.batchNormBackward({ ...bwd, invstd: buf(2) })).toThrow('batchNorm2d backward: invstd holds');
    const ln = { y: buf(24), x: buf(24), mean: buf(8), rstd: buf(8), weight: buf(3), bias: buf(3), eps: 1e-6, geometry };
    expect(() => native.layerNorm2dForward(ln)).not.toThrow();
    expect(() => native.layerNorm2dForward({ ...ln, rstd: buf(7) })).toThrow('layerNorm2d: rstd holds 28 bytes, fewer than 8 f32 elements');
    expect(() => native.layerNorm2dForward({ ...ln, bias: undefined as never })).toThrow('layerNorm2d: bias');
    expect(() => native.layerNorm2dBackward({ ...ln, dx: buf(24), dweight: buf(3), dbias: buf(1), dy: buf(24) })).toThrow('layerNorm2d backward: dbias holds 4 bytes, fewer than 3 f32 elements');
    expect(() => (native.batchNormForward as (a: unknown) => void)(5)).toThrow('batchNorm2d: expected an options object');
  });
});

describeEachDevice('foldBatchNorm on %s', (device: Device) => {
  test.each([true, false])('1×1 conv then eval BatchNorm equals the folded conv (conv bias %s)', async (withBias) => {
    const [n, cin, cout, hw] = [2, 5, 4, 6];
    const eps = 1e-3;
    const w0 = quant(randomArray(cout * cin, freshSeed()), 'f32');
    const cb0 = withBias ? quant(randomArray(cout, freshSeed()), 'f32') : new Float64Array(cout);
    const g0 = quant(randomArray(cout, freshSeed()), 'f32');
    const be0 = quant(randomArray(cout, freshSeed()), 'f32');
    const m0 = quant(randomArray(cout, freshSeed()), 'f32');
    const v0 = quant(positive(cout, freshSeed()), 'f32');
    const x0 = quant(randomArray(n * cin * hw, freshSeed()), 'f32');
    // The 1×1 conv as a loop in float64.
    const conv = (w: ArrayLike<number>, b: ArrayLike<number>) => {
      const z = new Float64Array(n * cout * hw);
      for (let i = 0; i < n; i++)
        for (let o = 0; o < cout; o++)
          for (let q = 0; q < hw; q++) {
            let s = b[o];
            for (let k = 0; k < cin; k++) s += w[o * cin + k] * x0[(i * cin + k) * hw + q];
            z[(i * cout + o) * hw + q] = s;
          }
      return z;
    };
    const t = (a: Float64Array, shape: number[]) => tensor(f32(a), shape, { device });
    const bnOpts = { weight: t(g0, [cout]), bias: t(be0, [cout]), runningMean: t(m0, [cout]), runningVar: t(v0, [cout]) };
    const folded = ops.foldBatchNorm(t(w0, [cout, cin, 1, 1]), withBias ? t(cb0, [cout]) : undefined, { ...bnOpts, eps });
    expect(folded.weight.shape).toEqual([cout, cin, 1, 1]);
    expect(folded.bias.shape).toEqual([cout]);
    // The folded values in float64.
    const s = g0.map((g, o) => g / Math.sqrt(v0[o] + eps));
    const wRef = w0.map((v, i) => v * s[Math.floor(i / cin)]);
    const bRef = cb0.map((b, o) => (b - m0[o]) * s[o] + be0[o]);
    const [wf, bf] = [await read(folded.weight), await read(folded.bias)];
    expect(relativeError(wf, wRef)).toBeLessThanOrEqual(1e-6);
    expect(relativeError(bf, bRef)).toBeLessThanOrEqual(1e-6);
    // conv then BN (the op, eval) against the conv with the folded values.
    const bn = ops.batchNorm2d(t(conv(w0, cb0), [n, cout, 2, 3]), { ...bnOpts, training: false, eps });
    expect(relativeError(await bn.toArray(), conv(wf, bf))).toBeLessThanOrEqual(1e-5);
  });

  test('bf16 conv weights with f32 BatchNorm tensors', async () => {
    const w0 = quant(randomArray(24, freshSeed()), 'bf16');
    const v0 = quant(positive(3, freshSeed()), 'f32');
    const g0 = quant(randomArray(3, freshSeed()), 'f32');
    const t = (a: Float64Array, shape: number[], dtype: DType = 'f32') => tensor(f32(a), shape, { device, dtype });
    const zero = t(new Float64Array(3), [3]);
    const folded = ops.foldBatchNorm(t(w0, [3, 8], 'bf16'), undefined, { weight: t(g0, [3]), bias: zero, runningMean: zero, runningVar: t(v0, [3]) });
    expect([folded.weight.dtype, folded.bias.dtype]).toEqual(['bf16', 'bf16']);
    const ref = w0.map((v, i) => (v * g0[Math.floor(i / 8)]) / Math.sqrt(v0[Math.floor(i / 8)] + 1e-5));
    expect(relativeError(await folded.weight.toArray(), ref)).toBeLessThanOrEqual(1e-2);
  });

  test('bad input: gradients, shapes, dtypes', () => {
    const t = (shape: number[], opts: { requiresGrad?: boolean; dtype?: DType } = {}) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1), shape, { device, ...opts });
    const bn = { weight: t([4]), bias: t([4]), runningMean: t([4]), runningVar: t([4]) };
    expect(() => ops.foldBatchNorm(t([4, 3, 3, 3], { requiresGrad: true }), undefined, bn)).toThrow(
      'foldBatchNorm: is for eval/inference only and has no gradient, but convWeight requires one; pass convWeight.detach()');
    expect(() => ops.foldBatchNorm(t([4, 3]), undefined, { ...bn, weight: t([4], { requiresGrad: true }) })).toThrow(/weight requires one/);
    expect(() => ops.foldBatchNorm(t([4, 3]), t([3]), bn)).toThrow('foldBatchNorm: convBias has shape [3], expected [4] (the output channels of convWeight [4, 3])');
    expect(() => ops.foldBatchNorm(t([5, 3]), undefined, bn)).toThrow('foldBatchNorm: weight has shape [4], expected [5] to match the channels of convWeight [5, 3] (dim 0)');
    expect(() => ops.foldBatchNorm(t([4, 3]), t([4], { dtype: 'bf16' }), bn)).toThrow('foldBatchNorm: convBias is bf16, convWeight f32; they must match');
    expect(() => ops.foldBatchNorm(t([4, 3]), undefined, { ...bn, runningVar: undefined } as never)).toThrow('foldBatchNorm: runningVar is required');
    expect(() => ops.foldBatchNorm(t([4, 3]), undefined, { ...bn, eps: 0 })).toThrow('foldBatchNorm: eps must be positive');
  });
});

describeEachDevice('layerNorm2d on %s', (device: Device) => {
  test.each([
    [[3, 5, 7, 9]],
    [[2, 1, 3, 3]],
    [[4, 6]],
    [[1, 8, 1, 1]],
    [[2, 40, 17, 19]],
  ])('%j: forward and all three gradients match float64', async (shape) => {
    const { c } = dimsOf(shape);
    const numel = shape.reduce((a, b) => a * b, 1);
    const eps = 1e-6;
    const x0 = quant(randomArray(numel, freshSeed(), 2), 'f32');
    const w0 = quant(randomArray(c, freshSeed()), 'f32');
    const b0 = quant(randomArray(c, freshSeed()), 'f32');
    const r0 = quant(randomArray(numel, freshSeed()), 'f32');
    const x = tensor(f32(x0), shape, { device, requiresGrad: true });
    const w = tensor(f32(w0), [c], { device, requiresGrad: true });
    const b = tensor(f32(b0), [c], { device, requiresGrad: true });
    const y = ops.layerNorm2d(x, w, b, eps);
    expect(relativeError(await y.toArray(), refLayerNorm2d(x0, shape, w0, b0, eps))).toBeLessThanOrEqual(1e-5);
    y.mul(tensor(f32(r0), shape, { device })).sum().backward();
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(refLayerNorm2d(xx, shape, ww, bb, eps), r0);
    // One channel: y = β whatever x is, so dx is exactly 0.
    if (c === 1) expect(Array.from(await x.grad!.toArray())).toEqual(new Array(numel).fill(0));
    await expectFiniteDifferences(loss, [x0, w0, b0], [x.grad!, w.grad!, b.grad!], [c > 1 ? 1e-4 : null, 1e-5, 1e-5]);
  });

  test('a large mean over the channels keeps its precision', async () => {
    const shape = [2, 64, 3, 4];
    const x0 = quant(randomArray(1536, freshSeed()).map((v) => 1e4 + v), 'f32');
    const w0 = quant(randomArray(64, freshSeed()), 'f32');
    const b0 = quant(randomArray(64, freshSeed()), 'f32');
    const y = ops.layerNorm2d(tensor(f32(x0), shape, { device }), tensor(f32(w0), [64], { device }), tensor(f32(b0), [64], { device }), 1e-5);
    expect(relativeError(await y.toArray(), refLayerNorm2d(x0, shape, w0, b0, 1e-5))).toBeLessThanOrEqual(1e-5);
  });

  // bf16: output and dx rounded to bf16 (≈ 2e-3 per element), so the design's 1e-2; f32 parameter gradients are
  // f32 sums of bf16-exact values, so 1e-4.
  test('bf16 input with f32 weight and bias: forward and gradients', async () => {
    const shape = [2, 24, 5, 6];
    const numel = 1440;
    const x0 = quant(randomArray(numel, freshSeed(), 3), 'bf16');
    const w0 = quant(randomArray(24, freshSeed(), 0.05).map((v) => 1 + v), 'f32');
    const b0 = quant(randomArray(24, freshSeed(), 0.05), 'f32');
    const r0 = quant(randomArray(numel, freshSeed()), 'bf16');
    const x = tensor(f32(x0), shape, { device, dtype: 'bf16', requiresGrad: true });
    const w = tensor(f32(w0), [24], { device, requiresGrad: true });
    const b = tensor(f32(b0), [24], { device, requiresGrad: true });
    const y = ops.layerNorm2d(x, w, b);
    expect(y.dtype).toBe('bf16');
    expect(relativeError(await y.toArray(), refLayerNorm2d(x0, shape, w0, b0, 1e-6))).toBeLessThanOrEqual(1e-2);
    y.mul(tensor(f32(r0), shape, { device, dtype: 'bf16' })).sum().backward();
    expect([x.grad!.dtype, w.grad!.dtype, b.grad!.dtype]).toEqual(['bf16', 'f32', 'f32']);
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(refLayerNorm2d(xx, shape, ww, bb, 1e-6), r0);
    await expectFiniteDifferences(loss, [x0, w0, b0], [x.grad!, w.grad!, b.grad!], [1e-2, 1e-4, 1e-4]);
  });

  test('bad input names the op and the problem', () => {
    const x = tensor(new Float32Array(24), [2, 3, 2, 2], { device });
    const c3 = tensor(new Float32Array(3), [3], { device });
    const c4 = tensor(new Float32Array(4), [4], { device });
    const c3bf = tensor(new Float32Array(3), [3], { device, dtype: 'bf16' });
    expect(() => ops.layerNorm2d(x, c4, c3)).toThrow('layerNorm2d: weight has shape [4], expected [3] to match the channels of [2, 3, 2, 2]');
    expect(() => ops.layerNorm2d(x, c3, c4)).toThrow('layerNorm2d: bias has shape [4], expected [3]');
    expect(() => ops.layerNorm2d(x, c3bf, c3bf)).toThrow('layerNorm2d: weight is bf16, expected f32');
    expect(() => ops.layerNorm2d(x.cast('bf16'), c3bf, c3)).toThrow('layerNorm2d: weight is bf16 but bias is f32; they must match');
    expect(() => ops.layerNorm2d(x, c3, c3, 0)).toThrow('layerNorm2d: eps must be positive and finite, got 0');
    expect(() => ops.layerNorm2d(tensor(new Float32Array(6), [6], { device }), c3, c3)).toThrow('layerNorm2d: input must be [N, C, H, W] or [N, C], got shape [6]');
    expect(() => ops.layerNorm2d(x, undefined as never, c3)).toThrow('layerNorm2d: weight must be a Tensor, got undefined');
  });
});
