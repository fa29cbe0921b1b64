// profile(): per-op totals of what a function queues on one device.
import { formatProfile, ops, profile, synchronize, tensor } from '../ts';
import { describeEachDevice, freshSeed, randomArray } from './support/reference';

describeEachDevice('profile on %s', (device) => {
  const input = (shape: number[], requiresGrad = false) =>
    tensor(randomArray(shape.reduce((a, b) => a * b, 1), freshSeed()), shape, { device, requiresGrad });

  test('counts each op the function queued, with times that add up within the wall time', async () => {
    const x = input([2, 5, 32]);
    const wqkv = input([96, 32]);
    const w1 = input([48, 32]);
    const w2 = input([32, 48]);
    const ln = [tensor(new Float32Array(32).fill(1), [32], { device }), tensor(new Float32Array(32), [32], { device })];
    const { result, profile: p } = await profile(
      () => {
        const h = ops.layerNorm(x, ln[0], ln[1]);
        const a = ops.attention(ops.linear(h, wqkv), { heads: 2 });
        const m = ops.linear(ops.gelu(ops.linear(a, w1)), w2);
        return m.toArray();
      },
      { device },
    );
    expect(result).toHaveLength(2 * 5 * 32);
    const calls = Object.fromEntries(p.ops.map((o) => [o.op, o.calls]));
    expect(calls).toMatchObject({ matmul: 3, attention: 1, layerNorm: 1, gelu: 1 });
    expect(p.device).toBe(device);
    for (const o of p.ops) expect(o.ms).toBeGreaterThanOrEqual(0);
    expect(p.opMs).toBeCloseTo(p.ops.reduce((s, o) => s + o.ms, 0), 9);
    expect(p.ops.reduce((s, o) => s + o.share, 0)).toBeCloseTo(p.opMs > 0 ? 1 : 0, 9);
    // Ops of one device run one after another inside the profiled window.
    expect(p.opMs).toBeLessThanOrEqual(p.wallMs * 1.01 + 0.5);
    for (let i = 1; i < p.ops.length; i++) expect(p.ops[i - 1].ms).toBeGreaterThanOrEqual(p.ops[i].ms);
    const table = formatProfile(p);
    expect(table).toMatch(new RegExp(`^profile on ${device}: `));
    expect(table).toMatch(/\nmatmul +3 /);
  });

  test('backward ops are timed under their own names', async () => {
    const x = input([3, 16], true);
    const w = input([8, 16], true);
    const { profile: p } = await profile(() => ops.gelu(ops.linear(x, w)).sum().backward(), { device });
    const names = p.ops.map((o) => o.op);
    expect(names).toEqual(expect.arrayContaining(['matmul', 'gelu', 'gelu backward']));
  });

  test('work queued before the call is not counted, and nothing is timed after it', async () => {
    const a = input([64, 64]);
    const before = ops.linear(a, a);
    const { profile: p } = await profile(() => undefined, { device });
    expect(p.ops).toEqual([]);
    ops.linear(before, a);
    await synchronize(device);
    const { profile: q } = await profile(() => ops.gelu(a).toArray(), { device });
    expect(q.ops.map((o) => [o.op, o.calls])).toEqual([['gelu', 1]]);
  });

  test('a nested profile of the same device is an Error, and a failing function leaves profiling off', async () => {
    await expect(profile(() => profile(() => undefined, { device }), { device })).rejects.toThrow(
      `profile: ${device} is already being profiled (profiles of one device do not nest)`,
    );
    const a = input([8, 8]);
    await expect(
      profile(() => {
        ops.gelu(a);
        throw new Error('boom');
      }, { device }),
    ).rejects.toThrow('boom');
    // Profiling was switched off by the failure: this relu is timed by the next profile only if queued inside it.
    ops.relu(a);
    const { profile: p } = await profile(() => ops.sigmoid(a).toArray(), { device });
    expect(p.ops.map((o) => o.op)).toEqual(['sigmoid']);
  });
});

test('an unknown device is refused by name', async () => {
  await expect(profile(() => undefined, { device: 'tpu' as never })).rejects.toThrow('unknown device "tpu"');
});
