// One rank of the data-parallel distillation tests (run by mpirun -np 2).
// usage: node distill.js <run|resume|die|stuck|diverge> <student dir> <out dir> <global batch> <steps> [stop after] [options JSON]
//   (options JSON: more distill options, e.g. {"accumulate":2}; stop after may be '' for none)
//   run:    trains, prints one JSON line { rank, losses, gradNorms, images, checksum, checkpoint, allReduces, counted, atForward }
//           (allReduces: the metrics' per step; counted: the allReduce calls the group saw per step; atForward: the
//           count at each teacher forward, one per micro-batch)
//   resume: the same, continuing from the out dir's latest checkpoint
//   die:   rank 1 calls process.exit(0) after step 2 (without closing the group): the job must end non-zero
//   stuck: rank 1 stops answering after step 2 (a long wait in onStep); rank 0's collective must time out
//   diverge: rank 1 scales one of its parameters after step 1; the replica check must catch it
'use strict';
const { distill, initDistributed, RadioTeacher, SyntheticSource } = require('../../reliability/children/entry');
const { TEACHER_DIR } = require('../support');

const [mode, studentDir, outDir, batch, steps, stopAfter, extra] = process.argv.slice(2);

(async () => {
  const inner = initDistributed({ timeoutSeconds: mode === 'stuck' ? 3 : 60 });
  let calls = 0;
  const group = new Proxy(inner, {
    get(target, key) {
      if (key === 'allReduce') return (...args) => (calls++, target.allReduce(...args));
      const v = target[key];
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
  const atForward = [];
  const forward = teacher.forward.bind(teacher);
  teacher.forward = (...args) => (atForward.push(calls), forward(...args));
  const counted = [];
  let before = 0;
  const r = await distill({
    student: { dir: studentDir },
    teachers: [{ teacher }],
    data: new SyntheticSource({ seed: 2, partitions: [{ height: 32, width: 32, batch: Number(batch) }] }),
    steps: Number(steps),
    stopAfter: stopAfter ? Number(stopAfter) : undefined,
    resume: mode === 'resume',
    maxGradNorm: 1,
    optimizer: { lr: 2e-3 },
    outDir,
    progress: false,
    ...(extra ? JSON.parse(extra) : {}),
    distributed: group,
    distributedCheckEvery: 1,
    onStep: async (m, live) => {
      counted.push(calls - before);
      before = calls;
      if (mode === 'diverge' && m.step === 1 && group.rank === 1) {
        const [key, p] = [...live.student.namedParameters()][0];
        live.student.loadStateDict({ [key]: p.scale(1.001) }, { strict: false });
      }
      if (m.step !== 2 || group.rank !== 1) return;
      if (mode === 'die') process.exit(0);
      if (mode === 'stuck') await new Promise((resolve) => setTimeout(resolve, 60_000));
    },
  });
  let h = 0x811c9dc5;
  for (const [, p] of r.student.namedParameters()) {
    const v = await p.toArray();
    for (const w of new Uint32Array(v.buffer, v.byteOffset, v.length)) h = Math.imul(h ^ w, 0x01000193) >>> 0;
  }
  console.log(JSON.stringify({
    rank: group.rank,
    losses: r.history.map((m) => m.loss),
    gradNorms: r.history.map((m) => m.gradNorm),
    images: r.history.map((m) => m.images),
    checksum: h,
    checkpoint: r.checkpoint,
    allReduces: r.history.map((m) => m.allReduces),
    counted,
    atForward,
  }));
  r.student.dispose();
  await teacher.close();
  await group.close();
})().catch((e) => {
  console.error(`rank error: ${e.message}`);
  process.exit(1);
});
