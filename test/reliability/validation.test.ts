// Every value a user hands in is checked where it enters (a JS Error naming the problem), and every op gives
// PyTorch's result for zero-size dimensions, forward and backward, with outputs poisoned so nothing unwritten leaks.
import { AdamW, full, ones, ops, RadioModel, rand, randn, tensor, Tensor, zeros } from '../../ts';
import type { Device, DType } from '../../ts';
import { describeEachDevice, erf, poisonOutputs, refGelu, relativeError, roundBf16, testDevices } from '../support/reference';

poisonOutputs();

const values = async (t: Tensor): Promise<number[]> => Array.from(await t.toArray());
/** d/dx of the exact GELU x·Φ(x): Φ(x) + x·φ(x). */
const refGeluGrad = (x: number): number => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp((-x * x) / 2)) / Math.sqrt(2 * Math.PI);
/** Row-major [rows, cols] values of f(r, c). */
const grid = (rows: number, cols: number, f: (r: number, c: number) => number): number[] =>
  Array.from({ length: rows * cols }, (_, i) => f(Math.floor(i / cols), i % cols));
/** Small exactly representable values (in bf16 too): 0.25·(i + 1)·(−1)^i. */
const exact = (n: number): number[] => Array.from({ length: n }, (_, i) => 0.25 * (i + 1) * (i % 2 ? -1 : 1));

