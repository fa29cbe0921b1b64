// Queues `steps` ops that each allocate a 1 MiB output, disposing every result at once so that only the queue
// keeps them alive, and prints the peak of memory().<device>.inUse (MiB) seen while queueing.
// usage: node queue-memory.js <device> <depth> <steps>
'use strict';
const am = require('./entry');
const [device, depth, steps] = process.argv.slice(2);
am.setQueueDepth(Number(depth));
const x = am.randn([256 * 1024], { device, seed: 1 });
am.synchronize(device).then(async () => {
  let peak = 0;
  for (let i = 0; i < Number(steps); i++) {
    x.scale(1.0001).dispose();
    if (i % 10 === 0) peak = Math.max(peak, am.memory()[device].inUse);
  }
  await am.synchronize(device);
  console.log(JSON.stringify({ depth: am.queueDepth(), peakInUseMiB: peak / 2 ** 20, inUseAfterMiB: am.memory()[device].inUse / 2 ** 20 }));
});
