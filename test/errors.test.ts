// Bad input raises a JS Error that names the problem; nothing crashes the process.
import { debug, randn, tensor, zeros } from '../ts';
import { testDevices } from './support/reference';

describe('errors', () => {
  test('shape mismatch names both shapes', () => {
    expect(() => zeros([2, 3]).add(zeros([3, 2]))).toThrow('add: shape mismatch ([2, 3] and [3, 2])');
  });

  test('dtype mismatch', () => {
    expect(() => zeros([4]).mul(zeros([4], { dtype: 'bf16' }))).toThrow('mul: dtype mismatch (f32 and bf16)');
  });

  test('mixing devices', () => {
    const other = testDevices().find((d) => d !== 'cpu');
    expect(other).toBeDefined();
    expect(() => zeros([4]).sub(zeros([4], { device: other }))).toThrow(`sub: tensors are on different devices (cpu and ${other})`);
  });

  test('using a disposed tensor', async () => {
    const t = zeros([4]);
    t.dispose();
    expect(() => t.add(zeros([4]))).toThrow('add: tensor was disposed');
    expect(() => zeros([4]).add(t)).toThrow('add: tensor was disposed');
    await expect(t.toArray()).rejects.toThrow('toArray: tensor was disposed');
    t.dispose(); // a second dispose is harmless
    {
      using u = zeros([2]);
      expect(u.disposed).toBe(false);
    }
  });

  test('backward() on a non-scalar', () => {
    const x = zeros([3], { requiresGrad: true });
    expect(() => x.scale(2).backward()).toThrow('backward: output must be a scalar, got shape [3]');
  });

  test('bad shapes, data lengths, dtypes, devices and seeds', () => {
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow('tensor: 3 values do not fill shape [2, 2] (4 elements)');
    expect(() => zeros([2, -1])).toThrow(/shape must be an array of non-negative integers/);
    expect(() => zeros([2], { dtype: 'f64' as never })).toThrow(/unknown dtype "f64"/);
    expect(() => zeros([2], { device: 'tpu' as never })).toThrow(/unknown device "tpu"/);
    expect(() => zeros([6]).reshape([4])).toThrow('reshape: cannot reshape [6] (6 elements) to [4] (4 elements)');
    expect(() => randn([2], { seed: -1 })).toThrow(/seed must be a non-negative safe integer/);
    expect(() => zeros([2], { dtype: 'i32', requiresGrad: true })).toThrow(/i32 tensors cannot require a gradient/);
    expect(() => zeros([2], { dtype: 'i32' }).sum()).toThrow(/sum: i32 tensors are not supported/);
    expect(() => zeros([2]).scale(NaN)).toThrow(/scale: factor must be a finite number/);
  });

  test.each(testDevices())('a failure in queued work on %s rejects the next read with the op named', async (device) => {
    const t = zeros([8], { device });
    debug.queueFailure(device, 'injected failure');
    await expect(t.toArray()).rejects.toThrow('queueFailure: injected failure');
    // The error is reported once; the backend keeps working.
    expect(Array.from(await t.toArray())).toEqual(new Array(8).fill(0));
  });
});
