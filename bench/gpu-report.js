#!/usr/bin/env node
// Joins our cuda bench records with PyTorch's timings and the measured ceilings into one table.
// usage: node bench/gpu-report.js RESULTS_DIR   (reads *.json and torch.json there, writes report.json)
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
const torch = JSON.parse(fs.readFileSync(path.join(dir, 'torch.json'), 'utf8'));
const key = (r) => `${r.op}|${r.shape}|${r.dtype}`;
const torchByKey = new Map(torch.cases.map((c) => [key(c), c]));
const benchRecords = fs.readdirSync(dir)
  .filter((f) => f.endsWith('.json') && !['torch.json', 'jest.json', 'report.json'].includes(f))
  .flatMap((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).records || []);
// Benches that call PyTorch themselves (interpolate, train) record it as backend torch-cuda: eager timings for the
// join, or torch.compile ones where the record says torchMode 'compile' (train). torch.json's own cases come first.
for (const r of benchRecords) {
  if (r.backend !== 'torch-cuda' || !(r.repeats > 0)) continue;
  const t = torchByKey.get(key(r)) || {};
  if (r.torchMode === 'compile') t.compiled_ms = t.compiled_ms ?? r.medianMs;
  else t.eager_ms = t.eager_ms ?? r.medianMs;
  torchByKey.set(key(r), t);
}
const rows = [];
{
  for (const r of benchRecords) {
    if (r.backend !== 'cuda') continue;
    const floorS = Math.max(r.bytes ? r.bytes / torch.ceilings.copy_bandwidth : 0, r.flops && r.dtype === 'bf16' ? r.flops / torch.ceilings.bf16_gemm_flops : 0);
    const t = torchByKey.get(key(r));
    rows.push({
      op: r.op, shape: r.shape, dtype: r.dtype, ms: r.medianMs,
      floorPct: floorS ? (100 * floorS) / (r.medianMs * 1e-3) : null,
      vsEager: t && t.eager_ms ? t.eager_ms / r.medianMs : null,
      vsCompiled: t && t.compiled_ms ? t.compiled_ms / r.medianMs : null,
    });
  }
}
const fmt = (v, d = 2) => (v === null || v === undefined ? '' : v.toFixed(d));
console.log(`GPU: ${torch.device}, torch ${torch.torch}; copy ${(torch.ceilings.copy_bandwidth / 1e9).toFixed(0)} GB/s, bf16 GEMM ${(torch.ceilings.bf16_gemm_flops / 1e12).toFixed(0)} TFLOP/s`);
console.log(['op', 'shape', 'dtype', 'ms', '% of floor', 'x eager', 'x compile'].join('\t'));
for (const r of rows) console.log([r.op, r.shape, r.dtype, fmt(r.ms, 3), fmt(r.floorPct, 1), fmt(r.vsEager), fmt(r.vsCompiled)].join('\t'));
fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify({ torch, rows }, null, 2));
