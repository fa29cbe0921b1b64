// Running test children under `mpirun -np N` (a failure must show as an exit status, not take jest down), and
// reading the one JSON line each rank prints.
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';

export const children = path.join(__dirname, 'children');
export const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
export const withMpi = mpirun ? describe : describe.skip;
export const title = (t: string) => (mpirun ? t : `${t} (skipped: no mpirun)`);

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** `mpirun -np 2 node <script> args...` (the script under test/train/children). */
export const mpi = (script: string, args: string[]) => mpirunNode([path.join(children, script), ...args]);

/** `mpirun -np 2 node nodeArgs...` (env added to jest's); a hang shows as SIGKILL after timeoutMs. */
export function mpirunNode(nodeArgs: string[], timeoutMs = 90_000, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '2', process.execPath, ...nodeArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },  // jest's view of the environment, not the process's C environment
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** The JSON lines the ranks printed, by rank. */
export function byRank<T extends { rank: number }>(r: Run): T[] {
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T);
  return lines.sort((a, b) => a.rank - b.rank);
}