describeEachDevice('zero-size dimensions on %s', (device: Device) => {
  const t = (data: number[], shape: number[], opts: { dtype?: DType; requiresGrad?: boolean } = {}) => tensor(data, shape, { device, ...opts });
  const z = (shape: number[], opts: { dtype?: DType; requiresGrad?: boolean } = {}) => zeros(shape, { device, ...opts });

  test('creation: tensor, zeros, ones, full, randn and rand of empty shapes', async () => {
    for (const shape of [[0], [2, 0, 3], [0, 0]]) {
      for (const make of [
        () => tensor([], shape, { device }),
        () => tensor(new Float32Array(0), shape, { device, dtype: 'bf16' }),
        () => tensor(new Int32Array(0), shape, { device, dtype: 'i32' }),
        () => zeros(shape, { device }),
        () => ones(shape, { device, dtype: 'bf16' }),
        () => full(shape, 7, { device, dtype: 'i32' }),
        () => randn(shape, { device }),
        () => rand(shape, { device }),
      ]) {
        const e = make();
        expect(e.shape).toEqual(shape);
        expect(e.numel).toBe(0);
        expect(await values(e)).toEqual([]);
      }
    }
  });

  test('add, sub, mul, scale, cast, gelu, reshape and to() keep empty shapes; their gradients are empty', async () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      const a = z([0, 3], { dtype, requiresGrad: true });
      const b = z([0, 3], { dtype, requiresGrad: true });
      const outs = [a.add(b), a.sub(b), a.mul(b), a.scale(2), a.cast(dtype === 'f32' ? 'bf16' : 'f32'), ops.gelu(a), a.reshape([3, 0])];
      for (const o of outs) {
        expect(o.numel).toBe(0);
        expect(await values(o)).toEqual([]);
      }
      expect(outs[6].shape).toEqual([3, 0]);
      let loss = outs[0].sum();
      for (const o of outs.slice(1)) loss = loss.add(o.cast(dtype).sum());
      expect(await values(loss)).toEqual([0]);
      loss.backward();
      for (const g of [a.grad!, b.grad!]) {
        expect(g.shape).toEqual([0, 3]);
        expect(await values(g)).toEqual([]);
      }
    }
    expect(z([2, 0], { dtype: 'i32' }).add(z([2, 0], { dtype: 'i32' })).shape).toEqual([2, 0]);
    expect(z([2, 0]).cast('i32').shape).toEqual([2, 0]);
    for (const other of testDevices()) {
      const moved = z([0, 4]).to(other);
      expect(moved.shape).toEqual([0, 4]);
      expect(await values(moved)).toEqual([]);
    }
  });

  test('sum of an empty tensor is 0 and mean is NaN, as in PyTorch; the gradient is empty', async () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      const x = z([4, 0], { dtype, requiresGrad: true });
      const s = x.sum();
      expect(s.shape).toEqual([]);
      expect(await values(s)).toEqual([0]);
      expect(Number.isNaN(await x.mean().item())).toBe(true);
      s.backward();
      expect(x.grad!.shape).toEqual([4, 0]);
      const y = z([0], { dtype, requiresGrad: true });
      y.mean().backward();
      expect(y.grad!.shape).toEqual([0]);
    }
  });

  describe('linear', () => {
    const [m0, m1, n] = [2, 3, 4];
    const bias = exact(n);
    const G = grid(m0 * m1, n, (r, c) => 0.5 + r - 0.25 * c);

    test.each(['f32', 'bf16'] as DType[])('K = 0 (%s) returns the bias broadcast, or zeros without bias', async (dtype) => {
      const x = z([m0, m1, 0], { dtype });
      const w = z([n, 0], { dtype });
      const y = ops.linear(x, w, t(bias, [n], { dtype }));
      expect(y.shape).toEqual([m0, m1, n]);
      expect(await values(y)).toEqual(grid(m0 * m1, n, (_, c) => bias[c]));
      const y0 = ops.linear(x, w);
      expect(await values(y0)).toEqual(new Array(m0 * m1 * n).fill(0));
      // A 1-D input of K = 0 is one row: the bias itself.
      expect(await values(ops.linear(z([0], { dtype }), w, t(bias, [n], { dtype })))).toEqual(bias);
    });

    test('K = 0 with the epilogue: act(bias) + residual; gradients: bias gets Σ_rows g·act′(bias), x and W empty', async () => {
      const rows = m0 * m1;
      const res = grid(rows, n, (r, c) => r * 0.125 - c);
      for (const act of ['gelu', 'relu'] as const) {
        const f = act === 'gelu' ? refGelu : (v: number) => Math.max(v, 0);
        const df = act === 'gelu' ? refGeluGrad : (v: number) => (v > 0 ? 1 : 0);
        const x = z([m0, m1, 0], { requiresGrad: true });
        const w = z([n, 0], { requiresGrad: true });
        const b = t(bias, [n], { requiresGrad: true });
        const r = t(res, [m0, m1, n], { requiresGrad: true });
        const y = ops.linear(x, w, b, { activation: act, residual: r });
        expect(relativeError(await y.toArray(), grid(rows, n, (i, c) => f(bias[c]) + res[i * n + c]))).toBeLessThanOrEqual(1e-5);
        y.mul(t(G, [m0, m1, n])).sum().backward();
        const db = Array.from({ length: n }, (_, c) => df(bias[c]) * grid(rows, 1, (i) => G[i * n + c]).reduce((s, v) => s + v, 0));
        expect(relativeError(await b.grad!.toArray(), db)).toBeLessThanOrEqual(1e-5);
        expect(await values(r.grad!)).toEqual(G);
        expect(x.grad!.shape).toEqual([m0, m1, 0]);
        expect(w.grad!.shape).toEqual([n, 0]);
        expect(await values(x.grad!)).toEqual([]);
        // Without bias, act(0) = 0: the output is the residual.
        expect(await values(ops.linear(z([m0, m1, 0]), z([n, 0]), undefined, { activation: act, residual: t(res, [m0, m1, n]) }))).toEqual(res);
      }
    });

    test('M = 0: an empty output; dW and dbias are zeros (sums over no rows), dx is empty', async () => {
      const x = z([0, 5], { requiresGrad: true });
      const w = t(exact(n * 5), [n, 5], { requiresGrad: true });
      const b = t(bias, [n], { requiresGrad: true });
      const y = ops.linear(x, w, b, { activation: 'gelu' });
      expect(y.shape).toEqual([0, n]);
      expect(await values(y)).toEqual([]);
      y.sum().backward();
      expect(x.grad!.shape).toEqual([0, 5]);
      expect(await values(w.grad!)).toEqual(new Array(n * 5).fill(0));
      expect(await values(b.grad!)).toEqual(new Array(n).fill(0));
      // Leading dims with a zero are rows too.
      expect(ops.linear(z([3, 0, 5]), w, b).shape).toEqual([3, 0, n]);
    });

    test('N = 0: an empty output; dx is zeros (a sum over no outputs), dW and dbias are empty', async () => {
      const x = t(exact(3 * 5), [3, 5], { requiresGrad: true });
      const w = z([0, 5], { requiresGrad: true });
      const b = z([0], { requiresGrad: true });
      const y = ops.linear(x, w, b, { residual: z([3, 0]) });
      expect(y.shape).toEqual([3, 0]);
      y.sum().backward();
      expect(await values(x.grad!)).toEqual(new Array(15).fill(0));
      expect(w.grad!.shape).toEqual([0, 5]);
      expect(b.grad!.shape).toEqual([0]);
    });
  });

  describe('matmul', () => {
    test.each(['f32', 'bf16'] as DType[])('K = 0 (%s) gives zeros [.., M, N], any transposes; gradients are empty', async (dtype) => {
      const a = z([2, 3, 0], { dtype, requiresGrad: true });
      const b = z([2, 0, 4], { dtype, requiresGrad: true });
      const y = ops.matmul(a, b);
      expect(y.shape).toEqual([2, 3, 4]);
      expect(await values(y)).toEqual(new Array(24).fill(0));
      y.mul(t(exact(24), [2, 3, 4], { dtype })).sum().backward();
      expect(a.grad!.shape).toEqual([2, 3, 0]);
      expect(b.grad!.shape).toEqual([2, 0, 4]);
      const yt = ops.matmul(z([0, 3], { dtype }), z([4, 0], { dtype }), { transA: true, transB: true });
      expect(yt.shape).toEqual([3, 4]);
      expect(await values(yt)).toEqual(new Array(12).fill(0));
    });

    test('M = 0 and N = 0: empty outputs; the other operand gets a zero gradient', async () => {
      const a = z([2, 0, 5], { requiresGrad: true });
      const b = t(exact(2 * 5 * 4), [2, 5, 4], { requiresGrad: true });
      const y = ops.matmul(a, b);
      expect(y.shape).toEqual([2, 0, 4]);
      y.sum().backward();
      expect(a.grad!.shape).toEqual([2, 0, 5]);
      expect(await values(b.grad!)).toEqual(new Array(40).fill(0));

      const c = t(exact(15), [3, 5], { requiresGrad: true });
      const d = z([5, 0], { requiresGrad: true });
      const yn = ops.matmul(c, d);
      expect(yn.shape).toEqual([3, 0]);
      yn.sum().backward();
      expect(await values(c.grad!)).toEqual(new Array(15).fill(0));
      expect(d.grad!.shape).toEqual([5, 0]);
    });

    test('a batch of 0 with a shared b: an empty output; b gets zeros', async () => {
      const a = z([0, 3, 5], { requiresGrad: true });
      const b = t(exact(20), [5, 4], { requiresGrad: true });
      const y = ops.matmul(a, b);
      expect(y.shape).toEqual([0, 3, 4]);
      y.sum().backward();
      expect(await values(b.grad!)).toEqual(new Array(20).fill(0));
      expect(a.grad!.shape).toEqual([0, 3, 5]);
    });
  });

  test('layerNorm: no rows gives an empty output and zero weight and bias gradients; no columns an empty one', async () => {
    const x = z([0, 4], { requiresGrad: true });
    const w = t(exact(4), [4], { requiresGrad: true });
    const b = t(exact(4), [4], { requiresGrad: true });
    const y = ops.layerNorm(x, w, b);
    expect(y.shape).toEqual([0, 4]);
    y.sum().backward();
    expect(x.grad!.shape).toEqual([0, 4]);
    expect(await values(w.grad!)).toEqual([0, 0, 0, 0]);
    expect(await values(b.grad!)).toEqual([0, 0, 0, 0]);

    const x2 = z([3, 0], { requiresGrad: true });
    const w2 = z([0], { requiresGrad: true });
    const y2 = ops.layerNorm(x2, w2, z([0]));
    expect(y2.shape).toEqual([3, 0]);
    y2.sum().backward();
    expect(x2.grad!.shape).toEqual([3, 0]);
    expect(w2.grad!.shape).toEqual([0]);
  });

  test('attention: a batch of 0 is empty (bias gradient zeros); zero tokens or head dim are refused by name', async () => {
    const qkv = z([0, 5, 3 * 64], { requiresGrad: true });
    const bias = t(exact(25), [1, 5, 5], { requiresGrad: true });
    const y = ops.attention(qkv, { heads: 1, bias });
    expect(y.shape).toEqual([0, 5, 64]);
    y.sum().backward();
    expect(qkv.grad!.shape).toEqual([0, 5, 192]);
    expect(await values(bias.grad!)).toEqual(new Array(25).fill(0));
    expect(() => ops.attention(z([2, 0, 192]), { heads: 1 })).toThrow('attention: tokens must be > 0 (got qkv [2, 0, 192])');
    expect(() => ops.attention(z([2, 5, 0]), { heads: 2 })).toThrow('attention: head dim must be > 0 (got qkv [2, 5, 0])');
  });

  test('interpolate, cpeTrain: a batch of 0 is an empty result with a zero map gradient; other empty dims are refused', async () => {
    const x = z([0, 2, 3, 4], { requiresGrad: true });
    const y = ops.interpolate(x, { size: [5, 6] });
    expect(y.shape).toEqual([0, 2, 5, 6]);
    y.sum().backward();
    expect(x.grad!.shape).toEqual([0, 2, 3, 4]);
    expect(ops.interpolate(z([0, 12, 2]), { size: [2, 2], layout: 'NLC', grid: [3, 4], mode: 'nearest' }).shape).toEqual([0, 4, 2]);
    expect(() => ops.interpolate(z([1, 0, 3, 4]), { size: [3, 3] })).toThrow(/interpolate: input \[1, 0, 3, 4\] has no elements \(channels must be > 0\)/);
    expect(() => ops.interpolate(z([1, 2, 0, 4]), { size: [3, 3] })).toThrow(/\(height must be > 0\)/);
    expect(() => ops.interpolate(z([1, 12, 0]), { size: [3, 3], layout: 'NLC', grid: [3, 4] })).toThrow(/\(channels must be > 0\)/);

    const pe = t(exact(4 * 3), [1, 4, 3], { requiresGrad: true });
    const out = ops.cpeTrain(pe, { gridH: 3, gridW: 2, scale: z([0, 2]), offset: z([0, 2]), keep: z([0]) });
    expect(out.shape).toEqual([0, 6, 3]);
    out.sum().backward();
    expect(await values(pe.grad!)).toEqual(new Array(12).fill(0));
    expect(() => ops.cpe(z([1, 4, 0]), { gridH: 3, gridW: 3 })).toThrow(/cpe: input \[1, 4, 0\] has no elements \(channels must be > 0\)/);
  });

  test('patchify: any zero in B, C, H or W gives an empty patch tensor of the right shape', async () => {
    const stats = (c: number) => ({ mean: zeros([c], { device }), std: ones([c], { device }) });
    expect(ops.patchify(z([0, 3, 4, 4]), { patch: 2, ...stats(3) }).shape).toEqual([0, 4, 12]);
    expect(ops.patchify(z([2, 3, 0, 4]), { patch: 2, ...stats(3) }).shape).toEqual([2, 0, 12]);
    const noChannels = ops.patchify(z([2, 0, 4, 4]), { patch: 2, ...stats(0) });
    expect(noChannels.shape).toEqual([2, 4, 0]);
    expect(await values(noChannels)).toEqual([]);
  });

  test('gatherRows and sliceRows of no rows: empty, and the gradient of x is zeros', async () => {
    const x = t(exact(2 * 3 * 4), [2, 3, 4], { requiresGrad: true });
    const y = ops.gatherRows(x, []);
    expect(y.shape).toEqual([2, 0, 4]);
    expect(ops.sliceRows(x, 2, 2).shape).toEqual([2, 0, 4]);
    y.sum().backward();
    expect(await values(x.grad!)).toEqual(new Array(24).fill(0));
    expect(ops.gatherRows(z([0, 3, 4]), [1, 2]).shape).toEqual([0, 2, 4]);
  });

  test('assembleTokens with no prefix, no patches or no samples', async () => {
    const [B, S, N, D] = [2, 2, 3, 4];
    const Gn = exact(B * N * D);
    // S = 0: out = patches + pos; dpatches = g, dpos = Σ_b g.
    const patches = t(exact(B * N * D), [B, N, D], { requiresGrad: true });
    const pos = t(exact(N * D).map((v) => v * 2), [N, D], { requiresGrad: true });
    const prefix0 = z([0, D], { requiresGrad: true });
    const y = ops.assembleTokens(prefix0, patches, pos);
    expect(y.shape).toEqual([B, N, D]);
    expect(await values(y)).toEqual(exact(B * N * D).map((v, i) => v + 2 * exact(N * D)[i % (N * D)]));
    y.mul(t(Gn, [B, N, D])).sum().backward();
    expect(prefix0.grad!.shape).toEqual([0, D]);
    expect(await values(patches.grad!)).toEqual(Gn);
    expect(await values(pos.grad!)).toEqual(Array.from({ length: N * D }, (_, i) => Gn[i] + Gn[N * D + i]));

    // N = 0: out = the prefix for every sample; dprefix = Σ_b g.
    const prefix = t(exact(S * D), [S, D], { requiresGrad: true });
    const none = z([B, 0, D], { requiresGrad: true });
    const y2 = ops.assembleTokens(prefix, none);
    expect(await values(y2)).toEqual([...exact(S * D), ...exact(S * D)]);
    const Gs = exact(B * S * D);
    y2.mul(t(Gs, [B, S, D])).sum().backward();
    expect(await values(prefix.grad!)).toEqual(Array.from({ length: S * D }, (_, i) => Gs[i] + Gs[S * D + i]));
    expect(none.grad!.shape).toEqual([B, 0, D]);

    // B = 0: empty; the shared prefix and pos get zeros.
    const p3 = t(exact(S * D), [S, D], { requiresGrad: true });
    const pos3 = t(exact(N * D), [N, D], { requiresGrad: true });
    const y3 = ops.assembleTokens(p3, z([0, N, D]), pos3);
    expect(y3.shape).toEqual([0, S + N, D]);
    y3.sum().backward();
    expect(await values(p3.grad!)).toEqual(new Array(S * D).fill(0));
    expect(await values(pos3.grad!)).toEqual(new Array(N * D).fill(0));
  });

  test('AdamW skips an empty parameter and updates the others', async () => {
    const empty = z([0, 3], { requiresGrad: true });
    const p = t([1, -2], [2], { requiresGrad: true });
    const opt = new AdamW([empty, p], { lr: 0.1, weightDecay: 0 });
    empty.sum().add(p.mul(p).sum()).backward();
    opt.step();
    expect(empty.shape).toEqual([0, 3]);
    // First Adam step: p − lr·sign(g) (m̂/√v̂ = g/|g|, up to eps).
    expect(relativeError(await p.toArray(), [0.9, -1.9])).toBeLessThanOrEqual(1e-6);
  });

  test('multiTeacherLoss refuses empty inputs, naming the dimension', () => {
    const side = (s: Tensor) => ({ summary: s });
    expect(() => ops.multiTeacherLoss([{ student: side(z([0, 4])), teacher: side(z([0, 4])) }])).toThrow(
      'multiTeacherLoss: teacher 0: student summary is empty ([0, 4]): batch must be > 0',
    );
    expect(() => ops.multiTeacherLoss([{ student: { features: z([2, 4, 0]) }, teacher: { features: z([2, 4, 0]) } }])).toThrow(
      /student features is empty \(\[2, 4, 0\]\): channels must be > 0/,
    );
  });
});

