// The layout ops (ops.permute, cat, narrow, chunk, pad2d, sum, mean, windowPartition, windowReverse) on every backend
// against plain float64 references: outputs poisoned first, fresh random inputs, odd shapes, bf16 against the
// bf16-rounded reference, gradients against the reference's adjoint (exact for pure copies) and, for sum and mean,
// finite differences; then bad input.
import { Device, DType, ops, tensor } from '../ts';
import { native } from '../ts/native';
import {
  catCase, chunkCase, gather, Movement, narrowCase, padCase, partitionCase, permuteCase, ravel, refReduce, reverseCase, unravel,
} from './support/layout-reference';
import {
  describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, sampledFiniteDifference,
  sampledRelativeError, testDevices,
} from './support/reference';

poisonOutputs();

const TOL: Record<'f32' | 'bf16', number> = { f32: 1e-5, bf16: 1e-2 };
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const quantize = (x: ArrayLike<number>, dtype: DType) =>
  Float64Array.from(x, dtype === 'bf16' ? roundBf16 : dtype === 'i32' ? (v) => Math.round(v * 1000) + 0 : Math.fround); // + 0: an i32 holds no -0

// Pure data movement: every output element is one input element or padding (see support/layout-reference.ts).
const MOVEMENTS: Movement[] = [
  permuteCase([3, 1, 5, 2], [2, 0, 3, 1]),
  permuteCase([2, 3, 1, 2, 3, 2], [5, 3, 1, 0, 4, 2]),
  permuteCase([4, 7], [-1, 0]),
  permuteCase([7], [0]),
  permuteCase([], []),
  permuteCase([2, 5, 3, 4], [0, 2, 3, 1]),
  catCase([[2, 3, 4], [2, 1, 4], [2, 0, 4], [2, 2, 4]], 1),
  catCase([[3, 5], [2, 5]], 0),
  catCase([[2, 3, 1], [2, 3, 4]], -1),
  narrowCase([5, 7], 1, 2, 3),
  narrowCase([6, 3, 2], 0, -4, 3),
  narrowCase([2, 3, 9], -1, 8, 1),
  narrowCase([3, 4], 1, 4, 0),
  chunkCase([7, 3], 3, 0, [3, 3, 1]),
  chunkCase([2, 5], 4, 1, [2, 2, 1]),
  chunkCase([4, 6], 2, -1, [3, 3]),
  padCase([2, 3, 5, 4], [1, 2, 0, 3], 'zero'),
  padCase([1, 2, 5, 6], [-1, 2, 1, -2], 'zero'),
  padCase([2, 2, 5, 4], [2, 3, 1, 4], 'reflect'),
  padCase([1, 3, 3, 7], [0, 6, 2, 0], 'reflect'),
  padCase([2, 3, 2, 3], [4, 1, 3, 5], 'replicate'),
  padCase([1, 1, 1, 1], [2, 1, 0, 3], 'replicate'),
  partitionCase([2, 5, 7, 3], 3),
  partitionCase([1, 4, 4, 2], 2),
  partitionCase([1, 3, 2, 5], 4),
  partitionCase([2, 3, 3, 1], 1),
  partitionCase([2, 5, 7, 3], 3, 'NCHW'),
  partitionCase([2, 5, 7, 3], 3, 'NHWC', 'reflect'),
  partitionCase([1, 6, 5, 4], 4, 'NCHW', 'reflect'),
  partitionCase([1, 4, 4, 2], 2, 'NCHW', 'reflect'),
  reverseCase(2, 5, 7, 3, 3),
  reverseCase(1, 4, 4, 2, 2),
  reverseCase(1, 3, 2, 5, 4),
  reverseCase(2, 5, 7, 3, 3, 'NCHW'),
  // Innermost runs of 8 or 16 contiguous elements at aligned offsets: the gpu copy's 16-byte path.
  partitionCase([1, 5, 6, 16], 4),
  reverseCase(2, 6, 3, 8, 4),
  catCase([[2, 1, 8], [2, 3, 8]], 1),
  narrowCase([3, 24], 1, 8, 16),
  narrowCase([3, 24], 1, 2, 8),
  permuteCase([3, 4, 16], [1, 0, 2]),
  // Several 32 x 32 tiles with ragged edges: the gpu transpose path (NCHW -> NHWC, a token transpose, a 4-d shuffle).
  permuteCase([2, 33, 5, 7], [0, 2, 3, 1]),
  permuteCase([2, 40, 35], [0, 2, 1]),
  permuteCase([3, 34, 2, 37], [2, 3, 0, 1]),
];

