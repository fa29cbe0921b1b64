// worker_threads and the addon. usage: node workers.js <case> <device>
//   both-load          main and a worker each load the addon and compute the same thing; results must agree
//   concurrent         four workers and main compute at once; every result must equal main's
//   terminate-queued   a worker queues a lot of work and is terminated; main keeps computing
//   exit-pending-read  a worker calls process.exit() with a read pending; main keeps computing
//   worker-only        only workers load the addon (main never does); each is terminated with work queued
// Prints "ok" and exits 0 when every check held.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const entry = require('path').join(__dirname, 'entry.js');
// The TypeScript loader's compiler is a native addon too: keep it loaded in main, so that a worker's exit never
// unloads it (only am-radio's own unloading is under test here).
if (isMainThread && !process.env.AM_RADIO_ENTRY) require('./register');

function compute(am, device, n) {
  const { ops, randn } = am;
  let a = randn([n, n], { device, seed: 11 });
  const w = randn([n, n], { device, seed: 12 }).scale(1 / n);
  for (let i = 0; i < 20; i++) a = ops.linear(a, w, undefined, { activation: 'gelu' });
  if (device !== 'cpu') return a.toArray();
  // bf16 on cpu runs on AMX tiles where the CPU has them: tile state is per thread, and a worker's pool must get
  // the same bits as main's.
  let h = a.cast('bf16');
  const wb = w.cast('bf16');
  for (let i = 0; i < 5; i++) h = ops.linear(h, wb, undefined, { activation: 'gelu' });
  return Promise.all([a.toArray(), h.toArray()]).then(([x, y]) => Float32Array.from([...x, ...y]));
}

function queueLots(am, device) {
  const { ops, randn } = am;
  let a = randn([128, 128], { device, seed: 3 });
  const w = randn([128, 128], { device, seed: 4 });
  for (let i = 0; i < 400; i++) a = ops.linear(a, w).mul(a);
  return a;
}

if (!isMainThread) {
  const { mode, device } = workerData;
  const am = require(entry);
  if (mode === 'compute') {
    compute(am, device, 48).then((v) => parentPort.postMessage(Array.from(v)));
  } else if (mode === 'queue') {
    queueLots(am, device);
    parentPort.postMessage('queued');
    setInterval(() => {}, 1000);  // stay alive until terminated
  } else if (mode === 'exit-read') {
    const a = queueLots(am, device);
    a.toArray();  // pending, never awaited
    process.exit(0);
  }
  return;
}

const [mode, device] = process.argv.slice(2);
// Listeners go on at spawn: a worker that has already exited would never fire a late 'exit' listener.
function spawn(m) {
  const w = new Worker(__filename, { workerData: { mode: m, device } });
  w.result = new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  w.ended = new Promise((resolve) => w.once('exit', resolve));
  return w;
}
const result = (w) => w.result;
const ended = (w) => w.ended;
function same(a, b, what) {
  if (a.length !== b.length || a.some((x, i) => x !== b[i])) throw new Error(`${what}: results differ`);
}

async function main() {
  if (mode === 'worker-only') {
    for (let i = 0; i < 3; i++) {
      const w = spawn('queue');
      if ((await result(w)) !== 'queued') throw new Error('worker did not queue');
      await w.terminate();
    }
    const w = spawn('compute');
    const v = await result(w);
    if (v.length !== (device === 'cpu' ? 2 : 1) * 48 * 48 || v.some((x) => !Number.isFinite(x))) throw new Error('worker result is wrong');
    await ended(w);
    console.log('ok');
    return;
  }
  const am = require(entry);
  const want = Array.from(await compute(am, device, 48));
  if (mode === 'both-load') {
    const w = spawn('compute');
    same(await result(w), want, 'worker vs main');
    await ended(w);
  } else if (mode === 'concurrent') {
    const ws = [0, 1, 2, 3].map(() => spawn('compute'));
    const mine = compute(am, device, 48);
    const got = await Promise.all(ws.map(result));
    got.forEach((g, i) => same(g, want, `worker ${i}`));
    same(Array.from(await mine), want, 'main while workers ran');
    await Promise.all(ws.map(ended));
  } else if (mode === 'terminate-queued') {
    for (let i = 0; i < 3; i++) {
      const w = spawn('queue');
      if ((await result(w)) !== 'queued') throw new Error('worker did not queue');
      const busy = compute(am, device, 48);
      await w.terminate();
      same(Array.from(await busy), want, `main after terminate ${i}`);
    }
  } else if (mode === 'exit-pending-read') {
    for (let i = 0; i < 3; i++) {
      const w = spawn('exit-read');
      const code = await ended(w);
      if (code !== 0) throw new Error(`worker exited ${code}`);
      same(Array.from(await compute(am, device, 48)), want, `main after worker exit ${i}`);
    }
  } else throw new Error(`unknown case ${mode}`);
  console.log('ok');
}
main().catch((e) => { console.error(e); process.exit(3); });