describe('tensor(): data is checked where it enters', () => {
  test('non-numbers are refused, naming the first bad element and its type', () => {
    expect(() => tensor(['a', 'b'] as never, [2])).toThrow('tensor: data[0] is a string ("a"), not a number');
    expect(() => tensor([1, {}] as never, [2])).toThrow('tensor: data[1] is an object (Object), not a number');
    expect(() => tensor([1, 2, undefined] as never, [3])).toThrow('tensor: data[2] is undefined, not a number');
    expect(() => tensor([null] as never, [1])).toThrow('tensor: data[0] is null, not a number');
    expect(() => tensor([true] as never, [1])).toThrow('tensor: data[0] is a boolean (true), not a number');
    expect(() => tensor([1n] as never, [1], { dtype: 'i32' })).toThrow('tensor: data[0] is a bigint (1), not a number');
    // eslint-disable-next-line no-sparse-arrays
    expect(() => tensor([1, , 3] as never, [3])).toThrow('tensor: data[1] is undefined, not a number');
    expect(() => tensor('abc' as never, [3])).toThrow('tensor: data must be an array or a typed array of numbers, got a string ("abc")');
    expect(() => tensor({ length: 1, 0: 1 } as never, [1])).toThrow(/data must be an array or a typed array/);
  });

  test('NaN and ±Infinity are floats: kept for f32 and bf16, refused for i32', async () => {
    expect(await values(tensor([NaN, Infinity, -Infinity], [3]))).toEqual([NaN, Infinity, -Infinity]);
    expect(await values(tensor([NaN, -Infinity], [2], { dtype: 'bf16' }))).toEqual([NaN, -Infinity]);
    expect(() => tensor([1, NaN], [2], { dtype: 'i32' })).toThrow('tensor: data[1] = NaN is not an integer, which dtype i32 needs');
    expect(() => tensor([Infinity], [1], { dtype: 'i32' })).toThrow(/data\[0\] = Infinity is not an integer/);
  });

  test('i32 values must be integers in [-2^31, 2^31 - 1], from arrays and from any typed array', async () => {
    expect(await values(tensor([-(2 ** 31), 0, 12345], [3], { dtype: 'i32' }))).toEqual([-(2 ** 31), 0, 12345]);
    expect(() => tensor([2 ** 31 - 1], [1], { dtype: 'i32' })).not.toThrow();
    expect(() => tensor([0, 2 ** 31], [2], { dtype: 'i32' })).toThrow('tensor: data[1] = 2147483648 is out of the i32 range [-2147483648, 2147483647]');
    expect(() => tensor([-(2 ** 31) - 1], [1], { dtype: 'i32' })).toThrow(/out of the i32 range/);
    expect(() => tensor([1.5], [1], { dtype: 'i32' })).toThrow('tensor: data[0] = 1.5 is not an integer, which dtype i32 needs');
    expect(() => tensor(new Float32Array([1, 2.25]), [2], { dtype: 'i32' })).toThrow(/data\[1\] = 2.25 is not an integer/);
    expect(() => tensor(new Float32Array([3e9]), [1], { dtype: 'i32' })).toThrow(/data\[0\] = 3000000000 is out of the i32 range/);
    expect(() => tensor(new Uint32Array([2 ** 32 - 1]), [1], { dtype: 'i32' })).toThrow(/out of the i32 range/);
    expect(await values(tensor(new Float32Array([-3, 7]), [2], { dtype: 'i32' }))).toEqual([-3, 7]);
  });

  test('typed arrays of every numeric kind are read by value; BigInt arrays and DataViews are refused', async () => {
    expect(await values(tensor(new Float64Array([1.5, -2, 0.1]), [3]))).toEqual([1.5, -2, Math.fround(0.1)]);
    expect(await values(tensor(new Float64Array([0.1]), [1], { dtype: 'bf16' }))).toEqual([roundBf16(0.1)]);
    expect(await values(tensor(new Int32Array([-7, 9]), [2]))).toEqual([-7, 9]);
    expect(await values(tensor(new Uint8Array([0, 255]), [2], { dtype: 'i32' }))).toEqual([0, 255]);
    expect(await values(tensor(new Int8Array([-128]), [1]))).toEqual([-128]);
    expect(await values(tensor(new Int16Array([-300, 300]), [2], { dtype: 'i32' }))).toEqual([-300, 300]);
    expect(await values(tensor(new Uint16Array([65535]), [1]))).toEqual([65535]);
    expect(await values(tensor(new Uint8ClampedArray([200]), [1]))).toEqual([200]);
    expect(() => tensor(new BigInt64Array(2) as never, [2])).toThrow('tensor: data must hold numbers; a BigInt64Array is not supported');
    expect(() => tensor(new BigUint64Array(2) as never, [2])).toThrow(/BigUint64Array is not supported/);
    expect(() => tensor(new DataView(new ArrayBuffer(8)) as never, [2])).toThrow(/DataView is not supported/);
  });

  test('nested arrays are accepted when they match the shape level by level', async () => {
    expect(await values(tensor([[1, 2, 3], [4, 5, 6]], [2, 3]))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await values(tensor([[[1], [2]], [[3], [4]]], [2, 2, 1], { dtype: 'i32' }))).toEqual([1, 2, 3, 4]);
    expect(tensor([[], []], [2, 0]).shape).toEqual([2, 0]);
    expect(() => tensor([[1, 2], [3, 4]], [2, 3])).toThrow('tensor: data[0] has 2 entries, but shape [2, 3] needs 3 along dimension 1');
    expect(() => tensor([[1, 2, 3], [4, 5, 6]], [3, 2])).toThrow('tensor: data has 2 entries, but shape [3, 2] needs 3 along dimension 0');
    expect(() => tensor([[1, 2, 3], [4, 5]], [2, 3])).toThrow(/data\[1\] has 2 entries/);
    expect(() => tensor([[1], [2]], [2])).toThrow('tensor: data[0] is an array, but shape [2] has only 1 dimension');
    expect(() => tensor([1, [2]], [2, 1])).toThrow('tensor: data[0] is a number (1), but shape [2, 1] needs an array of 1 there (dimension 1)');
    expect(() => tensor([[1, 'x']] as never, [1, 2])).toThrow('tensor: data[0][1] is a string ("x"), not a number');
    expect(() => tensor([[1, 2.5]], [1, 2], { dtype: 'i32' })).toThrow('tensor: data[0][1] = 2.5 is not an integer, which dtype i32 needs');
  });

  test('shape entries are non-negative integers and the data fills the shape exactly', () => {
    for (const shape of [[-1], [1.5], [NaN], ['2'], [Infinity], [2 ** 53]])
      expect(() => tensor([], shape as never)).toThrow(/tensor: shape must be an array of non-negative integers/);
    expect(() => tensor([], 3 as never)).toThrow(/shape must be an array of non-negative integers, got 3/);
    expect(() => zeros([2 ** 20, 2 ** 20, 2 ** 20])).toThrow('full: shape [1048576,1048576,1048576] has too many elements');
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow('tensor: 3 values do not fill shape [2, 2] (4 elements)');
    expect(() => tensor(new Float32Array(5), [2, 2])).toThrow('tensor: 5 values do not fill shape [2, 2] (4 elements)');
    expect(() => tensor([1], [2, 0])).toThrow('tensor: 1 values do not fill shape [2, 0] (0 elements)');
    expect(() => tensor([1], [], { requiresGrad: 'yes' as never })).toThrow('tensor: requiresGrad must be a boolean, got a string ("yes")');
  });

  test('full(): the value is a number that the dtype can hold', async () => {
    expect(() => full([2], 'a' as never)).toThrow('full: value is a string ("a"), not a number');
    expect(() => full([2], 1.5, { dtype: 'i32' })).toThrow('full: value = 1.5 is not an integer, which dtype i32 needs');
    expect(() => full([2], 2 ** 31, { dtype: 'i32' })).toThrow(/full: value = 2147483648 is out of the i32 range/);
    expect(await values(full([2], NaN))).toEqual([NaN, NaN]);
  });
});

