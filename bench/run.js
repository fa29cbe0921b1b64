#!/usr/bin/env node
// `npm run bench -- <family> [...]`: compiles the benchmarks and runs the named ones (all when none is named).
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.bench.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status || 1);
// Shared code, not benchmarks.
const helpers = ['harness.ts', 'radio-models.ts'];
const available = fs.readdirSync(__dirname).filter((f) => f.endsWith('.ts') && !helpers.includes(f)).map((f) => f.replace(/\.ts$/, ''));
const wanted = process.argv.slice(2);
// AM_RADIO_BENCH_SKIP=train leaves benchmarks out of a run of all of them (the GPU check runs train on its own,
// with its own settings).
const skipped = (process.env.AM_RADIO_BENCH_SKIP || '').split(',').map((s) => s.trim()).filter(Boolean);
for (const name of wanted) if (!available.includes(name)) {
  console.error(`unknown benchmark ${name}; available: ${available.join(', ')}`);
  process.exit(2);
}
for (const name of wanted.length ? wanted : available.filter((n) => !skipped.includes(n))) {
  const r = spawnSync(process.execPath, [path.join(root, 'dist-bench', 'bench', `${name}.js`)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status || 1);
}
