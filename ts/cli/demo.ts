// `am-radio demo`: every available backend checked, first on a small autograd graph (each backend against cpu),
// then with the embedded checkpoint against the reference implementation's outputs. Any check over its tolerance
// makes the command fail, so `npm run demo` in CI catches a broken build.
import * as path from 'path';

import { backends, memory, randn, synchronize, tensor } from '../index';
import type { Tensor } from '../index';
import { embeddedCheckpoint } from '../embedded';
import { SafetensorsFile } from '../io/safetensors';
import { RadioModel } from '../model/radio';
import type { Device } from '../native';
import { relativeError } from './parity';

// The design's tolerances in f32: 1e-5 for one op (the gradient below is one elementwise chain), 1e-4 for a model.
const OP_TOLERANCE = 1e-5;
const MODEL_TOLERANCE = 1e-4;

async function radioParity(device: Device, failures: string[]): Promise<void> {
  const dir = embeddedCheckpoint();
  const t0 = process.hrtime.bigint();
  const model = await RadioModel.load(dir, { device });
  const io = await SafetensorsFile.open(path.join(dir, 'io.safetensors'));
  try {
    const c = model.config;
    const im = await io.readFloat('images');
    const images = tensor(im.data, im.shape, { device });
    const out = model.forward(images);
    await synchronize(device);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  ${c.timmModel} D=${c.embedDim} depth=${c.depth}, images [${im.shape.join(', ')}], load + forward ${ms.toFixed(0)} ms`);
    for (const [name, head] of Object.entries(out)) {
      const parts: string[] = [];
      for (const part of ['summary', 'features'] as const) {
        const key = `${name}.${part}`;
        if (!io.has(key)) continue;
        const expected = tensor((await io.readFloat(key)).data, head[part].shape);
        const err = await relativeError(head[part].to('cpu'), expected);
        const ok = err <= MODEL_TOLERANCE;
        if (!ok) failures.push(`${device} ${key}: relative error ${err.toExponential(2)} > ${MODEL_TOLERANCE}`);
        parts.push(`${part} [${head[part].shape.join(', ')}] rel. error ${err.toExponential(2)} ${ok ? 'ok' : 'FAILED'}`);
      }
      console.log(`    ${name.padEnd(10)} ${parts.join(', ')}`);
    }
  } finally {
    await io.close();
    model.dispose();
  }
}

export async function demo(): Promise<void> {
  console.log('am-radio backends:');
  for (const b of backends())
    console.log(`  ${b.name.padEnd(5)} compiled=${b.compiled} available=${b.available}${b.device ? `  ${b.device}` : ''}${b.reason ? `  (${b.reason})` : ''}`);
  const devices = backends().filter((b) => b.available).map((b) => b.name as Device);
  const failures: string[] = [];
  const n = 1 << 20;
  const grads: Partial<Record<Device, Tensor>> = {};
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
    grads[device] = x.grad!;
  }
  for (const device of devices.filter((d) => d !== 'cpu')) {
    const err = await relativeError(grads[device]!.to('cpu'), grads.cpu!);
    const ok = err <= OP_TOLERANCE;
    if (!ok) failures.push(`${device} vs cpu gradient: relative error ${err.toExponential(2)} > ${OP_TOLERANCE}`);
    console.log(`  ${device} vs cpu gradient: relative error ${err.toExponential(2)} ${ok ? 'ok' : 'FAILED'}`);
  }
  console.log('memory:', JSON.stringify(memory()));
  for (const device of devices) {
    console.log(`\nRADIO inference on ${device} (the embedded checkpoint, against the reference implementation's outputs):`);
    await radioParity(device, failures);
  }
  if (failures.length) throw new Error(`demo: ${failures.length} check(s) failed:\n  ${failures.join('\n  ')}`);
  console.log('\ndemo: every check passed');
}
