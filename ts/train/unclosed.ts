// A rank whose process ends while its MPI group is open must fail the job under every launcher. Open MPI's mpirun
// ends the job non-zero when a rank exits without MPI_Finalize, but MPICH's hydra takes the rank's exit 0 as
// success, so a job whose rank left early (a forgotten close(), a return past the end of training) would pass. The
// process's exit therefore ends the job itself: one line naming the rank, then MPI_Abort with the process's exit
// code (1 when that is 0, so that the job fails). MPI is one per process, and close() of any group finalises it,
// after which MPI_Abort may not be called: hence one hook per process and one set of open groups.
import * as fs from 'fs';

import { native } from '../native';

interface Rank {
  readonly rank: number;
  readonly size: number;
}

const open = new Set<Rank>();
let hooked = false;

function onExit(code: number) {
  const [g] = open;
  if (!g) return;
  const abortCode = code & 0xff || 1;
  // fs.writeSync: process.stderr may be asynchronous (a pipe), and nothing after MPI_Abort runs.
  fs.writeSync(2, `am-radio: rank ${g.rank} of ${g.size} is exiting (code ${code}) without closing its process group (await group.close() on every rank); ending the job with code ${abortCode}\n`);
  // The launcher forwards a rank's output asynchronously, and the teardown that MPI_Abort starts can drop what it
  // has not forwarded yet: under MPICH's hydra, in about 1 run in 6 of the test under jest's load, the line (and
  // MPICH's own "Abort(1)") never arrived. A moment for it to get out first; this is a failing exit anyway.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  native.distAbort({ code: abortCode });
}

/** From the group's creation (MPI_Init) on, this process's exit ends the job unless mpiFinalized() is called first. */
export function mpiOpened(g: Rank): void {
  open.add(g);
  if (hooked) return;
  hooked = true;
  process.on('exit', onExit);
}

/** MPI_Finalize ran (or is about to): no group of this process is open any more, and MPI_Abort is not allowed. */
export function mpiFinalized(): void {
  open.clear();
}
