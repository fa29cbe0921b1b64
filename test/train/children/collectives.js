// One rank of the collectives test (run by mpirun -np 2): prints one JSON line of what each collective gave
// this rank, and the Error messages of the calls that must fail; the test compares them with its own reference.
// usage: node collectives.js [abort | exit-pending]
//   abort: rank 0 aborts the job while rank 1 waits in a barrier
//   exit-pending: rank 0 calls process.exit(7) with a collective queued that rank 1 never joins
'use strict';
const { initDistributed, tensor } = require('../../reliability/children/entry');

const { caught, commonCases } = require('./collective-cases');
const { gatherCases } = require('./gather-cases');

(async () => {
  const g = initDistributed({ timeoutSeconds: 30 });
  const r = g.rank;
  if (process.argv[2] === 'exit-pending') {
    // Rank 0 exits with an allReduce still waiting for rank 1 (which sleeps): the wait must stop at the queue's
    // cancellation point, so the exit takes moments, not the 30 s timeout.
    if (r === 1) return void setTimeout(() => {}, 60_000);
    g.allReduce(tensor([1, 2, 3], [3]), 'sum');
    return void setTimeout(() => process.exit(7), 300);
  }
  if (process.argv[2] === 'abort') {
    // Rank 1 waits in a barrier that rank 0 never joins: rank 0's abort must end it, and the job, with code 5.
    if (r === 0) return void setTimeout(() => g.abort(5), 300);
    await g.barrier();
    console.log(JSON.stringify({ rank: r, passed: 'the barrier' }));
    return;
  }
  // More than one chunk of the queue's work and an odd size: 100003 elements.
  const out = await commonCases(g, (v, shape, dtype = 'f32') => tensor(v, shape, { dtype }), 100003);
  out.gathered = (await g.allGatherScalars([r, NaN, r * 1.5, -Infinity])).map((x) => x.map(String));  // JSON has no NaN
  out.gatheredEmpty = await g.allGatherScalars([]);
  out.mismatch = await g.allGatherScalars(Array(r + 1).fill(1)).then(() => null, (e) => e.message);
  out.tensors = await gatherCases(g, (v, shape, dtype = 'f32') => tensor(v, shape, { dtype }), 100003);
  await g.barrier();
  out.errors = {
    bf16: caught(() => g.allReduce(tensor([1, 2], [2], { dtype: 'bf16' }), 'sum')),
    op: caught(() => g.allReduce(tensor([1], [1]), 'max')),
    root: caught(() => g.broadcast(tensor([1], [1]), 2)),
    sim: caught(() => g.allReduce(tensor([1], [1], { device: 'sim' }), 'sum')),
    code: caught(() => g.abort(0)),
  };
  await g.close();
  out.afterClose = caught(() => g.allReduce(tensor([1], [1]), 'sum'));
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
