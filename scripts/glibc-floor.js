#!/usr/bin/env node
// The newest symbol versions a built .node asks of the system libraries (objdump -T, and the version references of
// objdump -p): its GLIBC_ version is the oldest glibc it loads on. Used by scripts/pack-platform.js (the platform package's README) and by the test that
// holds the binary to the floor the README documents. `node scripts/glibc-floor.js file.node` prints them.
'use strict';
const { execFileSync } = require('child_process');

const cmp = (a, b) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0);
  return 0;
};

/**
 * { newest: { GLIBC: '2.34', GLIBCXX?: ..., CXXABI?: ..., GCC?: ... }, symbols: { GLIBC: [names needing the newest] } }
 * from the undefined (imported) dynamic symbols; throws when objdump fails or the file imports no glibc symbol.
 */
function symbolVersions(file) {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const newest = {};
  const symbols = {};
  for (const line of out.split('\n')) {
    if (!line.includes('*UND*')) continue;
    const m = /\(?\b(GLIBCXX|CXXABI|GLIBC|GCC)_([0-9][0-9.]*)\)?\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const [, lib, version, name] = m;
    const c = newest[lib] === undefined ? 1 : cmp(version, newest[lib]);
    if (c > 0) {
      newest[lib] = version;
      symbols[lib] = [name];
    } else if (c === 0) symbols[lib].push(name);
  }
  // What the dynamic loader checks before any symbol: every version the file's Version References name must exist.
  // Normally each belongs to an imported symbol above; one that does not still sets the floor.
  const refs = execFileSync('objdump', ['-p', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const m of refs.matchAll(/^\s+0x[0-9a-f]+ 0x[0-9a-f]+ \d+ (GLIBCXX|CXXABI|GLIBC|GCC)_([0-9][0-9.]*)$/gm)) {
    const [, lib, version] = m;
    if (newest[lib] === undefined || cmp(version, newest[lib]) > 0) {
      newest[lib] = version;
      symbols[lib] = ['(a version reference with no imported symbol)'];
    }
  }
  if (!newest.GLIBC) throw new Error(`${file}: objdump -T shows no GLIBC_ symbol version; is it an ELF shared object built against glibc?`);
  return { newest, symbols };
}

module.exports = { symbolVersions, compareVersions: cmp };

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node scripts/glibc-floor.js path/to/file.node');
    process.exit(2);
  }
  const { newest, symbols } = symbolVersions(file);
  for (const lib of Object.keys(newest)) console.log(`${lib}_${newest[lib]}: ${symbols[lib].slice(0, 8).join(' ')}${symbols[lib].length > 8 ? ' ...' : ''}`);
}
