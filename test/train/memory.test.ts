// 500 training steps of a very small student: device memory in use and the process RSS stay flat, so nothing of a
// step (activations, graph, teacher targets, loss terms, clipped gradients) outlives it.
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';

import { distill, memory, RadioTeacher, SyntheticSource, synchronize } from '../../ts';
import { makeStudent, TEACHER_DIR, tempDir } from './support';

// A full collection before each sample, so that V8's heap shows what is live rather than when it last collected.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

test('cpu: memory().inUse exactly flat, V8 heap flat and RSS bounded over 500 steps', async () => {
  const dir = tempDir('memory');
  const teacher = await RadioTeacher.load(TEACHER_DIR, { name: 'radio' });
  const inUse: number[] = [];
  const rss: number[] = [];
  const heap: number[] = [];
  const buffers: number[] = [];
  const t0 = Date.now();
  const r = await distill({
    student: { dir: await makeStudent(path.join(dir, 'student'), { embedDim: 32, depth: 1, heads: 1 }) },
    teachers: [{ teacher }],
    data: new SyntheticSource({ seed: 1, images: 16, partitions: [{ height: 32, width: 32, batch: 2 }] }),
    steps: 500,
    maxGradNorm: 1,
    accumulate: 1,
    progress: false,
    onStep: async () => {
      // Queued work holds its buffers until it has run: count once it has.
      await synchronize('cpu');
      inUse.push(memory().cpu!.inUse);
      if (inUse.length % 50 === 0) {
        gc();
        const u = process.memoryUsage();
        rss.push(u.rss);
        heap.push(u.heapUsed);
        buffers.push(u.arrayBuffers);
      }
    },
  });
  const seconds = (Date.now() - t0) / 1000;
  const mb = (v: number) => (v / 2 ** 20).toFixed(1);
  // Samples at steps 50, 100, ..., 500: from step 100 on, against step 100.
  const [rss0, heap0] = [rss[1], heap[1]];
  const rssGrowth = Math.max(...rss.slice(2)) - rss0;
  const heapGrowth = Math.max(...heap.slice(2)) - heap0;
  const bufferGrowth = Math.max(...buffers.slice(2)) - buffers[1];
  console.log(`memory: ${r.history.length} steps in ${seconds.toFixed(1)} s; inUse ${mb(inUse[1])} MiB at step 2, max ${mb(Math.max(...inUse.slice(1)))} MiB after; ` +
    `after GC from step 100 to 500: RSS ${mb(rss0)} MiB + at most ${mb(rssGrowth)}, V8 heap ${mb(heap0)} MiB + at most ${mb(heapGrowth)}, ArrayBuffers ${mb(buffers[1])} MiB + at most ${mb(bufferGrowth)}`);
  expect(r.history.length).toBe(500);
  // From the second step on (AdamW's moments exist after the first) the device never holds more than at step 2
  // (a step may hold a few KiB less, when the queue has already released a buffer by the time it is counted).
  expect(Math.max(...inUse.slice(1))).toBeLessThanOrEqual(inUse[1]);
  // The V8 heap holds the run's history (one small StepMetrics object per step, ~0.3 MiB for 400 steps); a kept
  // graph or set of tensor handles per step would be several times that; a kept batch (24 KiB of pixels) or read-back
  // per step would add ~10 MiB of ArrayBuffers.
  expect(heapGrowth).toBeLessThan(2 * 2 ** 20);
  expect(bufferGrowth).toBeLessThan(3 * 2 ** 20);
  // RSS drifts by ~1 MiB per 500 steps plus jumps of ~10 MiB (malloc arenas) in a bare loop of model.forward,
  // multiTeacherLoss, backward and AdamW too, without any of the trainer: bounded here, not required flat.
  expect(rssGrowth).toBeLessThan(32 * 2 ** 20);
  r.student.dispose();
  await teacher.close();
});
