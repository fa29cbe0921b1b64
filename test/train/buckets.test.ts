// DDP-style gradient buckets (ts/train/buckets.ts): the packing rule, and a reduction through a group that records
// what it is given: each bucket is one call holding its gradients back to back, in reverse parameter order, and
// every gradient comes back with its values and shape.
import { initDistributed, tensor } from '../../ts';
import type { ProcessGroup, Tensor } from '../../ts';
import { allReduceBuckets, gradientBuckets } from '../../ts/train/buckets';

const fake = (numel: number, name: string) => ({ numel, dtype: 'f32' as const, name });

test('buckets: reverse order, consecutive, at most the cap unless one tensor alone exceeds it', () => {
  const ps = [fake(10, 'a'), fake(20, 'b'), fake(5, 'c'), fake(100, 'd'), fake(3, 'e')];
  const names = (cap: number) => gradientBuckets(ps, cap).map((b) => b.map((p) => p.name).join(''));
  // Bytes: a 40, b 80, c 20, d 400, e 12.
  expect(names(100)).toEqual(['e', 'd', 'cb', 'a']);
  expect(names(140)).toEqual(['e', 'd', 'cba']);
  expect(names(412)).toEqual(['ed', 'cba']);
  expect(names(1e9)).toEqual(['edcba']);
  expect(names(0)).toEqual(['e', 'd', 'c', 'b', 'a']);
  expect(gradientBuckets([], 100)).toEqual([]);
  expect(() => gradientBuckets(ps, -1)).toThrow('gradientBuckets: capBytes must be a finite number >= 0, got -1');
});

test('allReduceBuckets: one call per bucket with the gradients back to back; the gradients come back unchanged', async () => {
  const trivial = initDistributed({ env: {} });
  const seen: Tensor[] = [];
  const group = { allReduce: (t: Tensor, op: string) => (expect(op).toBe('mean'), seen.push(t.detach()), trivial.allReduce(t, 'mean')) } as unknown as ProcessGroup;
  const shapes = [[2, 3], [4], [1], [3, 2, 2]];
  const params = shapes.map((shape, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const p = tensor(Array.from({ length: n }, () => 0), shape, { requiresGrad: true });
    p.grad = tensor(Array.from({ length: n }, (_, j) => 100 * i + j), shape);
    return p;
  });
  const before = await Promise.all(params.map((p) => p.grad!.toArray()));
  // 24 + 16 bytes fit 40; then 4 + 48 do not: buckets [3] (48 > 40 alone), [2, 1] (8), [0] (24 + 8 > 40).
  expect(allReduceBuckets(group, params, 40)).toBe(3);
  expect(seen.map((t) => t.shape)).toEqual([[3, 2, 2], [5], [2, 3]]);
  expect(Array.from(await seen[1].toArray())).toEqual([200, 100, 101, 102, 103]);
  for (const [i, p] of params.entries()) {
    expect(p.grad!.shape).toEqual(shapes[i]);
    expect(Array.from(await p.grad!.toArray())).toEqual(Array.from(before[i]));
  }
});

test('allReduceBuckets: bf16 gradients reach the group in f32 (alone in a bucket too) and come back bf16, shape and values kept', async () => {
  const trivial = initDistributed({ env: {} });
  const seen: Tensor[] = [];
  const group = { allReduce: (t: Tensor, op: string) => (expect(op).toBe('mean'), seen.push(t.detach()), trivial.allReduce(t, 'mean')) } as unknown as ProcessGroup;
  // Values exact in bf16, so that the round trip through f32 keeps them.
  const make = (shape: number[], dtype: 'f32' | 'bf16', base: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const p = tensor(new Array(n).fill(0), shape, { dtype, requiresGrad: true });
    p.grad = tensor(Array.from({ length: n }, (_, j) => base + j * 0.5), shape, { dtype });
    return p;
  };
  const params = [make([2, 2], 'bf16', 1), make([3], 'f32', 10), make([5], 'bf16', -4)];
  // 20 bytes (5 elements in f32, not 10 in bf16) fill the cap alone: buckets [2], then [1, 0] (12 + 16 bytes).
  expect(allReduceBuckets(group, params, 28)).toBe(2);
  expect(seen.map((t) => [t.dtype, t.shape])).toEqual([['f32', [5]], ['f32', [7]]]);
  expect(Array.from(await seen[1].toArray())).toEqual([10, 10.5, 11, 1, 1.5, 2, 2.5]);
  expect(params.map((p) => [p.grad!.dtype, p.grad!.shape])).toEqual([['bf16', [2, 2]], ['f32', [3]], ['bf16', [5]]]);
  expect(await Promise.all(params.map(async (p) => Array.from(await p.grad!.toArray())))).toEqual([[1, 1.5, 2, 2.5], [10, 10.5, 11], [-4, -3.5, -3, -2.5, -2]]);
});
