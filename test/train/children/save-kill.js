// Trains argv[2]'s student (argv[3]: the run folder) for 4 steps, checkpointing every 2; the second save stops
// midway (weights of step 4 written into its temporary folder, training state not yet), prints "paused" and waits
// to be killed.
'use strict';
require('../../reliability/children/register');
const path = require('path');
const { distill, RadioTeacher, SyntheticSource } = require('../../../ts');

async function main() {
  const [studentDir, outDir] = process.argv.slice(2);
  const teacher = await RadioTeacher.load(path.join(__dirname, '..', '..', 'fixtures', 'radio', 'vit-b16-v2heads'), { name: 'radio' });
  let saves = 0;
  await distill({
    student: { dir: studentDir },
    teachers: [{ teacher }],
    data: new SyntheticSource({ seed: 9, partitions: [{ height: 32, width: 32, batch: 2 }] }),
    steps: 4,
    checkpointEvery: 2,
    outDir,
    progress: false,
    checkpointMidway: async () => {
      if (++saves < 2) return;
      process.stdout.write('paused\n');
      setInterval(() => {}, 1000);
      await new Promise(() => {});
    },
  });
  process.stdout.write('finished without pausing\n');
  process.exit(3);
}

main().catch((e) => {
  console.error(e.stack);
  process.exit(1);
});
