import { execFileSync, execSync } from 'child_process';
import * as path from 'path';

import { backends, requireBackend, zeros } from '../ts';

function nvccOnPath(): boolean {
  try {
    execSync('command -v nvcc', { stdio: 'ignore', shell: '/bin/sh' });
    return true;
  } catch {
    return false;
  }
}

describe('backends', () => {
  test('lists cpu, cuda and sim with the reason each unavailable one cannot be used', () => {
    const list = backends();
    expect(list.map((b) => b.name)).toEqual(['cpu', 'cuda', 'sim']);
    const cpu = list.find((b) => b.name === 'cpu')!;
    expect(cpu.compiled && cpu.available).toBe(true);
    for (const b of list) if (!b.available) expect(b.reason).toMatch(/\w+/);
  });

  // Outside CI a build may legitimately lack nvcc; in CI nvcc is there and the cuda code must be built.
  const inCiWithNvcc = process.env.CI === 'true' && nvccOnPath();
  (inCiWithNvcc ? test : test.skip)('the cuda backend is compiled wherever nvcc was available to the build (CI)', () => {
    expect(backends().find((b) => b.name === 'cuda')!.compiled).toBe(true);
  });

  test('the sim backend is built and available in the test build', () => {
    const sim = backends().find((b) => b.name === 'sim')!;
    expect(sim.compiled).toBe(true);
    expect(sim.available).toBe(true);
  });

  test('asking for an unavailable backend says why', () => {
    const cuda = backends().find((b) => b.name === 'cuda')!;
    if (cuda.available) {
      expect(requireBackend('cuda').name).toBe('cuda');
      return;
    }
    expect(() => zeros([2], { device: 'cuda' })).toThrow(/cuda is not available: .+/);
    expect(() => requireBackend('cuda')).toThrow(/cuda is not available: .+/);
  });

  test('memory() reports bytes in use and cached, and freed blocks are reused', () => {
    const script = path.join(__dirname, 'reliability/children/memory-accounting.js');
    const { before, during, after, reused } = JSON.parse(execFileSync(process.execPath, [script], { encoding: 'utf8' }));
    expect(during.inUse - before.inUse).toBeGreaterThanOrEqual(400000);
    expect(after.inUse).toBeLessThan(during.inUse);
    expect(after.cached).toBeGreaterThanOrEqual(400000);
    expect(reused.inUse - after.inUse).toBeGreaterThanOrEqual(400000);
    expect(reused.cached).toBeLessThan(after.cached);
  });
});
