// The collectives that both the MPI child (collectives.js, cpu tensors) and the NCCL child (nccl.js, cuda
// tensors) check, so the two paths are held to the same cases: what each rank got, as JSON-ready values.
'use strict';

/** f()'s Error message, or null when it did not throw. */
const caught = (f) => {
  try {
    f();
    return null;
  } catch (e) {
    return e.message;
  }
};

/**
 * sum and mean of small tensors, a sum of `big` elements (odd, and more than one chunk of a queue's work) checked
 * here against the formula, a broadcast from the last rank, an i32 broadcast from rank 0, and an empty all-reduce.
 * make(values, shape, dtype?) makes a tensor on the device under test.
 */
async function commonCases(g, make, big) {
  const r = g.rank;
  const values = (n, k) => Array.from({ length: n }, (_, i) => (r + 1) * (i * 0.25 - k) + r * r);
  const sum = g.allReduce(make(values(7, 1), [7]), 'sum');
  const mean = g.allReduce(make(values(5, 2), [5]), 'mean');
  const large = g.allReduce(make(values(big, 3), [big]), 'sum');
  const bcast = g.broadcast(make(values(9, 4), [9]), g.size - 1);
  const ints = g.broadcast(make([r, r + 10, r + 20], [3], 'i32'), 0);
  const empty = g.allReduce(make([], [0]), 'sum');
  const out = {
    rank: r,
    size: g.size,
    backend: g.backend,
    sum: Array.from(await sum.toArray()),
    mean: Array.from(await mean.toArray()),
    bcast: Array.from(await bcast.toArray()),
    ints: Array.from(await ints.toArray()),
    empty: (await empty.toArray()).length,
  };
  const l = await large.toArray();
  let worst = 0;
  for (let i = 0; i < big; i++) {
    let want = 0;
    for (let q = 0; q < g.size; q++) want += (q + 1) * (i * 0.25 - 3) + q * q;
    worst = Math.max(worst, Math.abs(l[i] - want) / Math.max(1, Math.abs(want)));
  }
  out.largeWorst = worst;
  return out;
}

module.exports = { caught, commonCases };
