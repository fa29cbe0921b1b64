// Process exit, uncaught errors and worker_threads with work still queued, and the queue's memory bound. Each case
// runs in a child process (a crash must show as an exit code, not take jest down) and is repeated, a few children
// at a time so the machine is loaded, because the failures these guard against were races that hit 1 run in 10.
// AM_RADIO_RELIABILITY_RUNS raises the repeat count (the GPU check and nightly runs use 20).
import { spawn } from 'child_process';
import * as path from 'path';
import { backends } from '../../ts';

const children = path.join(__dirname, 'children');
const RUNS = Number(process.env.AM_RADIO_RELIABILITY_RUNS ?? 10);
const PARALLEL = 4;
const devices = backends()
  .filter((b) => b.available)
  .map((b) => b.name);

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function run(script: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [path.join(children, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);  // a hang shows as SIGKILL
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** Runs the child `runs` times, PARALLEL at once, and returns every run. */
async function repeat(script: string, args: string[], runs = RUNS, timeoutMs?: number): Promise<Run[]> {
  const out: Run[] = [];
  for (let i = 0; i < runs; i += PARALLEL) {
    const batch = Array.from({ length: Math.min(PARALLEL, runs - i) }, () => run(script, args, timeoutMs));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** "code 0 × 10" style summary, so a failure message shows every outcome at once. */
function outcomes(rs: Run[]): string {
  const counts = new Map<string, number>();
  for (const r of rs) {
    const k = r.signal ? `signal ${r.signal}` : `code ${r.code}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k} × ${n}`).join(', ');
}

describe.each(devices)('exit with work queued on %s', (device) => {
  test.each([
    ['the script ends', 'end', 0],
    ['process.exit(0)', 'exit', 0],
    ['process.exit(7)', 'exit-code', 7],
    ['an uncaught error', 'throw', 1],
  ] as const)('%s: exits with its own code every time, no crash, no hang', async (_title, how, code) => {
    const rs = await repeat('exit-queued.js', [device, how]);
    expect(outcomes(rs)).toBe(`code ${code} × ${rs.length}`);
    for (const r of rs) {
      if (how === 'throw') expect(r.stderr).toMatch(/deliberate uncaught error with work queued/);
      else expect(r.stderr).toBe('');
    }
  });

  test('process.exit with a minute of work queued cancels the running op instead of finishing it', async () => {
    const rs = await repeat('exit-queued.js', [device, 'exit-long'], Math.min(RUNS, 4));
    expect(outcomes(rs)).toBe(`code 0 × ${rs.length}`);
    for (const r of rs) {
      // 60 products are queued after the timed one; finishing them would take 60 × op. Exiting waits for at most
      // one parallel chunk (cpu), one emulated block (sim) or one BLAS call, plus start-up and the 0.2 s delay.
      const { op } = JSON.parse(r.stdout.trim().split('\n')[0]);
      expect(r.seconds).toBeLessThan(Math.max(5, 20 * op));
      expect(r.seconds).toBeLessThan(60 * op);
    }
  });
});

describe.each(devices)('worker_threads on %s', (device) => {
  test.each([
    ['main and a worker both load the addon and agree', 'both-load'],
    ['four workers and main compute at once, every result equal', 'concurrent'],
    ['terminating a worker with work queued leaves main working', 'terminate-queued'],
    ['a worker exiting with a read pending leaves main working', 'exit-pending-read'],
    ['workers alone load the addon and are terminated with work queued', 'worker-only'],
  ] as const)('%s', async (_title, mode) => {
    const rs = await repeat('workers.js', [mode, device], Math.max(1, Math.ceil(RUNS / 2)));
    expect(outcomes(rs)).toBe(`code 0 × ${rs.length}`);
    for (const r of rs) expect(r.stdout.trim()).toBe('ok');
  });
});

describe.each(devices)('queue depth on %s', (device) => {
  // Every result is disposed at once, so only queued ops keep memory alive: the peak in use measures the queue.
  const steps = device === 'sim' ? 200 : 500;
  test('a bounded queue bounds the memory held by queued work (1 MiB per op)', async () => {
    const r = await run('queue-memory.js', [device, '16', String(steps)]);
    expect(r.code).toBe(0);
    const { depth, peakInUseMiB } = JSON.parse(r.stdout);
    expect(depth).toBe(16);
    expect(peakInUseMiB).toBeLessThan(48);  // 16 queued + 1 running + inputs, far below `steps` MiB
  });

  test('the measurement is real: a practically unbounded queue holds much more', async () => {
    const r = await run('queue-memory.js', [device, '1000000', String(steps)]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).peakInUseMiB).toBeGreaterThan(128);
  });
});

test('setQueueDepth refuses what is not a positive integer', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { setQueueDepth, queueDepth } = require('../../ts') as typeof import('../../ts');
  const before = queueDepth();
  for (const bad of [0, -1, 1.5, NaN, Infinity]) expect(() => setQueueDepth(bad)).toThrow(/setQueueDepth: depth must be an integer/);
  expect(() => setQueueDepth('8' as unknown as number)).toThrow(/setQueueDepth: expected a number/);
  expect(queueDepth()).toBe(before);
});
