// What a user of the npm package relies on: the addon's dependencies and glibc floor, and loading with require()
// and import.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { GLIBC_FLOOR } from '../ts/native';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { compareVersions, symbolVersions } = require('../scripts/glibc-floor.js') as {
  compareVersions(a: string, b: string): number;
  symbolVersions(file: string): { newest: Record<string, string>; symbols: Record<string, string[]> };
};

const root = path.join(__dirname, '..');

function builtAddon(): string {
  const file = path.join(root, 'build', 'Release', 'am_radio.node');
  if (!fs.existsSync(file)) throw new Error(`no local build at ${file}; npm test builds it (pretest), or run npm run build`);
  return file;
}

describe('package', () => {
  test('the addon needs nothing beyond glibc: no CUDA library, libstdc++ and libgcc linked in', () => {
    const deps = execFileSync('ldd', [builtAddon()], { encoding: 'utf8' });
    expect(deps).not.toMatch(/libcuda|libcudart|libcublas|libnccl/);
    const needed = execFileSync('objdump', ['-p', builtAddon()], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('NEEDED'))
      .map((l) => l.trim().split(/\s+/)[1]);
    for (const lib of needed) expect(lib).toMatch(/^(libm|libc|libpthread|libdl|librt|ld-linux)[.-]/);
  });

  test(`the addon loads on glibc ${GLIBC_FLOOR}, the floor the README documents: no newer GLIBC_ symbol, no GLIBCXX_ or GCC_ at all`, () => {
    const { newest, symbols } = symbolVersions(builtAddon());
    expect({ newest: newest.GLIBC, ok: compareVersions(newest.GLIBC, GLIBC_FLOOR) <= 0, symbols: symbols.GLIBC.slice(0, 5) })
      .toMatchObject({ ok: true });
    expect(Object.keys(newest).sort()).toEqual(['GLIBC']);
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const documented = [...readme.matchAll(/glibc (\d+\.\d+) or newer/g)].map((m) => m[1]);
    expect(documented.length).toBeGreaterThan(0);
    expect([...new Set(documented)]).toEqual([GLIBC_FLOOR]);
  });

  test('the addon exports only the Node-API entry points', () => {
    const symbols = execFileSync('nm', ['-D', '--defined-only', builtAddon()], { encoding: 'utf8' });
    const names = symbols.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop());
    expect(names.filter((n) => /cuda|amr/i.test(n!))).toEqual([]);
  });

  test('the addon that ships carries none of the emulator\'s self-tests (they are the test-only am_radio_selftest.node\'s)', () => {
    const exported = execFileSync(process.execPath, ['-e', `console.log(Object.keys(require(${JSON.stringify(builtAddon())})).join(' '))`], { encoding: 'utf8' });
    expect(exported.split(/\s+/).filter((n) => /selftest/i.test(n))).toEqual([]);
    // No symbol of the self-test kernels either (the strings name them: "selftest_block_sum", ...).
    expect(fs.readFileSync(builtAddon()).includes('selftest_')).toBe(false);
  });

  test('loads with require() and with import, from the built dist/', () => {
    const dist = path.join(root, 'dist');
    const cjs = execFileSync(process.execPath, ['-e', `const m=require(${JSON.stringify(dist)});m.tensor([1,2],[2]).sum().item().then(v=>console.log(v))`], { encoding: 'utf8' });
    expect(cjs.trim()).toBe('3');
    const esm = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', `import {tensor} from ${JSON.stringify(path.join(dist, 'index.mjs'))};console.log(await tensor([4,5],[2]).sum().item())`],
      { encoding: 'utf8' },
    );
    expect(esm.trim()).toBe('9');
  });
});
