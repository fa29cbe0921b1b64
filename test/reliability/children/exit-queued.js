// Queues work on one backend, then ends the script in the way argv says, without waiting for it.
// usage: node exit-queued.js <device> <end|throw|exit|exit-code|exit-long>
//   exit-long queues about a minute of work before process.exit, so exiting must cancel it, not wait for it.
'use strict';
const { ops, randn } = require('./entry');
const [device, how] = process.argv.slice(2);
const long = how === 'exit-long';
const n = long ? (device === 'sim' ? 512 : 2048) : device === 'sim' ? 64 : 256;
let a = randn([n, n], { device, seed: 1 });
const w = randn([n, n], { device, seed: 2 });
for (let i = 0; i < (long ? 200 : 300); i++) a = ops.linear(a, w).mul(a);
if (how === 'throw') throw new Error('deliberate uncaught error with work queued');
if (how === 'exit') process.exit(0);
if (how === 'exit-long') setTimeout(() => process.exit(0), 500);  // by then a long op is running
if (how === 'exit-code') process.exit(7);
