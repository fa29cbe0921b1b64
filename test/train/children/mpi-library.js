// One rank of the MPI library tests (run by mpirun or mpiexec.mpich -n 2): which library the addon opened under
// this launcher and what it says it is. prints one JSON line { rank, size, library, version }
'use strict';
require('../../reliability/children/register');
const { native } = require('../../../ts/native');

const r = native.distInit({ timeoutSeconds: 30 });
console.log(JSON.stringify({ rank: r.rank, size: r.size, library: r.library, version: r.version }));
native.distBarrier();
native.distFinalize();
