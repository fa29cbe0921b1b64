// One rank of the exit-without-close tests (mpirun -np 2 or mpiexec.mpich -n 2).
// usage: node unclosed.js <close | forget | exit-code>
//   close:     both ranks close the group and end: the job must exit 0, with no line about an open group
//   forget:    rank 1 ends (exit code 0) without closing while rank 0 waits in close(): the job must fail
//   exit-code: rank 1 calls process.exit(4) without closing: the job must end with 4
'use strict';
const { initDistributed } = require('../../reliability/children/entry');

(async () => {
  const g = initDistributed({ timeoutSeconds: 30 });
  await g.allGatherScalars([g.rank]);
  const mode = process.argv[2];
  if (g.rank === 1 && mode === 'forget') return;
  if (g.rank === 1 && mode === 'exit-code') process.exit(4);
  await g.close();
  console.log(JSON.stringify({ rank: g.rank, closed: true }));
})().catch((e) => {
  console.error(`rank error: ${e.message}`);
  process.exit(1);
});
