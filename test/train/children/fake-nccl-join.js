// One rank of the id-exchange test against the stand-in libnccl (fake-nccl.c, named by AM_RADIO_NCCL_LIBRARY):
// rank 0's unique id must reach every rank intact, by MPI's broadcast (under mpirun) or by the rendezvous
// (torchrun-style variables), for ncclCommInitRank to accept it (the stand-in checks the bytes). Prints one JSON
// line: the rank and what joining gave.
// usage: node fake-nccl-join.js mpi | torchrun
'use strict';
require('../../reliability/children/register');
const { initDistributed } = require('../../../ts');
const { native } = require('../../../ts/native');
const { joinNccl, shareByMpi } = require('../../../ts/train/distributed');
const { Rendezvous } = require('../../../ts/train/rendezvous');

(async () => {
  let rank;
  let size;
  let close;
  let share;
  if (process.argv[2] === 'mpi') {
    const g = initDistributed({ timeoutSeconds: 30 });
    [rank, size, close, share] = [g.rank, g.size, () => g.close(), shareByMpi];
  } else {
    rank = Number(process.env.RANK);
    size = Number(process.env.WORLD_SIZE);
    const rv = await Rendezvous.connect({ rank, size, addr: process.env.MASTER_ADDR, port: Number(process.env.MASTER_PORT), timeoutSeconds: 20 });
    [close, share] = [() => rv.close(), (id) => rv.broadcast(id)];
  }
  const joined = await joinNccl(rank, size, 20, share).then(() => 'ok', (e) => e.message);
  await close();
  console.log(JSON.stringify({ rank, size, joined, library: native.ncclLibrary().versionText }));
})().catch((e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(3);
});