describe('AdamW: hyper-parameters and parameters are checked', () => {
  const param = (v: number[]) => tensor(v, [v.length], { requiresGrad: true });

  test.each([
    ['lr = Infinity', { lr: Infinity }, /AdamW: lr must be a finite number >= 0, got Infinity/],
    ['lr = NaN', { lr: NaN }, /AdamW: lr must be a finite number >= 0, got NaN/],
    ['lr = -0.1', { lr: -0.1 }, /AdamW: lr must be a finite number >= 0, got -0.1/],
    ['lr = "0.1" (a string)', { lr: '0.1' }, /AdamW: lr must be a finite number >= 0, got 0.1/],
    ['a missing lr', {}, /AdamW: lr must be a finite number >= 0, got undefined/],
    ['eps = NaN', { lr: 0.1, eps: NaN }, /AdamW: eps must be a finite number >= 0, got NaN/],
    ['eps = -1e-8', { lr: 0.1, eps: -1e-8 }, /AdamW: eps must be a finite number >= 0, got -1e-8/],
    ['eps = Infinity', { lr: 0.1, eps: Infinity }, /AdamW: eps must be a finite number >= 0, got Infinity/],
    ['weightDecay = NaN', { lr: 0.1, weightDecay: NaN }, /AdamW: weightDecay must be a finite number >= 0, got NaN/],
    ['weightDecay = Infinity', { lr: 0.1, weightDecay: Infinity }, /weightDecay must be a finite number >= 0, got Infinity/],
    ['weightDecay = -0.01', { lr: 0.1, weightDecay: -0.01 }, /weightDecay must be a finite number >= 0, got -0.01/],
    ['betas = [NaN, 0.9]', { lr: 0.1, betas: [NaN, 0.9] }, /AdamW: betas must be in \[0, 1\), got \[NaN, 0.9\]/],
    ['betas = [0.9, 1]', { lr: 0.1, betas: [0.9, 1] }, /betas must be in \[0, 1\), got \[0.9, 1\]/],
    ['betas = [-0.1, 0.9]', { lr: 0.1, betas: [-0.1, 0.9] }, /betas must be in \[0, 1\)/],
    ['betas = [0.9, Infinity]', { lr: 0.1, betas: [0.9, Infinity] }, /betas must be in \[0, 1\)/],
    ['betas = [0.9]', { lr: 0.1, betas: [0.9] }, /betas must be in \[0, 1\), got \[0.9\]/],
    ['betas = 0.9', { lr: 0.1, betas: 0.9 }, /betas must be in \[0, 1\), got 0.9/],
  ])('%s is refused at construction', (_label, opts, message) => {
    expect(() => new AdamW([param([1, 2])], opts as never)).toThrow(message);
  });

  test('boundary values PyTorch accepts are accepted: lr, eps and weightDecay 0, betas 0', () => {
    expect(() => new AdamW([param([1])], { lr: 0, eps: 0, weightDecay: 0, betas: [0, 0] })).not.toThrow();
  });

  test('the same parameter twice is refused, naming both indices; an empty list is refused', () => {
    const a = param([1]);
    const b = param([2]);
    expect(() => new AdamW([a, b, a], { lr: 0.1 })).toThrow('AdamW: parameter 2 is the same tensor as parameter 0');
    expect(() => new AdamW([b, b], { lr: 0.1 })).toThrow('AdamW: parameter 1 is the same tensor as parameter 0');
    expect(() => new AdamW([], { lr: 0.1 })).toThrow(/AdamW: params is empty/);
  });

  test('fields changed after construction are checked at step(), and a refused step changes nothing', async () => {
    const p = param([1, -2, 3]);
    const opt = new AdamW([p], { lr: 0.1 });
    p.mul(p).sum().backward();
    const before = await values(p);
    const refuse = (set: () => void, message: RegExp) => {
      set();
      expect(() => opt.step()).toThrow(message);
    };
    const mutable = opt as unknown as { lr: number; eps: number; weightDecay: number; betas: number[] };
    refuse(() => (mutable.lr = NaN), /lr must be a finite number >= 0, got NaN/);
    refuse(() => (mutable.lr = Infinity), /lr must be a finite number >= 0, got Infinity/);
    mutable.lr = 0.1;
    refuse(() => (mutable.eps = -1), /eps must be a finite number >= 0, got -1/);
    mutable.eps = 1e-8;
    refuse(() => (mutable.weightDecay = NaN), /weightDecay must be a finite number >= 0, got NaN/);
    mutable.weightDecay = 0;
    refuse(() => (mutable.betas[1] = 1), /betas must be in \[0, 1\), got \[0.9, 1\]/);
    mutable.betas[1] = 0.999;
    refuse(() => (p.grad = zeros([2])), /AdamW: the gradient of parameter 0 is Tensor\(\[2\], f32, cpu\), expected \[3\] f32 on cpu/);
    expect(await values(p)).toEqual(before);
    // A valid step afterwards is the first Adam step: p − lr·sign(g), as if the refused ones never happened.
    opt.zeroGrad();
    p.mul(p).sum().backward();
    opt.step();
    expect(relativeError(await p.toArray(), [0.9, -1.9, 2.9])).toBeLessThanOrEqual(1e-6);
  });
});

