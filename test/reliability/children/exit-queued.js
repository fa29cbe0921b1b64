// Queues work on one backend, then ends the script in the way argv says, without waiting for it.
// usage: node exit-queued.js <device> <end|throw|exit|exit-code|exit-long>
//   exit-long times one large product, queues 60 more (a minute of work or more), lets one start, then calls
//   process.exit; it prints {"op": seconds per product} first, so the caller can tell cancelling from finishing.
'use strict';
const { ops, randn, synchronize } = require('./entry');
const [device, how] = process.argv.slice(2);

async function exitLong() {
  const n = device === 'sim' ? 512 : 3072;
  const a = randn([n, n], { device, seed: 1 });
  const w = randn([n, n], { device, seed: 2 }).scale(1 / n);
  await synchronize(device);
  const t0 = Date.now();
  ops.linear(a, w).dispose();
  await synchronize(device);
  console.log(JSON.stringify({ op: (Date.now() - t0) / 1000 }));
  for (let i = 0; i < 60; i++) ops.linear(a, w);
  setTimeout(() => process.exit(0), 200);  // by then one of them is running
}

if (how === 'exit-long') exitLong();
else {
  const n = device === 'sim' ? 64 : 256;
  let a = randn([n, n], { device, seed: 1 });
  const w = randn([n, n], { device, seed: 2 });
  for (let i = 0; i < 300; i++) a = ops.linear(a, w).mul(a);
  if (how === 'throw') throw new Error('deliberate uncaught error with work queued');
  if (how === 'exit') process.exit(0);
  if (how === 'exit-code') process.exit(7);
}
