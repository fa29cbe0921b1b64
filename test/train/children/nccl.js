// One rank of the NCCL tests (test/train/nccl.test.ts; needs a GPU per rank and libnccl.so.2), started
// torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the collectives on cuda tensors, the trainer's
// bucketed gradient reduction, and the Errors of calls that must fail. Prints one JSON line, or the Error it
// failed with (then exits 3).
'use strict';
require('../../reliability/children/register');
const { initDistributed, tensor } = require('../../../ts');
const { native } = require('../../../ts/native');
const { allReduceBuckets } = require('../../../ts/train/buckets');

const { caught, commonCases } = require('./collective-cases');
const { gatherCases } = require('./gather-cases');
const rank = Number(process.env.RANK);

(async () => {
  const g = initDistributed({ timeoutSeconds: 60 });  // device 'cuda': the default of a torchrun-style start
  await g.ready();
  const r = g.rank;
  const cuda = (v, shape, dtype = 'f32') => tensor(v, shape, { device: 'cuda', dtype });
  const out = await commonCases(g, cuda, (1 << 20) + 3);
  // Small integers and halves: exact in bf16, so the sum is exact too.
  const bf16 = g.allReduce(cuda([r + 1, 2 * (r + 1), 0.5], [3], 'bf16'), 'sum');
  // allGather straight through the binding, as the group's allGather below uses it: 4 floats per rank.
  const mine = cuda([0, 1, 2, 3].map((i) => r * 10 + i), [4]);
  const gathered = cuda(new Array(4 * g.size).fill(-1), [4 * g.size]);
  native.ncclAllGather({ input: mine.native('allGather'), output: gathered.native('allGather'), bytes: 16 });
  // The trainer's reduction: three "parameters" in two buckets (the cap holds two of them), mean over ranks.
  const params = [[3], [2], [4]].map(([n], j) => {
    const p = cuda(new Array(n).fill(0), [n]);
    p.grad = cuda(Array.from({ length: n }, (_, i) => (r + 1) * (j + 1) + i), [n]);
    return p;
  });
  const buckets = allReduceBuckets(g, params, 6 * 4);
  Object.assign(out, {
    bf16: Array.from(await bf16.toArray()),
    gathered: Array.from(await gathered.toArray()),
    buckets,
    grads: await Promise.all(params.map(async (p) => Array.from(await p.grad.toArray()))),
    scalars: await g.allGatherScalars([r]),
    tensors: await gatherCases(g, cuda, (1 << 20) + 3),
  });
  out.errors = {
    cpu: caught(() => g.allReduce(tensor([1], [1]), 'sum')),
    sim: caught(() => g.allReduce(tensor([1], [1], { device: 'sim' }), 'sum')),
    i32: caught(() => g.allReduce(cuda([1], [1], 'i32'), 'sum')),
    root: caught(() => g.broadcast(cuda([1], [1]), g.size)),
  };
  await g.close();
  out.afterClose = caught(() => g.allReduce(cuda([1], [1])));
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => {
  console.log(JSON.stringify({ rank, error: e.message }));
  process.exit(3);
});