describe('op options are checked where they enter', () => {
  test('missing or mistyped options name the op and the option', () => {
    const qkv = zeros([1, 4, 3 * 64]);
    expect(() => ops.attention(qkv, undefined as never)).toThrow('attention: options { heads } are required');
    expect(() => ops.attention(qkv, { heads: 1, window: 2 as never })).toThrow('attention: window must be { size, gridH, gridW }, got 2');
    expect(() => ops.matmul(zeros([2, 3]), zeros([3, 2]), { transA: 'yes' as never })).toThrow('matmul: transA must be a boolean, got "yes"');
    expect(() => ops.matmul(zeros([2, 3]), zeros([3, 2]), { transB: 1 as never })).toThrow('matmul: transB must be a boolean, got 1');
    const images = zeros([1, 3, 4, 4]);
    const stats = { mean: zeros([3]), std: ones([3]) };
    expect(() => ops.patchify(images, undefined as never)).toThrow('patchify: options { patch, mean, std } are required');
    expect(() => ops.patchify(images, { patch: 2, ...stats, dtype: 'f64' as never })).toThrow('patchify: output dtype must be f32 or bf16, got "f64"');
    expect(() => ops.gatherRows(zeros([1, 3, 2]), 'ab' as never)).toThrow('gatherRows: index must be an array or an Int32Array of row numbers');
    expect(() => ops.gatherRows(zeros([1, 3, 2]), [0.5])).toThrow('gatherRows: index 0.5 is out of range for 3 rows');
    const w = ones([4]);
    for (const eps of [Infinity, NaN, -1, '1e-6'])
      expect(() => ops.layerNorm(zeros([2, 4]), w, w, eps as never)).toThrow(/layerNorm: eps must be positive and finite/);
  });
});

