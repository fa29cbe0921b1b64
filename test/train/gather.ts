// What the ranks of a world of n got from children/gather-cases.js, checked against values computed here: the MPI
// test (distributed.test.ts, Open MPI and MPICH) and the NCCL test (nccl.test.ts) hold their paths to the same.
export function expectGather(n: number, device: 'cpu' | 'cuda', rank: number, o: Record<string, unknown>) {
  const ranks = Array.from({ length: n }, (_, q) => q);
  const over = (f: (q: number) => number[]) => ranks.flatMap(f);
  const f32 = (v: number[]) => Array.from(Float32Array.from(v));
  const read = (shape: number[], dtype: string, values: number[]) => ({ shape, dtype, device, values });
  expect({ rank, f32: o.f32 }).toEqual({ rank, f32: read([n, 3, 1, 5], 'f32', f32(over((q) => Array.from({ length: 15 }, (_, i) => q * 100 + i * 0.5 - 1)))) });
  expect(o.bf16).toEqual(read([n, 7], 'bf16', over((q) => Array.from({ length: 7 }, (_, i) => q * 8 + i * 0.25))));
  expect(o.i32).toEqual(read([n, 1, 3], 'i32', over((q) => [q, 3 - 2 * q, 1 << 20])));
  expect(o.scalar).toEqual(read([n], 'f32', over((q) => [q + 0.5])));
  expect(o.empty).toEqual(read([n, 2, 0, 3], 'f32', []));
  expect(o.largeBad).toBe(0);
  const why = (what: string) => `allGather: the ranks passed tensors of ${what}; every rank must pass the same shape and dtype`;
  const byRank = (f: (q: number) => string) => ranks.map((q) => `rank ${q}: ${f(q)}`).join(', ');
  // A world of one cannot disagree with itself.
  expect(o.mismatch).toEqual(
    n === 1
      ? { length: null, ndim: null, dtype: null }
      : {
          length: why(`different shapes (${byRank((q) => `[${q + 2}]`)})`),
          ndim: why(`different shapes (${byRank((q) => (q === 0 ? '[6]' : '[2, 3]'))})`),
          dtype: why(`different dtypes (${byRank((q) => (q === 0 ? 'f32' : 'bf16'))})`),
        },
  );
  expect(o.after).toEqual(read([n, 1], 'f32', ranks));
  expect(o.errors).toEqual({
    notTensor: 'allGather: expected a Tensor',
    sim: 'allGather: the tensor is on sim; the collectives take cpu tensors (MPI) or cuda tensors (NCCL)',
  });
}
