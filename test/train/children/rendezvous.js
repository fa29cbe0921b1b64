// One rank of the rendezvous tests (test/train/rendezvous.test.ts), started with RANK, WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT as torchrun would: prints one JSON line of what this rank got, or of the Error it failed with (and
// then exits 3, as a failed rank must).
// usage: node rendezvous.js ok | exit-early | group
//   ok: connect, broadcast rank 0's bytes, all-gather, barrier, close (the Rendezvous itself)
//   exit-early: as ok, but the last rank exits right after connecting; the others' barrier must fail naming it
//   group: initDistributed's torchrun-style group with device 'cpu': allGatherScalars, barrier, a refused cpu
//          allReduce, close
'use strict';
require('../../reliability/children/register');
const { Rendezvous } = require('../../../ts/train/rendezvous');
const { initDistributed, tensor } = require('../../../ts');

const rank = Number(process.env.RANK);
const size = Number(process.env.WORLD_SIZE);
const timeoutSeconds = Number(process.env.RDV_TIMEOUT ?? 20);
const print = (o) => console.log(JSON.stringify({ rank, ...o }));

async function plain(mode) {
  const rv = await Rendezvous.connect({ rank, size, addr: process.env.MASTER_ADDR, port: Number(process.env.MASTER_PORT), timeoutSeconds });
  if (mode === 'exit-early' && rank === size - 1) process.exit(0);
  const id = await rv.broadcast(rank === 0 ? Buffer.from('the id of rank 0') : undefined);
  const gathered = await rv.allGather(Buffer.from('x'.repeat(rank) + `rank ${rank}`));
  await rv.barrier();
  const empty = await rv.allGather(Buffer.alloc(0));
  await rv.close();
  print({ id: id.toString(), gathered: gathered.map((b) => b.toString()), empty: empty.map((b) => b.length) });
}

async function group() {
  const g = initDistributed({ device: 'cpu', timeoutSeconds });
  await g.ready();
  const scalars = await g.allGatherScalars([rank, rank * 0.5, NaN]);
  await g.barrier();
  let cpuError = null;
  try {
    g.allReduce(tensor([1, 2], [2]));
  } catch (e) {
    cpuError = e.message;
  }
  let mismatch = null;
  try {
    await g.allGatherScalars(rank === 0 ? [1] : [1, 2]);
  } catch (e) {
    mismatch = e.message;
  }
  await g.close();
  print({ backend: g.backend, size: g.size, device: g.device, scalars: scalars.map((r) => r.map(String)), cpuError, mismatch });
}

(process.argv[2] === 'group' ? group() : plain(process.argv[2])).then(
  () => process.exit(0),
  (e) => {
    print({ error: e.message });
    process.exit(3);
  },
);
