// What a user of the npm package relies on: the addon's dependencies, and loading with require() and import.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');

function builtAddon(): string {
  const file = path.join(root, 'build', 'Release', 'am_radio.node');
  if (!fs.existsSync(file)) throw new Error(`no local build at ${file}; run npm install`);
  return file;
}

describe('package', () => {
  test('the addon needs nothing beyond libc and libstdc++: no CUDA library is linked', () => {
    const deps = execFileSync('ldd', [builtAddon()], { encoding: 'utf8' });
    expect(deps).not.toMatch(/libcuda|libcudart|libcublas|libnccl/);
    const needed = execFileSync('objdump', ['-p', builtAddon()], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('NEEDED'))
      .map((l) => l.trim().split(/\s+/)[1]);
    for (const lib of needed) expect(lib).toMatch(/^(libstdc\+\+|libm|libgcc_s|libc|libpthread|libdl|librt|ld-linux)[.-]/);
  });

  test('the addon exports only the Node-API entry points', () => {
    const symbols = execFileSync('nm', ['-D', '--defined-only', builtAddon()], { encoding: 'utf8' });
    const names = symbols.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop());
    expect(names.filter((n) => /cuda|amr/i.test(n!))).toEqual([]);
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
