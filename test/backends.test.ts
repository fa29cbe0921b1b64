import { execSync } from 'child_process';

import { backends, memory, requireBackend, tensor, zeros } from '../ts';

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

  test('memory() reports bytes in use and cached, and freed blocks are reused', async () => {
    const before = memory().cpu!;
    const t = tensor(new Float32Array(100000), [100000]);
    await t.toArray();
    const during = memory().cpu!;
    expect(during.inUse - before.inUse).toBeGreaterThanOrEqual(400000);
    t.dispose();
    // Release happens when queued work drops its reference; wait for the queue.
    await zeros([1]).toArray();
    const after = memory().cpu!;
    expect(after.inUse).toBeLessThan(during.inUse);
    expect(after.cached).toBeGreaterThanOrEqual(400000);
    const again = tensor(new Float32Array(100000), [100000]);
    expect(memory().cpu!.inUse - after.inUse).toBeGreaterThanOrEqual(400000);
    expect(memory().cpu!.cached).toBeLessThan(after.cached);
    again.dispose();
  });
});
