#!/usr/bin/env node
// am-radio command line. `am-radio demo` shows the backends and runs a short tensor + autograd check on each.
import { backends, memory, randn, synchronize, Tensor } from './index';
import type { Device } from './native';

async function relativeError(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = await Promise.all([a.toArray(), b.toArray()]);
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i] - y[i]) ** 2;
    den += y[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

async function demo(): Promise<void> {
  console.log('am-radio backends:');
  for (const b of backends())
    console.log(`  ${b.name.padEnd(5)} compiled=${b.compiled} available=${b.available}${b.device ? `  ${b.device}` : ''}${b.reason ? `  (${b.reason})` : ''}`);
  const devices = backends().filter((b) => b.available).map((b) => b.name as Device);
  const n = 1 << 20;
  const reference: Record<string, Tensor> = {};
  for (const device of devices) {
    const start = process.hrtime.bigint();
    const x = randn([n], { seed: 7, device, requiresGrad: true });
    const y = randn([n], { seed: 8, device });
    const loss = x.mul(y).add(x).mean();
    loss.backward();
    const value = await loss.item();
    await synchronize(device);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    console.log(`  ${device}: mean(x*y + x) over ${n} elements = ${value.toFixed(6)}, d/dx computed, ${ms.toFixed(1)} ms`);
    reference[device] = x.grad!;
  }
  for (const device of devices.filter((d) => d !== 'cpu')) {
    const err = await relativeError(reference[device].to('cpu'), reference.cpu);
    console.log(`  ${device} vs cpu gradient: relative error ${err.toExponential(2)}`);
  }
  console.log('memory:', JSON.stringify(memory()));
}

async function main(argv: string[]): Promise<void> {
  const [command = 'demo'] = argv;
  if (command === 'demo') return demo();
  console.error(`unknown command ${JSON.stringify(command)}; usage: am-radio demo`);
  process.exitCode = 2;
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