describeEachDevice('layout data movement on %s against float64', (device) => {
  describe.each(['f32', 'bf16'] as const)('%s', (dtype) => {
    test.each(MOVEMENTS.map((c) => [c.name, c] as const))('%s: output and gradient', async (_, c) => {
      const inputs = c.shapes.map((s) => quantize(randomArray(numel(s), freshSeed()), dtype));
      const flat = Float64Array.from(inputs.flatMap((v) => Array.from(v)));
      const xs = inputs.map((v, i) => tensor(Float32Array.from(v), c.shapes[i], { device, dtype, requiresGrad: true }));
      const outs = c.run(xs);
      const ref = c.ref();
      expect(outs.length).toBe(ref.length);
      // Every output element is a copy, so bf16 and f32 alike must match the reference bit for bit.
      for (let k = 0; k < ref.length; k++) {
        expect(outs[k].shape).toEqual(ref[k].shape);
        expect(outs[k].dtype).toBe(dtype);
        expect(Array.from(await outs[k].toArray())).toEqual(Array.from(gather(flat, ref[k].src)));
      }
      // d Σ_k Σ out_k · w_k: the adjoint of the index map scatter-adds each weight into the element it read.
      const ws = ref.map((r) => quantize(randomArray(r.src.length, freshSeed()), dtype));
      const loss = outs.map((o, k) => o.mul(tensor(Float32Array.from(ws[k]), o.shape, { device, dtype })).sum()).reduce((a, b) => a.add(b));
      loss.backward();
      const adjoint = new Float64Array(flat.length);
      ref.forEach((r, k) => r.src.forEach((s, j) => s >= 0 && (adjoint[s] += ws[k][j])));
      let at = 0;
      for (const x of xs) {
        const want = adjoint.subarray(at, (at += x.numel));
        const got = await x.grad!.toArray();
        if (c.sums) expect(relativeError(got, want)).toBeLessThanOrEqual(TOL[dtype]);
        else expect(Array.from(got)).toEqual(Array.from(want));
      }
    });
  });

  test.each(MOVEMENTS.filter((c) => !c.sums).map((c) => [c.name, c] as const))(
    'i32 %s copies integers exactly', async (_, c) => {
      const inputs = c.shapes.map((s) => quantize(randomArray(numel(s), freshSeed()), 'i32'));
      const flat = Float64Array.from(inputs.flatMap((v) => Array.from(v)));
      const outs = c.run(inputs.map((v, i) => tensor(Array.from(v), c.shapes[i], { device, dtype: 'i32' })));
      const ref = c.ref();
      for (let k = 0; k < ref.length; k++) expect(Array.from(await outs[k].toArray())).toEqual(Array.from(gather(flat, ref[k].src)));
    },
  );

  test('reflect and replicate backward are bitwise the same run to run', async () => {
    const x = tensor(Float32Array.from(randomArray(2 * 3 * 6 * 5, freshSeed())), [2, 3, 6, 5], { device, requiresGrad: true });
    for (const mode of ['reflect', 'replicate'] as const) {
      const y = ops.pad2d(x, [4, 3, 5, 2], mode);
      const g = tensor(Float32Array.from(randomArray(y.numel, freshSeed())), y.shape, { device });
      const a = await y.gradNode!.backward(g)[0]!.toArray();
      const b = await y.gradNode!.backward(g)[0]!.toArray();
      expect(Array.from(b)).toEqual(Array.from(a));
    }
  });

  test('empty maps and empty dims pass through every op and its backward', async () => {
    const opts = { device, requiresGrad: true };
    const x = tensor([], [2, 0, 3, 4], opts);
    const outs = [
      ops.windowPartition(tensor([], [1, 0, 5, 2], opts), 2).tokens, ops.pad2d(x, [1, 1, 1, 1]), ops.permute(x, [3, 2, 1, 0]),
      ops.narrow(x, 1, 0, 0), ops.cat([x, x], 1), ops.sum(x, 3), ops.mean(x, 1, true),
    ];
    expect(outs.map((o) => o.shape)).toEqual([[0, 4, 2], [2, 0, 5, 6], [4, 3, 0, 2], [2, 0, 3, 4], [2, 0, 3, 4], [2, 0, 3], [2, 1, 3, 4]]);
    outs.reduce((a, o) => a.add(o.sum()), outs[0].sum()).backward();
    expect(x.grad!.shape).toEqual([2, 0, 3, 4]);
  });

  test('windowReverse undoes windowPartition, and the pair passes gradients straight through', async () => {
    const x0 = Float32Array.from(randomArray(2 * 7 * 9 * 4, freshSeed()));
    const x = tensor(x0, [2, 7, 9, 4], { device, requiresGrad: true });
    const { tokens, Hp, Wp } = ops.windowPartition(x, 4);
    const y = ops.windowReverse(tokens, 4, 7, 9, Hp, Wp);
    expect(Array.from(await y.toArray())).toEqual(Array.from(x0));
    y.sum().backward();
    expect(Array.from(await x.grad!.toArray())).toEqual(new Array(x0.length).fill(1));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// sum and mean over one dim.

const REDUCTIONS: Array<{ shape: number[]; dim: number; keepdim: boolean }> = [
  { shape: [3, 5, 7], dim: 0, keepdim: false },
  { shape: [3, 5, 7], dim: 1, keepdim: true },
  { shape: [3, 5, 7], dim: -1, keepdim: false },
  { shape: [2, 300], dim: 1, keepdim: true },
  { shape: [4, 1, 3], dim: 1, keepdim: false },
  { shape: [1, 67, 2], dim: -2, keepdim: false },
  { shape: [11], dim: 0, keepdim: false },
  // Wider than a cpu column block (512) and longer than the gpu's 8-way split of n.
  { shape: [2, 19, 600], dim: 1, keepdim: false },
];

describeEachDevice('sum and mean over a dim on %s against float64', (device) => {
  describe.each(['f32', 'bf16'] as const)('%s', (dtype) => {
    test.each(REDUCTIONS.flatMap((r) => (['sum', 'mean'] as const).map((op) => [`${op} ${JSON.stringify(r.shape)} dim ${r.dim}${r.keepdim ? ' keepdim' : ''}`, op, r] as const)))(
      '%s: output and gradient', async (_, op, r) => {
        const isMean = op === 'mean';
        const x0 = quantize(randomArray(numel(r.shape), freshSeed()), dtype);
        const x = tensor(Float32Array.from(x0), r.shape, { device, dtype, requiresGrad: true });
        const y = ops[op](x, r.dim, r.keepdim);
        const d = r.dim < 0 ? r.dim + r.shape.length : r.dim;
        expect(y.shape).toEqual(r.keepdim ? r.shape.map((s, k) => (k === d ? 1 : s)) : r.shape.filter((_, k) => k !== d));
        const ref = refReduce(x0, r.shape, r.dim, isMean);
        const got = await y.toArray();
        // Against the size of what is summed (the same reduction of |x|): a sum of 11 draws can cancel to near 0,
        // where its f32 rounding, relative to the tiny result, measured 2.2e-5; relative to Σ|x| it is ~1e-7.
        const scale = refReduce(x0.map(Math.abs), r.shape, r.dim, isMean);
        const want = dtype === 'bf16' ? Float64Array.from(ref, roundBf16) : ref;
        const err = Math.hypot(...Array.from(got, (v, i) => v - want[i])) / Math.max(Math.hypot(...scale), Math.hypot(...want));
        expect(err).toBeLessThanOrEqual(TOL[dtype]);
        const w0 = quantize(randomArray(ref.length, freshSeed()), dtype);
        y.mul(tensor(Float32Array.from(w0), y.shape, { device, dtype })).sum().backward();
        const grad = await x.grad!.toArray();
        const f = (v: Float64Array) => refReduce(v, r.shape, r.dim, isMean).reduce((a, o, i) => a + o * w0[i], 0);
        const fd = sampledFiniteDifference(f, x0, { count: 32, seed: freshSeed(), h: 1e-3 });
        expect(sampledRelativeError(grad, fd)).toBeLessThanOrEqual(TOL[dtype]);
        // The adjoint exactly: each input gets its output's weight (over n for mean).
        const adj = Float64Array.from(x0, (_, i) => {
          const idx = unravel(i, r.shape).filter((_, k) => k !== d);
          const outShape = r.shape.filter((_, k) => k !== d);
          return w0[ravel(idx, outShape)] / (isMean ? r.shape[d] : 1);
        });
        expect(relativeError(grad, dtype === 'bf16' ? Float64Array.from(adj, roundBf16) : adj)).toBeLessThanOrEqual(TOL[dtype] / 10);
      },
    );
  });

  test('an empty dim sums to 0 and averages to NaN; an empty output is empty', async () => {
    const x = tensor([], [3, 0, 2], { device });
    expect(Array.from(await ops.sum(x, 1).toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(await ops.mean(x, 1).toArray()).every(Number.isNaN)).toBe(true);
    expect(ops.sum(x, 0).shape).toEqual([0, 2]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Bad input: every op names itself and the problem; the binding refuses plans that reach past a buffer.

describeEachDevice('layout ops on %s refuse bad input', (device) => {
  const t = (shape: number[], dtype: DType = 'f32', dev: Device = device) => tensor(new Float32Array(numel(shape)), shape, { dtype, device: dev });

  test('permute', () => {
    expect(() => ops.permute(t([2, 3]), [0, 0])).toThrow(/permute: dims \[0,0\] repeat a dimension/);
    expect(() => ops.permute(t([2, 3]), [0])).toThrow(/permute: dims must list all 2 dimensions/);
    expect(() => ops.permute(t([2, 3]), [0, 2])).toThrow(/permute: dims\[1\] 2 is out of range for a rank-2 tensor/);
    expect(() => ops.permute(t([1, 1, 1, 1, 1, 1, 1]), [0, 1, 2, 3, 4, 5, 6])).toThrow(/permute: tensors of rank 7 are not supported \(at most 6/);
    expect(ops.MAX_PERMUTE_DIMS).toBe(6);
    // The exported constant and the native family's limit (native/layout/layout.h), which the ops ask, agree.
    expect(native.layoutUnsupported(ops.MAX_PERMUTE_DIMS)).toBeNull();
    expect(native.layoutUnsupported(ops.MAX_PERMUTE_DIMS + 1)).toBe(`tensors of rank ${ops.MAX_PERMUTE_DIMS + 1} are not supported (at most ${ops.MAX_PERMUTE_DIMS} dims)`);
  });

  test('cat', () => {
    expect(() => ops.cat([], 0)).toThrow(/cat: expected a non-empty array/);
    expect(() => ops.cat([t([2, 3]), t([3, 3])], 1)).toThrow(/cat: tensors\[1\] \[3, 3\] does not match tensors\[0\] \[2, 3\] outside dim 1/);
    expect(() => ops.cat([t([2, 3]), t([2, 3, 1])], 0)).toThrow(/cat: tensors\[1\] \[2, 3, 1\] does not match/);
    expect(() => ops.cat([t([2, 3]), t([2, 3], 'bf16')], 0)).toThrow(/cat: dtype mismatch \(f32 and bf16\)/);
    expect(() => ops.cat([t([2, 3])], 2)).toThrow(/cat: dim 2 is out of range for a rank-2 tensor/);
    const other = testDevices().find((d) => d !== device);
    if (other) expect(() => ops.cat([t([2, 3]), t([2, 3], 'f32', other)], 0)).toThrow(/cat: tensors are on different devices/);
  });

  test('narrow and chunk', () => {
    expect(() => ops.narrow(t([4, 5]), 1, 3, 3)).toThrow(/narrow: start 3 \+ length 3 exceeds dim 1 of size 5/);
    expect(() => ops.narrow(t([4, 5]), 1, -6, 1)).toThrow(/narrow: start -6 is out of range for dim 1 of size 5/);
    expect(() => ops.narrow(t([4, 5]), 2, 0, 1)).toThrow(/narrow: dim 2 is out of range/);
    expect(() => ops.narrow(t([4, 5]), 0, 0, -1)).toThrow(/narrow: length must be an integer >= 0/);
    expect(() => ops.chunk(t([4, 5]), 0)).toThrow(/chunk: chunks must be an integer >= 1/);
    expect(() => ops.chunk(t([4, 5]), 2, -3)).toThrow(/chunk: dim -3 is out of range/);
    expect(ops.chunk(t([0, 5]), 3).map((c) => c.shape)).toEqual([[0, 5], [0, 5], [0, 5]]);
  });

  test('pad2d', () => {
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [4, 0, 0, 0], 'reflect')).toThrow(/pad2d: reflect pads \[4,0,0,0\] must be smaller than the padded dims \(H 3, W 4\)/);
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [0, 0, 3, 0], 'reflect')).toThrow(/pad2d: reflect pads/);
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [-1, 0, 0, 0], 'replicate')).toThrow(/pad2d: negative pads \(cropping\) are only allowed in zero mode/);
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [0, 0, -2, -2], 'zero')).toThrow(/pad2d: pads \[0,0,-2,-2\] crop \[1, 1, 3, 4\] to a negative size/);
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [1, 1, 1], 'zero')).toThrow(/pad2d: pads must be 4 integers/);
    expect(() => ops.pad2d(t([1, 1, 3, 4]), [1, 1, 1, 1], 'circular' as ops.PadMode)).toThrow(/pad2d: unknown mode "circular"/);
    expect(() => ops.pad2d(t([4]), [1, 1, 1, 1])).toThrow(/pad2d: x must have at least 2 dims/);
    expect(() => ops.pad2d(t([1, 0, 4]), [1, 1, 1, 1], 'replicate')).toThrow(/pad2d: replicate padding needs a non-empty map/);
  });

  test('sum and mean', () => {
    expect(() => ops.sum(t([2, 3], 'i32'), 0)).toThrow(/sum: i32 tensors are not supported/);
    expect(() => ops.mean(t([2, 3]), 2)).toThrow(/mean: dim 2 is out of range for a rank-2 tensor/);
    expect(() => ops.sum(t([]), 0)).toThrow(/sum: a zero-dimensional tensor has no dim to reduce/);
  });

  test('windowPartition and windowReverse', () => {
    expect(() => ops.windowPartition(t([2, 3, 4]), 2)).toThrow(/windowPartition: x must be NHWC \[B, H, W, C\], got \[2, 3, 4\]/);
    expect(() => ops.windowPartition(t([1, 3, 4, 2]), 0)).toThrow(/windowPartition: window size ws must be an integer >= 1/);
    expect(() => ops.windowPartition(t([1, 2, 4, 2]), 4, { mode: 'reflect' })).toThrow(/windowPartition: reflect padding of 2x4 to 4x4 needs each pad smaller than its dim/);
    expect(() => ops.windowPartition(t([1, 3, 2, 4]), 4, { layout: 'NCHW', mode: 'reflect' })).toThrow(/windowPartition: reflect padding of 2x4 to 4x4/);
    expect(() => ops.windowPartition(t([1, 3, 4, 2]), 2, { layout: 'CHW' as ops.WindowLayout })).toThrow(/windowPartition: unknown layout "CHW"/);
    expect(() => ops.windowPartition(t([1, 3, 4, 2]), 2, { mode: 'replicate' as 'zero' })).toThrow(/windowPartition: unknown mode "replicate"/);
    expect(() => ops.windowReverse(t([4, 4, 2]), 2, 3, 4, 5, 4)).toThrow(/windowReverse: the padded map 5x4 is not a multiple of the window size 2/);
    expect(() => ops.windowReverse(t([4, 4, 2]), 2, 5, 4, 4, 4)).toThrow(/windowReverse: the map 5x4 does not fit in the padded map 4x4/);
    expect(() => ops.windowReverse(t([3, 4, 2]), 2, 4, 4, 4, 4)).toThrow(/windowReverse: tokens must be \[B·4, 4, C\]/);
  });

  test('a plan axis moving two coordinates per step pads by its mode', async () => {
    const x = tensor([10, 11, 12, 13, 14], [5], { device });
    const run = async (mode: ops.PadMode) => {
      const out = tensor([0, 0, 0, 0], [4], { device });
      native.layoutCopy({ op: 'test', out: out.native('test'), x: x.native('test'), dtype: 'f32', sizes: [4], srcStrides: [0], dstStrides: [1],
        mode, axes: [{ coef: [2], lo: 1, extent: 5, stride: 1 }] });
      return Array.from(await out.toArray());
    };
    // Coordinates -1, 1, 3, 5 of a 5-element axis.
    expect(await run('zero')).toEqual([0, 11, 13, 0]);
    expect(await run('reflect')).toEqual([11, 11, 13, 13]);
    expect(await run('replicate')).toEqual([10, 11, 13, 14]);
  });

  test('the binding bounds every plan by its buffers', () => {
    const x = t([2, 3]).native('test'), out = t([6]).native('test');
    const plan = { op: 'test', out, x, dtype: 'f32' as const, sizes: [2, 3], srcStrides: [3, 1], dstStrides: [3, 1] };
    expect(() => native.layoutCopy({ ...plan, srcOffset: 1 })).toThrow(/test \(layoutCopy\)/);
    expect(() => native.layoutCopy({ ...plan, dstStrides: [4, 1] })).toThrow(/test \(layoutCopy\)/);
    expect(() => native.layoutCopy({ ...plan, srcStrides: [3, -1] })).toThrow(/test \(layoutCopy\): srcStrides\[1\] must be an integer in \[0/);
    expect(() => native.layoutCopy({ ...plan, sizes: [1, 1, 1, 1, 1, 1, 1], srcStrides: [], dstStrides: [] })).toThrow(/sizes must be an array of at most 6/);
    expect(() => native.layoutCopy({ ...plan, axes: [{ coef: [0, 1], lo: 0, extent: 4, stride: 1 }] })).toThrow(/test \(layoutCopy\)/);
    expect(() => native.layoutCopy({ ...plan, dtype: 'i32', scale: 2 })).toThrow(/i32 copies cannot scale/);
    expect(() => native.layoutPadBackward({ op: 'test', gradIn: x, gradOut: out, dtype: 'f32', geometry: { planes: 1, inH: 2, inW: 3, outH: 3, outW: 3, top: 1, left: 0, mode: 'reflect' } }))
      .toThrow(/test \(layoutPadBackward\)/);
    expect(() => native.layoutReduce({ op: 'test', out, x, dtype: 'f32', geometry: { outer: 2, n: 4, inner: 1, alpha: 1 } })).toThrow(/test \(layoutReduce\)/);
  });
});
