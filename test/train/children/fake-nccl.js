// Drives native/dist/nccl.cpp against the stand-in library (fake-nccl.c, named by AM_RADIO_NCCL_LIBRARY) without a
// GPU: prints one JSON line of what each step gave. Ends without destroying the communicator unless told to, so
// the test also sees that a process exits cleanly with the watchdog running.
// usage: node fake-nccl.js plain | async-error | destroy | init-fail
'use strict';
require('../../reliability/children/register');
const { native } = require('../../../ts/native');

const mode = process.argv[2];
const out = {};
// The communicator's state is observable without cuda tensors through allGather's size check, which runs before
// any buffer is touched.
const probe = () => {
  const a = native.alloc('cpu', 16);
  try {
    native.ncclAllGather({ input: a, output: a, bytes: 0 });
    return null;
  } catch (e) {
    return e.message;
  } finally {
    a.release();
  }
};
(async () => {
  out.library = native.ncclLibrary();
  const id = native.ncclUniqueId();
  out.idBytes = id.length;
  out.before = probe();
  try {
    await native.ncclInit({ id, rank: 0, size: 1 });
    out.init = 'ok';
  } catch (e) {
    out.init = e.message;
  }
  if (mode === 'init-fail') return;
  out.again = await native.ncclInit({ id, rank: 0, size: 1 }).then(() => 'ok', (e) => e.message);
  if (mode === 'async-error') await new Promise((r) => setTimeout(r, 600));  // the watchdog polls every 100 ms
  if (mode === 'destroy') native.ncclDestroy();
  out.after = probe();
})().then(
  () => console.log(JSON.stringify(out)),
  (e) => console.log(JSON.stringify({ error: e.message })),
);
