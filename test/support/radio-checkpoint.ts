// RADIO checkpoint folders (config.json + model.safetensors, Hugging Face layout) made on the fly, for the tests
// and the end-to-end benchmark. No jest globals here: bench/ compiles this file too.
import * as fs from 'fs';
import * as path from 'path';

import { writeSafetensors } from '../../ts';
import type { SafetensorsWriteEntry } from '../../ts';
import { parseRadioConfig } from '../../ts/model/config';
import type { MlpHeadConfig } from '../../ts/model/config';

/** Writes `dir`/config.json and `dir`/model.safetensors (creating `dir`). */
export async function writeCheckpoint(dir: string, config: object, tensors: Record<string, SafetensorsWriteEntry>): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}

/**
 * Every tensor RadioModel.load reads for `config` (a config.json object), with random values of a trained
 * network's scale: linear weights uniform in ±1/√fan_in (torch's default init), small biases, position
 * embedding and prefix tokens; LayerNorm weights near 1; ImageNet input conditioning. Enough for timing and for
 * finite outputs, not for any numerical check. Feature-normalizer and LayerScale checkpoints are not made.
 */
export function randomRadioTensors(config: object, seed = 1): Record<string, SafetensorsWriteEntry> {
  const c = parseRadioConfig(config, 'randomRadioTensors');
  if (c.featureNormalizer) throw new Error('randomRadioTensors: feature-normalizer checkpoints are not supported');
  const { embedDim: D, patchSize: P, mlpHidden: M } = c;
  // xorshift32: fast enough for the ~100M values of a ViT-B checkpoint.
  let state = seed >>> 0 || 1;
  const out: Record<string, SafetensorsWriteEntry> = {};
  const add = (key: string, shape: number[], scale: number, offset = 0) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      data[i] = offset + scale * ((state >>> 0) / 2147483648 - 1);
    }
    out[`radio_model.${key}`] = { dtype: 'F32', shape, data };
  };
  const linear = (key: string, outDim: number, inDim: number) => {
    add(`${key}.weight`, [outDim, inDim], 1 / Math.sqrt(inDim));
    add(`${key}.bias`, [outDim], 0.02);
  };
  const norm = (key: string, dim: number) => {
    add(`${key}.weight`, [dim], 0.1, 1);
    add(`${key}.bias`, [dim], 0.02);
  };
  const head = (key: string, h: MlpHeadConfig) => {
    if (h.version === 'attn') throw new Error('randomRadioTensors: attention feature heads are not made');
    linear(`${key}.fc1`, h.hiddenDim, h.inputDim);
    if (h.version === 'v1') {
      norm(`${key}.norm`, h.hiddenDim);
      for (let k = 0; k < h.numInner; k++) {
        linear(`${key}.inner.${3 * k}`, h.hiddenDim, h.hiddenDim);
        norm(`${key}.inner.${3 * k + 1}`, h.hiddenDim);
      }
      linear(`${key}.fc2`, h.outputDim, h.hiddenDim);
      return;
    }
    for (let k = 0; k < h.numInner; k++) {
      norm(`${key}.blocks.${k}.0`, h.hiddenDim);
      linear(`${key}.blocks.${k}.2`, h.hiddenDim, h.hiddenDim);
    }
    norm(`${key}.final.0`, h.hiddenDim);
    linear(`${key}.final.2`, h.outputDim, h.hiddenDim);
  };

  out['radio_model.input_conditioner.norm_mean'] = { dtype: 'F32', shape: [3, 1, 1], data: [0.485, 0.456, 0.406] };
  out['radio_model.input_conditioner.norm_std'] = { dtype: 'F32', shape: [3, 1, 1], data: [0.229, 0.224, 0.225] };
  add('model.patch_generator.embedder.weight', [D, 3 * P * P], 1 / Math.sqrt(3 * P * P));
  add('model.patch_generator.pos_embed', [1, c.cpeGrid * c.cpeGrid, D], 0.02);
  add('model.patch_generator.cls_token.token', [c.numCls + c.numRegisters, D], 0.02);
  for (let i = 0; i < c.depth; i++) {
    const k = `model.blocks.${i}`;
    norm(`${k}.norm1`, D);
    linear(`${k}.attn.qkv`, 3 * D, D);
    linear(`${k}.attn.proj`, D, D);
    norm(`${k}.norm2`, D);
    linear(`${k}.mlp.fc1`, M, D);
    linear(`${k}.mlp.fc2`, D, M);
  }
  if (c.modelNorm) norm('model.norm', D);
  for (const a of c.adaptors) {
    head(`adaptors.${a.name}.head_mlp`, a.summary);
    head(`adaptors.${a.name}.feat_mlp`, a.feature);
  }
  return out;
}
