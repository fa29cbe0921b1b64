// Elementwise and reduction throughput: bytes moved over time, per backend.
import { randn } from '../ts';
import { BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

async function main(): Promise<void> {
  const devices = benchDevices();
  const records: BenchRecord[] = [];
  for (const device of devices) {
    const n = device === 'sim' ? 1 << 18 : 1 << 24;
    const a = randn([n], { seed: 1, device });
    const b = randn([n], { seed: 2, device });
    records.push(await timeCase({ op: 'add', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 12 * n, torch: { fn: 'add', args: { n, dtype: 'f32' } } }, device, () => { a.add(b).dispose(); }));
    records.push(await timeCase({ op: 'sum', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 4 * n, torch: { fn: 'sum', args: { n, dtype: 'f32' } } }, device, () => { a.sum().dispose(); }));
    records.push(await timeCase({ op: 'randn', shape: `[${n}]`, dtype: 'f32', backend: device, bytes: 4 * n, torch: { fn: 'randn', args: { n, dtype: 'f32' } } }, device, () => { randn([n], { seed: 3, device }).dispose(); }));
  }
  printTable('elementwise', records);
  console.log(`results: ${writeResults('elementwise', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
