import { ones, rand, randn, tensor, zeros } from '../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, testDevices } from './support/reference';

poisonOutputs();

describeEachDevice('tensors on %s', (device) => {
  test('tensor() round-trips f32 values exactly, for odd sizes', async () => {
    for (const n of [1, 7, 1000, 65537]) {
      const data = Float32Array.from(randomArray(n, freshSeed()));
      const t = tensor(data, [n], { device });
      expect(t.shape).toEqual([n]);
      expect(await t.toArray()).toEqual(data);
    }
  });

  test('bf16 storage rounds to nearest even, like the hardware conversion', async () => {
    const values = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -3.14159, 65504.5, 1e-20, 0, -0, Infinity];
    const data = Float32Array.from([...values, ...randomArray(1001, freshSeed(), 100)]);
    const out = await tensor(data, [data.length], { device, dtype: 'bf16' }).toArray();
    expect(Array.from(out)).toEqual(Array.from(data, roundBf16));
  });

  test('i32 tensors hold integers', async () => {
    const t = tensor([1, -2, 16777215, 5], [2, 2], { device, dtype: 'i32' });
    expect(Array.from(await t.toArray())).toEqual([1, -2, 16777215, 5]);
    const s = t.add(tensor(new Int32Array([1, 1, -1, 1]), [2, 2], { device, dtype: 'i32' }));
    expect(Array.from(await s.toArray())).toEqual([2, -1, 16777214, 6]);
  });

  test('zeros, ones and full', async () => {
    expect(Array.from(await zeros([3, 5], { device }).toArray())).toEqual(new Array(15).fill(0));
    expect(Array.from(await ones([2, 3], { device, dtype: 'bf16' }).toArray())).toEqual(new Array(6).fill(1));
    expect((await zeros([0], { device }).toArray()).length).toBe(0);
  });

  test('reshape shares memory and keeps values; cast converts dtype', async () => {
    const data = Float32Array.from(randomArray(24, freshSeed()));
    const t = tensor(data, [2, 3, 4], { device });
    const r = t.reshape([6, 4]);
    expect(r.shape).toEqual([6, 4]);
    expect(await r.toArray()).toEqual(data);
    const b = t.cast('bf16');
    expect(b.dtype).toBe('bf16');
    expect(Array.from(await b.toArray())).toEqual(Array.from(data, roundBf16));
    expect(await b.cast('f32').toArray()).toEqual(Float32Array.from(data, roundBf16));
    const i = tensor([1.7, -2.2, 3], [3], { device }).cast('i32');
    expect(Array.from(await i.toArray())).toEqual([1, -2, 3]);
  });

  test('randn: same seed gives the same values; moments are those of a standard normal', async () => {
    const seed = freshSeed();
    const n = 200001;
    const a = await randn([n], { seed, device }).toArray();
    const b = await randn([n], { seed, device }).toArray();
    expect(a).toEqual(b);
    let mean = 0;
    for (const v of a) mean += v;
    mean /= n;
    let variance = 0;
    for (const v of a) variance += (v - mean) ** 2;
    variance /= n;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    const c = await randn([n], { seed: seed + 1, device }).toArray();
    expect(relativeError(c, a)).toBeGreaterThan(1);
  });

  test('rand is uniform in [0, 1)', async () => {
    const u = await rand([100000], { seed: freshSeed(), device }).toArray();
    let mean = 0;
    for (const v of u) {
      expect(v >= 0 && v < 1).toBe(true);
      mean += v;
    }
    expect(Math.abs(mean / u.length - 0.5)).toBeLessThan(0.01);
  });

  test('to() copies between backends and back', async () => {
    const data = Float32Array.from(randomArray(777, freshSeed()));
    for (const other of testDevices()) {
      const t = tensor(data, [777], { device });
      const moved = t.to(other);
      expect(moved.device).toBe(other);
      expect(await moved.to(device).toArray()).toEqual(data);
    }
  });
});

describeEachDevice('random numbers on %s', (device) => {
  test('randn and rand equal cpu bit for bit', async () => {
    const seed = freshSeed();
    for (const dtype of ['f32', 'bf16'] as const) {
      expect(await randn([50003], { seed, device, dtype }).toArray()).toEqual(await randn([50003], { seed, dtype }).toArray());
      expect(await rand([50003], { seed, device, dtype }).toArray()).toEqual(await rand([50003], { seed, dtype }).toArray());
    }
  });
}, (d) => d !== 'cpu');
