// The random-weight RADIO checkpoints the end-to-end benches (radio, train) run: their shapes, their config.json,
// writing them to a folder, and the analytic FLOP count of a forward. Not a bench itself (bench/run.js skips it).
import * as fs from 'fs';
import * as path from 'path';

import type { MlpHeadConfig, RadioConfig, RadioOutput } from '../ts';
import { parseRadioConfig } from '../ts/model/config';
import { randomCheckpointTensors } from '../ts/model/layout';
import { studentConfigJson, writeSafetensors } from '../ts';

export interface ModelSpec {
  name: string;
  embedDim: number;
  depth: number;
  heads: number;
  cpeMaxSize: number;
  /** Adaptor heads (summary and feature alike): [hidden, output] per teacher. */
  adaptors: Record<'clip' | 'dino_v2' | 'sam', [number, number]>;
}

export const TEACHERS = ['clip', 'dino_v2', 'sam'] as const;

// The adaptor shapes are plausible, not the released checkpoint's: a CLIP-like 1024-dim head, DINOv2-B 768,
// SAM ViT-H 1280, all with hidden 1536 and one inner block (MLP v2).
export const VIT_B: ModelSpec = {
  name: 'ViT-B/16',
  embedDim: 768,
  depth: 12,
  heads: 12,
  cpeMaxSize: 2048,
  adaptors: { clip: [1536, 1024], dino_v2: [1536, 768], sam: [1536, 1280] },
};
// The test fixture's widths at half its depth: the emulator runs about 0.5 GFLOP/s.
export const SIM_MODEL: ModelSpec = { name: 'D64 depth 2', embedDim: 64, depth: 2, heads: 2, cpeMaxSize: 256, adaptors: { clip: [96, 32], dino_v2: [96, 48], sam: [96, 40] } };

/**
 * A HF config.json with every training arg a RADIO checkpoint carries (studentConfigJson's, so the reference's HF
 * class builds it too): teachers, per-teacher cls tokens and registers as in test/fixtures/radio/vit-b16-v2heads
 * (SAM has no summary: its summary head is loaded frozen and gets no loss).
 */
export function radioConfigJson(m: ModelSpec): object {
  return studentConfigJson({
    embedDim: m.embedDim,
    depth: m.depth,
    heads: m.heads,
    cpeMaxSize: m.cpeMaxSize,
    adaptors: TEACHERS.map((name) => {
      const [hiddenDim, out] = m.adaptors[name];
      return { name, summaryDim: out, featureDim: out, hiddenDim, numInner: 1, useSummary: name !== 'sam' };
    }),
  });
}

export const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** Writes a random-weight checkpoint of `m` to `dir` (config.json + model.safetensors), logging as `who`. */
export async function writeRandomCheckpoint(dir: string, m: ModelSpec, who: string): Promise<void> {
  const t0 = performance.now();
  console.log(`${who}: building a random ${m.name} checkpoint...`);
  const config = radioConfigJson(m);
  await fs.promises.mkdir(dir, { recursive: true });
  await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(path.join(dir, 'model.safetensors'), randomCheckpointTensors(parseRadioConfig(config, dir)));
  const mb = (await fs.promises.stat(path.join(dir, 'model.safetensors'))).size / 2 ** 20;
  console.log(`${who}: ${m.name} checkpoint written (${mb.toFixed(0)} MiB) in ${seconds(t0)}`);
}

/**
 * FLOPs of one forward, counted analytically: every matmul 2·rows·in·out (patch embedding; per block qkv, proj,
 * fc1, fc2 over the tokens it sees; the adaptor heads' linears), attention 4·windows·L²·D (D = heads·head dim;
 * global: L = all tokens, prefix included); LayerNorm, GELU, CPE and the residual adds are left out.
 */
export function forwardFlops(c: RadioConfig, batch: number, px: number): number {
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

export function disposeOutput(out: RadioOutput): void {
  for (const h of Object.values(out)) {
    h.summary.dispose();
    h.features.dispose();
  }
}