describe('RadioModel.load: the checkpoint path is checked before anything is read', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require('os') as typeof import('os');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require('path') as typeof import('path');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { execFileSync } = require('child_process') as typeof import('child_process');
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-ckpt-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a missing folder, a file, a folder without config.json', async () => {
    await expect(RadioModel.load(path.join(dir, 'missing'))).rejects.toThrow(/cannot open the checkpoint folder .*missing/);
    const file = path.join(dir, 'plain.txt');
    fs.writeFileSync(file, 'x');
    await expect(RadioModel.load(file)).rejects.toThrow(/plain\.txt is not a folder/);
    const empty = fs.mkdtempSync(path.join(dir, 'empty-'));
    await expect(RadioModel.load(empty)).rejects.toThrow(/config\.json: cannot read the RADIO config/);
    await expect(RadioModel.load('' as string)).rejects.toThrow(/dir must be a checkpoint folder path/);
  });

  test('config.json that is a folder or a FIFO is refused at once, naming it', async () => {
    const a = fs.mkdtempSync(path.join(dir, 'a-'));
    fs.mkdirSync(path.join(a, 'config.json'));
    await expect(RadioModel.load(a)).rejects.toThrow(/config\.json: cannot read the RADIO config \(not a regular file\)/);
    const b = fs.mkdtempSync(path.join(dir, 'b-'));
    execFileSync('mkfifo', [path.join(b, 'config.json')]);
    await expect(RadioModel.load(b)).rejects.toThrow(/config\.json: cannot read the RADIO config \(not a regular file\)/);
  });
});
