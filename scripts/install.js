#!/usr/bin/env node
// npm install hook: use a prebuilt binary when one loads, otherwise build the addon with cmake-js.
// `npm install --build-from-source` (or npm_config_build_from_source=true) always builds.
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');
const fromSource = process.env.npm_config_build_from_source === 'true';

if (!fromSource) {
  try {
    require('node-gyp-build')(root);
    process.exit(0);
  } catch (_) {
    // no prebuilt or earlier build loads here: build one
  }
}
console.log('am-radio: building the native addon (cmake-js)...');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('am-radio: building the native addon failed (see the compiler output above)');
  process.exit(result.status || 1);
}
