// Running test children torchrun-style: one process per rank with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
// MASTER_PORT (a free port on 127.0.0.1), each killed after a limit so that a hang shows as a failed rank, and the
// one JSON line each prints.
import { spawn } from 'child_process';
import * as net from 'net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RankRun {
  code: number | null;
  /** The first JSON line it printed ({ rank: -1 } when none). */
  out: Record<string, unknown> & { rank: number };
  stderr: string;
  seconds: number;
}

/**
 * `node script ...args` once per entry of ranks (its RANK), all at once, with WORLD_SIZE worldSize (or one per
 * entry) and env(i) added; resolves when every child has ended.
 */
export async function torchrun(script: string, args: string[], ranks: number[], worldSize: number | number[], env: (i: number) => NodeJS.ProcessEnv = () => ({}), killAfterMs = 60_000): Promise<RankRun[]> {
  const port = await freePort();
  const t0 = Date.now();
  return Promise.all(
    ranks.map(
      (rank, i) =>
        new Promise<RankRun>((resolve) => {
          const child = spawn(process.execPath, [script, ...args], {
            env: {
              ...process.env,
              RANK: String(rank),
              WORLD_SIZE: String(Array.isArray(worldSize) ? worldSize[i] : worldSize),
              LOCAL_RANK: String(rank),
              MASTER_ADDR: '127.0.0.1',
              MASTER_PORT: String(port),
              ...env(i),
            },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
          child.on('close', (code) => {
            clearTimeout(timer);
            const line = stdout.split('\n').find((l) => l.startsWith('{'));
            resolve({ code, out: line ? JSON.parse(line) : { rank: -1 }, stderr, seconds: (Date.now() - t0) / 1000 });
          });
        }),
    ),
  );
}
