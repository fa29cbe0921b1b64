// The tensors of a RADIO ViT checkpoint in the Hugging Face layout, listed once from its config: every key, its
// shape and what it is (a linear's weight or bias with its fan-in, a norm's, the patch embedding, the position
// table, the prefix tokens). Whoever makes weights without a checkpoint walks this list: the trainer's random-init
// student (timm's and torch's initialisation) and the random checkpoints of the benchmarks and tests.
import type { SafetensorsWriteEntry } from '../io/safetensors';
import type { MlpHeadConfig, RadioConfig } from './config';

export type TensorRole = 'linear.weight' | 'linear.bias' | 'norm.weight' | 'norm.bias' | 'patch_embed' | 'pos_embed' | 'prefix_tokens';

export interface LayoutEntry {
  /** The key without the `radio_model.` prefix. */
  key: string;
  shape: number[];
  role: TensorRole;
  /** 'backbone' (the ViT) or 'head' (an adaptor MLP): they are initialised differently. */
  part: 'backbone' | 'head';
  /** Inputs per output of the linear (or of the patch embedding); 0 for the rest. */
  fanIn: number;
}

/**
 * Every learnt tensor of `config`'s model, in a fixed order (patch generator, blocks, final norm, then per adaptor
 * its summary and feature heads). Buffers with fixed values (input conditioner, summary_idxs) are not listed.
 * Feature normalizers and attention feature heads are refused: nothing makes random weights for them.
 */
export function radioTensorLayout(config: RadioConfig, op = 'radioTensorLayout'): LayoutEntry[] {
  if (config.featureNormalizer) throw new Error(`${op}: feature-normalizer checkpoints are not made`);
  const { embedDim: D, patchSize: P, mlpHidden: M } = config;
  const out: LayoutEntry[] = [];
  const add = (key: string, shape: number[], role: TensorRole, part: LayoutEntry['part'], fanIn = 0) => out.push({ key, shape, role, part, fanIn });
  const linear = (key: string, o: number, i: number, part: LayoutEntry['part']) => {
    add(`${key}.weight`, [o, i], 'linear.weight', part, i);
    add(`${key}.bias`, [o], 'linear.bias', part, i);
  };
  const norm = (key: string, dim: number, part: LayoutEntry['part']) => {
    add(`${key}.weight`, [dim], 'norm.weight', part);
    add(`${key}.bias`, [dim], 'norm.bias', part);
  };
  const head = (key: string, h: MlpHeadConfig) => {
    if (h.version === 'attn') throw new Error(`${op}: attention feature heads are not made (${key})`);
    linear(`${key}.fc1`, h.hiddenDim, h.inputDim, 'head');
    if (h.version === 'v1') {
      norm(`${key}.norm`, h.hiddenDim, 'head');
      for (let k = 0; k < h.numInner; k++) {
        linear(`${key}.inner.${3 * k}`, h.hiddenDim, h.hiddenDim, 'head');
        norm(`${key}.inner.${3 * k + 1}`, h.hiddenDim, 'head');
      }
      linear(`${key}.fc2`, h.outputDim, h.hiddenDim, 'head');
      return;
    }
    for (let k = 0; k < h.numInner; k++) {
      norm(`${key}.blocks.${k}.0`, h.hiddenDim, 'head');
      linear(`${key}.blocks.${k}.2`, h.hiddenDim, h.hiddenDim, 'head');
    }
    norm(`${key}.final.0`, h.hiddenDim, 'head');
    linear(`${key}.final.2`, h.outputDim, h.hiddenDim, 'head');
  };
  add('model.patch_generator.embedder.weight', [D, 3 * P * P], 'patch_embed', 'backbone', 3 * P * P);
  add('model.patch_generator.pos_embed', [1, config.cpeGrid * config.cpeGrid, D], 'pos_embed', 'backbone');
  add('model.patch_generator.cls_token.token', [config.numCls + config.numRegisters, D], 'prefix_tokens', 'backbone');
  for (let b = 0; b < config.depth; b++) {
    const k = `model.blocks.${b}`;
    norm(`${k}.norm1`, D, 'backbone');
    linear(`${k}.attn.qkv`, 3 * D, D, 'backbone');
    linear(`${k}.attn.proj`, D, D, 'backbone');
    norm(`${k}.norm2`, D, 'backbone');
    linear(`${k}.mlp.fc1`, M, D, 'backbone');
    linear(`${k}.mlp.fc2`, D, M, 'backbone');
  }
  if (config.modelNorm) norm('model.norm', D, 'backbone');
  for (const a of config.adaptors) {
    head(`adaptors.${a.name}.head_mlp`, a.summary);
    head(`adaptors.${a.name}.feat_mlp`, a.feature);
  }
  return out;
}

/** The fixed buffers of a checkpoint: the input conditioner (ImageNet statistics) and summary_idxs. */
export function radioBuffers(config: RadioConfig): Record<string, SafetensorsWriteEntry> {
  return {
    'radio_model.summary_idxs': { dtype: 'I64', shape: [config.defaultSummaryIdxs.length], data: config.defaultSummaryIdxs },
    'radio_model.input_conditioner.norm_mean': { dtype: 'F32', shape: [3, 1, 1], data: [0.485, 0.456, 0.406] },
    'radio_model.input_conditioner.norm_std': { dtype: 'F32', shape: [3, 1, 1], data: [0.229, 0.224, 0.225] },
  };
}

/** A checkpoint's tensors from the layout, each filled by `value(entry)` (called once per element, in order). */
export function fillLayout(config: RadioConfig, value: (e: LayoutEntry) => () => number, op?: string): Record<string, SafetensorsWriteEntry> {
  const out = radioBuffers(config);
  for (const e of radioTensorLayout(config, op)) {
    const next = value(e);
    const data = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = next();
    out[`radio_model.${e.key}`] = { dtype: 'F32', shape: e.shape, data };
  }
  return out;
}

/**
 * Random weights of a trained network's scale for `config`, for timing and smoke runs (not for numerical checks):
 * linear weights uniform in ±1/√fan_in, small biases, position table and prefix tokens; norm weights near 1.
 */
export function randomCheckpointTensors(config: RadioConfig, seed = 1): Record<string, SafetensorsWriteEntry> {
  // xorshift32: fast enough for the ~100M values of a ViT-B checkpoint.
  let state = seed >>> 0 || 1;
  const u = (scale: number, offset = 0) => () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return offset + scale * ((state >>> 0) / 2147483648 - 1);
  };
  return fillLayout(config, (e) => {
    if (e.role === 'linear.weight' || e.role === 'patch_embed') return u(1 / Math.sqrt(e.fanIn));
    if (e.role === 'norm.weight') return u(0.1, 1);
    return u(0.02);
  }, 'randomCheckpointTensors');
}
