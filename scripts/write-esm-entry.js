#!/usr/bin/env node
// Writes dist/index.mjs so that `import { tensor } from 'am-radio'` works beside require().
// Listing the exports must not open the native addon: `npm pack` runs this from a clean clone, where none is built.
// The loader is pointed at a file that does not exist, so a module that opened the addon at import time fails
// here, on every machine, instead of only on the machines without a build.
'use strict';
const fs = require('fs');
const path = require('path');

const dist = path.join(__dirname, '..', 'dist');
process.env.AM_RADIO_NATIVE = path.join(dist, 'no-addon-while-listing-exports.node');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const body = [
  "import cjs from './index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  'export default cjs;',
  '',
].join('\n');
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
