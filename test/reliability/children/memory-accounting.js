// The allocator's accounting, in a process of its own: inside a jest worker, tensors that earlier test files left to
// the garbage collector are released at unpredictable moments, so inUse can drop while this measures a growth.
// Prints memory().cpu at each step of: allocate 400 kB, dispose, allocate 400 kB again (the cached block is reused).
'use strict';
const am = require('./entry');
(async () => {
  await am.zeros([1]).toArray();
  const before = am.memory().cpu;
  const t = am.tensor(new Float32Array(100000), [100000]);
  await t.toArray();
  const during = am.memory().cpu;
  t.dispose();
  // Release happens when queued work drops its reference; wait for the queue.
  await am.zeros([1]).toArray();
  const after = am.memory().cpu;
  const again = am.tensor(new Float32Array(100000), [100000]);
  const reused = am.memory().cpu;
  again.dispose();
  console.log(JSON.stringify({ before, during, after, reused }));
})();
