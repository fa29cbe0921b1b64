// End-to-end RADIO inference: RadioModel.forward (backbone and every adaptor head) on random-weight checkpoints
// written to a temporary folder. ViT-B/16 shaped like RADIO v2.5-b: global attention at 224 px and ViTDet 16×16
// windows at 768 px (8 windowed blocks, 4 global: the v2.5 schedule), batch 8 (batch 1 on cpu). sim, an
// emulator, runs a D 64, depth 2 model instead, at 224 px and with 8×8 windows at 256 px.
// FLOPs are counted analytically: every matmul 2·rows·in·out (patch embedding; per block qkv, proj, fc1, fc2 over
// the tokens it sees; the adaptor heads' linears), attention 4·windows·L²·D (D = heads·head dim; global: L = all
// tokens, prefix included); LayerNorm, GELU, CPE and the residual adds are left out.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { rand, RadioModel, synchronize } from '../ts';
import type { MlpHeadConfig, RadioConfig, RadioOutput, Tensor } from '../ts';
import { randomRadioTensors, writeCheckpoint } from '../test/support/radio-checkpoint';
import { BenchRecord, benchDevices, benchDtypes, printTable, timeCase, writeResults } from './harness';

interface ModelSpec {
  name: string;
  embedDim: number;
  depth: number;
  heads: number;
  cpeMaxSize: number;
  /** Adaptor heads (summary and feature alike): [hidden, output] per teacher. */
  adaptors: Record<'clip' | 'dino_v2' | 'sam', [number, number]>;
}

interface Case {
  px: number;
  batch: number;
  /** ViTDet window size (blocks windowed by the checkpoint version's schedule); global attention when absent. */
  window?: number;
}

// The adaptor shapes are plausible, not the released checkpoint's: a CLIP-like 1024-dim head, DINOv2-B 768,
// SAM ViT-H 1280, all with hidden 1536 and one inner block (MLP v2).
const VIT_B: ModelSpec = {
  name: 'ViT-B/16',
  embedDim: 768,
  depth: 12,
  heads: 12,
  cpeMaxSize: 2048,
  adaptors: { clip: [1536, 1024], dino_v2: [1536, 768], sam: [1536, 1280] },
};
// The test fixture's widths at half its depth: the emulator runs about 0.5 GFLOP/s.
const SIM_MODEL: ModelSpec = { name: 'D64 depth 2', embedDim: 64, depth: 2, heads: 2, cpeMaxSize: 256, adaptors: { clip: [96, 32], dino_v2: [96, 48], sam: [96, 40] } };

/** A HF config.json: teachers, per-teacher cls tokens and registers as in test/fixtures/radio/vit-b16-v2heads. */
function radioConfigJson(m: ModelSpec): object {
  const mlp = ([hidden, out]: [number, number]) => ({ input_dim: m.embedDim, hidden_dim: hidden, output_dim: out, num_inner: 1 });
  const names = Object.keys(m.adaptors) as Array<keyof ModelSpec['adaptors']>;
  return {
    architectures: ['RADIOModel'],
    model_type: 'radio',
    args: {
      model: 'vit_base_patch16_224',
      model_kwargs: { embed_dim: m.embedDim, depth: m.depth, num_heads: m.heads },
      cpe_max_size: m.cpeMaxSize,
      teachers: [{ name: 'clip' }, { name: 'dino_v2' }, { name: 'sam', use_summary: false }],
      cls_token_per_teacher: true,
      register_multiple: 8,
      mlp_version: 'v2',
      model_norm: false,
    },
    version: 'radio_v2.5-b',
    patch_size: 16,
    max_resolution: m.cpeMaxSize,
    adaptor_names: names,
    adaptor_configs: Object.fromEntries(names.map((n, i) => [n, { summary: mlp(m.adaptors[n]), feature: mlp(m.adaptors[n]), head_idx: i }])),
    vitdet_window_size: null,
    feature_normalizer_config: null,
  };
}

function forwardFlops(c: RadioConfig, batch: number, px: number): number {
  const D = c.embedDim;
  const N = (px / c.patchSize) ** 2;
  const mm = (rows: number, inp: number, out: number) => 2 * batch * rows * inp * out;
  const head = (rows: number, h: MlpHeadConfig) => mm(rows, h.inputDim, h.hiddenDim) + h.numInner * mm(rows, h.hiddenDim, h.hiddenDim) + mm(rows, h.hiddenDim, h.outputDim);
  let flops = mm(N, 3 * c.patchSize ** 2, D);
  for (let i = 0; i < c.depth; i++) {
    // Windowed blocks see the patch tokens only, global ones the prefix too.
    const windowed = c.vitdet?.windowed[i] ?? false;
    const T = windowed ? N : N + c.numCls + c.numRegisters;
    flops += mm(T, D, 3 * D) + mm(T, D, D) + mm(T, D, c.mlpHidden) + mm(T, c.mlpHidden, D);
    const L = windowed ? c.vitdet!.windowSize ** 2 : T;
    flops += 4 * batch * (T / L) * L * L * D;
  }
  for (const a of c.adaptors) flops += head(1, a.summary) + head(N, a.feature);
  return flops;
}

function disposeOutput(out: RadioOutput): void {
  for (const h of Object.values(out)) {
    h.summary.dispose();
    h.features.dispose();
  }
}

const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

async function main(): Promise<void> {
  const devices = benchDevices();
  const dtypes = benchDtypes();
  const records: BenchRecord[] = [];
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-bench-'));
  const folders = new Map<ModelSpec, string>();
  const checkpoint = async (m: ModelSpec): Promise<string> => {
    let dir = folders.get(m);
    if (!dir) {
      const t0 = performance.now();
      console.log(`radio: building a random ${m.name} checkpoint...`);
      const config = radioConfigJson(m);
      dir = path.join(tmp, m.name.replace(/[^A-Za-z0-9]+/g, '-'));
      await writeCheckpoint(dir, config, randomRadioTensors(config));
      const mb = (await fs.promises.stat(path.join(dir, 'model.safetensors'))).size / 2 ** 20;
      console.log(`radio: ${m.name} checkpoint written (${mb.toFixed(0)} MiB) in ${seconds(t0)}`);
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
