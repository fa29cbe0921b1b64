// One rank of the partitioned distillation tests (run by mpirun -np 2), and the setup they share with the test's
// single-process runs: two data partitions (32 px × 4, 48 px × 2), each its own teacher (the embedded checkpoint
// as "a" with the clip and dino_v2 heads on partition 0, as "b" with the sam head on partition 1), one rank each,
// the second group's images weighted 1.5.
// usage: node partitioned.js <run|resume|eager> <student dir> <out dir> <steps> [stop after] [options JSON]
//   prints one JSON line { rank, losses, gradNorms, groups, terms, images, checksum, checkpoint, loaded, ran }
//   (loaded: the teachers whose load distill called on this rank; ran: the result's teachers)
//   eager: run, with the teachers loaded here and given as { teacher }, progress on (non-TTY) stderr; the line also
//   has disposed (by teacher name, after distill), works (the heads' feature shapes of a forward of the teacher this
//   rank ran, after distill) and releasedForward (the Error of a forward of the one it did not run)
'use strict';

const SETUP = {
  partitions: [{ height: 32, width: 32, batch: 4 }, { height: 48, width: 48, batch: 2 }],
  rankGroups: [{ partition: 0, size: 1 }, { partition: 1, size: 1, weight: 1.5 }],
  teachers: [{ name: 'a', heads: ['clip', 'dino_v2'], partitions: [0] }, { name: 'b', heads: ['sam'], partitions: [1] }],
  dataSeed: 2,
  seed: 5,
  lr: 2e-3,
  maxGradNorm: 1,
};

/**
 * The distill options of the setup, given the library (the sources or a package) and its teacher folder. lazy:
 * the teachers as specs with load (distill loads those it runs, and closes them), each load recorded in `loaded`.
 */
async function setupOptions(lib, teacherDir, { lazy = false } = {}) {
  const teachers = [];
  const loaded = [];
  const own = [];
  for (const t of SETUP.teachers) {
    const load = () => {
      loaded.push(t.name);
      return lib.RadioTeacher.load(teacherDir, { name: t.name });
    };
    const spec = { heads: Object.fromEntries(t.heads.map((h) => [h, {}])), partitions: t.partitions };
    if (lazy) teachers.push({ ...spec, load });
    else {
      const teacher = await load();
      own.push(teacher);
      teachers.push({ ...spec, teacher });
    }
  }
  return {
    teachers,
    data: new lib.SyntheticSource({ seed: SETUP.dataSeed, partitions: SETUP.partitions }),
    rankGroups: SETUP.rankGroups,
    seed: SETUP.seed,
    maxGradNorm: SETUP.maxGradNorm,
    optimizer: { lr: SETUP.lr },
    progress: false,
    loaded,
    close: () => Promise.all(own.map((t) => t.close())),
  };
}

/** FNV-1a over the bits of every parameter. */
async function checksum(model) {
  let h = 0x811c9dc5;
  for (const [, p] of model.namedParameters()) {
    const v = await p.toArray();
    for (const w of new Uint32Array(v.buffer, v.byteOffset, v.length)) h = Math.imul(h ^ w, 0x01000193) >>> 0;
  }
  return h;
}

module.exports = { SETUP, setupOptions, checksum };

if (require.main === module) {
  const lib = require('../../reliability/children/entry');
  const { TEACHER_DIR } = require('../support');
  const [mode, studentDir, outDir, steps, stopAfter, extra] = process.argv.slice(2);
  (async () => {
    const group = lib.initDistributed({ timeoutSeconds: 60 });
    const eager = mode === 'eager';
    const { close, loaded, ...setup } = await setupOptions(lib, TEACHER_DIR, { lazy: !eager });
    const r = await lib.distill({
      ...setup,
      ...(eager ? { progress: { stream: process.stderr, tty: false } } : {}),
      student: { dir: studentDir },
      steps: Number(steps),
      stopAfter: stopAfter ? Number(stopAfter) : undefined,
      resume: mode === 'resume',
      outDir,
      ...(extra ? JSON.parse(extra) : {}),
      distributed: group,
      distributedCheckEvery: 1,
    });
    const more = {};
    if (eager) {
      const teachers = setup.teachers.map((s) => s.teacher);
      more.disposed = Object.fromEntries(teachers.map((t) => [t.name, t.model.disposed]));
      const images = () => lib.tensor(new Array(3 * 48 * 48).fill(0.5), [1, 3, 48, 48]);
      const out = await teachers.find((t) => r.teachers.includes(t.name)).forward(images(), { ids: ['x'] });
      more.works = Object.fromEntries(Object.entries(out).map(([h, v]) => [h, v.features.shape]));
      more.releasedForward = await teachers.find((t) => !r.teachers.includes(t.name)).forward(images(), { ids: ['x'] }).then(() => null, (e) => e.message);
    }
    console.log(JSON.stringify({
      ...more,
      rank: group.rank,
      losses: r.history.map((m) => m.loss),
      gradNorms: r.history.map((m) => m.gradNorm),
      groups: r.history.map((m) => m.groups),
      terms: r.history.map((m) => m.terms),
      images: r.history.map((m) => m.images),
      checksum: await checksum(r.student),
      checkpoint: r.checkpoint,
      loaded,
      ran: r.teachers,
    }));
    r.student.dispose();
    await close();
    await group.close();
  })().catch((e) => {
    console.error(`rank error: ${e.message}`);
    process.exit(1);
  });
}
