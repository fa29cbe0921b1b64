// End-to-end RADIO inference: RadioModel.forward (backbone and every adaptor head) on random-weight checkpoints
// written to a temporary folder. ViT-B/16 shaped like RADIO v2.5-b: global attention at 224 px and ViTDet 16×16
// windows at 768 px (8 windowed blocks, 4 global: the v2.5 schedule), batch 8 (batch 1 on cpu). sim, an
// emulator, runs a D 64, depth 2 model instead, at 224 px and with 8×8 windows at 256 px.
// FLOPs are counted analytically (bench/radio-models.ts, forwardFlops).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { formatProfile, profile, rand, RadioModel, synchronize } from '../ts';
import type { Tensor } from '../ts';
import { BenchRecord, benchDevices, benchDtypes, printTable, timeCase, writeResults } from './harness';
import { disposeOutput, forwardFlops, ModelSpec, seconds, SIM_MODEL, VIT_B, writeRandomCheckpoint } from './radio-models';

interface Case {
  px: number;
  batch: number;
  /** ViTDet window size (blocks windowed by the checkpoint version's schedule); global attention when absent. */
  window?: number;
}

async function main(): Promise<void> {
  const devices = benchDevices();
  const dtypes = benchDtypes();
  const records: BenchRecord[] = [];
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-bench-'));
  const folders = new Map<ModelSpec, string>();
  const checkpoint = async (m: ModelSpec): Promise<string> => {
    let dir = folders.get(m);
    if (!dir) {
      dir = path.join(tmp, m.name.replace(/[^A-Za-z0-9]+/g, '-'));
      await writeRandomCheckpoint(dir, m, 'radio');
      folders.set(m, dir);
    }
    return dir;
  };
  try {
    for (const device of devices) {
      const model = device === 'sim' ? SIM_MODEL : VIT_B;
      // cpu (2 cores here): batch 1; sim: the small model, with windows small enough to fit its 256 px.
      const cases: Case[] =
        device === 'sim'
          ? [{ px: 224, batch: 1 }, { px: 256, batch: 1, window: 8 }]
          : [{ px: 224, batch: device === 'cpu' ? 1 : 8 }, { px: 768, batch: device === 'cpu' ? 1 : 8, window: 16 }];
      const dir = await checkpoint(model);
      for (const dtype of dtypes)
        for (const c of cases) {
          const label = `${model.name} ${c.px}px ${c.window ? `vitdet ${c.window}` : 'global'}`;
          let t0 = performance.now();
          const radio = await RadioModel.load(dir, { device, dtype, vitdet: c.window ? { windowSize: c.window } : undefined });
          console.log(`radio: ${label} ${dtype} loaded on ${device} in ${seconds(t0)}; warm-up...`);
          const images: Tensor = rand([c.batch, 3, c.px, c.px], { seed: 7, device });
          const flops = forwardFlops(radio.config, c.batch, c.px);
          t0 = performance.now();
          disposeOutput(radio.forward(images));
          await synchronize(device);
          const warmMs = performance.now() - t0;
          console.log(`radio: ${label} ${dtype} warm-up forward ${seconds(t0)} (${(flops / 1e9).toPrecision(3)} GFLOP); timing...`);
          if (process.env.AM_RADIO_PROFILE === '1') {
            const { profile: p } = await profile(() => disposeOutput(radio.forward(images)), { device });
            console.log(`radio: ${label} ${dtype}, one forward\n${formatProfile(p)}`);
          }
          // cpu and sim: no further warm-up, and 2 repeats once one takes over 5 s (768 px on cpu: ~15 s each).
          const timing = device === 'cuda' ? { warmup: 2, minRepeats: 10, minTimeMs: 1000 } : { warmup: 0, minRepeats: warmMs > 5000 ? 2 : 3, minTimeMs: 0 };
          const rec = await timeCase(
            { op: `radio forward ${label}`, shape: `B${c.batch} 3x${c.px}x${c.px}`, dtype, backend: device, flops },
            device,
            () => disposeOutput(radio.forward(images)),
            timing,
          );
          const windowed = radio.config.vitdet?.windowed.filter((w) => w).length;
          const notes = [`${(c.batch / (rec.medianMs / 1000)).toFixed(2)} img/s`];
          if (windowed !== undefined) notes.push(`${windowed} of ${radio.config.depth} blocks windowed`);
          if (device === 'sim') notes.push('sim is an emulator: small model, not ViT-B');
          records.push({ ...rec, note: notes.join('; ') });
          images.dispose();
          radio.dispose();
        }
    }
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
  printTable('radio', records);
  console.log(`results: ${writeResults('radio', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
