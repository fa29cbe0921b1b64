// SAM's image encoder (transformers' SamVisionEncoder, `vision_encoder.*` of a SamModel or SamVisionModel folder)
// on this package's ops: ViTDet blocks (windowed attention padded to the window multiple, global attention in
// `global_attn_indexes`), the decomposed relative-position term in every block, and the neck (1×1 conv,
// LayerNorm2d, 3×3 conv, LayerNorm2d). RADIO distils the tokens before the neck (spec §3); both are returned.
//
// The relative-position term is added inside the fused attention kernel (ops.attention's relPos): its two
// factors relH [B, heads, T, h] and relW [B, heads, T, w] come from one batched product each (q against the
// gathered tables), and the [B, heads, T, T] bias they stand for is never materialised.
import * as fs from 'fs';
import * as path from 'path';

import { noGrad } from '../../autograd';
import type { DType, Device } from '../../native';
import { native } from '../../native';
import { LayerNorm, LayerOptions, Linear, makeParameter } from '../../nn/layers';
import { Module, ModuleList } from '../../nn/module';
import type { Parameter } from '../../nn/parameter';
import { attention } from '../../ops/attention';
import { layerNorm2d } from '../../ops/batchnorm';
import { conv2d } from '../../ops/conv';
import { narrow, permute, windowPartition, windowReverse } from '../../ops/layout';
import { matmul } from '../../ops/linear';
import { assembleTokens, gatherRows, patchify } from '../../ops/tokens';
import { escape, tidy } from '../../scope';
import { SAM_MODEL_TYPES } from './config';
import { loadFromCheckpoint, runEncoder } from './model';
import { emptyTensor, tensor, Tensor } from '../../tensor';

export interface SamVisionConfig {
  modelType: string;
  hidden: number;
  layers: number;
  heads: number;
  mlpDim: number;
  patch: number;
  image: number;
  eps: number;
  window: number;
  globalBlocks: number[];
  outChannels: number;
  mean: [number, number, number];
  std: [number, number, number];
}

type Json = Record<string, unknown>;

const SAM_DEFAULTS: Json = {
  hidden_size: 768, output_channels: 256, num_hidden_layers: 12, num_attention_heads: 12, image_size: 1024, patch_size: 16,
  hidden_act: 'gelu', layer_norm_eps: 1e-6, qkv_bias: true, mlp_ratio: 4.0, use_abs_pos: true, use_rel_pos: true, window_size: 14,
  global_attn_indexes: [2, 5, 8, 11], mlp_dim: null,
};


/** dir/config.json of a SamModel (its vision_config) or a SamVisionModel; each problem an Error naming the key. */
export function readSamConfig(dir: string): SamVisionConfig {
  const file = path.join(dir, 'config.json');
  const top = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  const type = top.model_type as string;
  if (!SAM_MODEL_TYPES.includes(type)) throw new Error(`${file}: model_type ${JSON.stringify(type)} is not a SAM model`);
  const own = type === 'sam' ? top.vision_config : top;
  const where = type === 'sam' ? `${file}: vision_config` : file;
  if (!own || typeof own !== 'object') throw new Error(`${file}: vision_config must be an object`);
  const c = { ...SAM_DEFAULTS, ...(own as Json) };
  const int = (key: string): number => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${where}.${key} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  for (const [key, want] of [['hidden_act', 'gelu'], ['use_abs_pos', true], ['use_rel_pos', true], ['qkv_bias', true]] as const)
    if (c[key] !== want) throw new Error(`${where}.${key} ${JSON.stringify(c[key])} is not supported (SAM's encoders use ${JSON.stringify(want)})`);
  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  if (hidden % heads !== 0) throw new Error(`${where}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  const layers = int('num_hidden_layers');
  const globals = c.global_attn_indexes;
  if (!Array.isArray(globals) || !globals.every((i) => Number.isInteger(i) && i >= 0 && i < layers))
    throw new Error(`${where}.global_attn_indexes must be block indices below ${layers}, got ${JSON.stringify(globals)}`);
  const ratio = c.mlp_ratio;
  const mlpDim = c.mlp_dim === null || c.mlp_dim === undefined ? Math.trunc(hidden * (ratio as number)) : int('mlp_dim');
  const eps = c.layer_norm_eps;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`${where}.layer_norm_eps must be a positive number, got ${JSON.stringify(eps)}`);
  // SamImageProcessor's defaults: ImageNet statistics on [0, 1] pixels (it rescales by 1/255 first).
  let mean: [number, number, number] = [0.485, 0.456, 0.406];
  let std: [number, number, number] = [0.229, 0.224, 0.225];
  const pre = path.join(dir, 'preprocessor_config.json');
  if (fs.existsSync(pre)) {
    const p = JSON.parse(fs.readFileSync(pre, 'utf8')) as Json;
    if (Array.isArray(p.image_mean)) mean = p.image_mean as [number, number, number];
    if (Array.isArray(p.image_std)) std = p.image_std as [number, number, number];
  }
  return {
    modelType: type, hidden, layers, heads, mlpDim, patch: int('patch_size'), image: int('image_size'), eps,
    window: c.window_size === 0 ? 0 : int('window_size'), globalBlocks: globals as number[], outChannels: int('output_channels'), mean, std,
  };
}

/** Rows of a relative-position table for every (query, key) pair along one axis of size S: R[q, k] = table[q − k + S − 1]. */
function pairIndex(S: number): Int32Array {
  const idx = new Int32Array(S * S);
  for (let q = 0; q < S; q++) for (let k = 0; k < S; k++) idx[q * S + k] = q - k + S - 1;
  return idx;
}

class SamBlock extends Module {
  readonly norm1: LayerNorm;
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly norm2: LayerNorm;
  readonly lin1: Linear;
  readonly lin2: Linear;
  /** The side of the square the attention runs over: the window, or the whole grid for a global block. */
  readonly side: number;
  private tables: { h: Tensor; w: Tensor } | null = null;

  constructor(c: SamVisionConfig, readonly windowed: boolean, layer: LayerOptions) {
    super();
    const D = c.hidden;
    const grid = c.image / c.patch;
    this.side = windowed ? c.window : grid;
    const f32 = { ...layer, dtype: 'f32' as const };
    this.norm1 = this.registerModule('norm1', new LayerNorm(D, c.eps, layer));
    this.qkv = this.registerModule('qkv', new Linear(D, 3 * D, layer));
    this.proj = this.registerModule('proj', new Linear(D, D, layer));
    this.registerParameter('rel_pos_h', makeParameter([2 * this.side - 1, D / c.heads], f32, {}));
    this.registerParameter('rel_pos_w', makeParameter([2 * this.side - 1, D / c.heads], f32, {}));
    this.norm2 = this.registerModule('norm2', new LayerNorm(D, c.eps, layer));
    this.lin1 = this.registerModule('lin1', new Linear(D, c.mlpDim, layer));
    this.lin2 = this.registerModule('lin2', new Linear(c.mlpDim, D, layer));
  }

  /** Rh and Rw [S, S, headDim] in the compute dtype, gathered once (the tables are frozen). */
  private relTables(dtype: DType): { h: Tensor; w: Tensor } {
    if (this.tables && this.tables.h.dtype === dtype) return this.tables;
    this.dropTables();
    const S = this.side;
    const idx = pairIndex(S);
    const gather = (p: Parameter) => noGrad(() => tidy(() => gatherRows(p.reshape([1, 2 * S - 1, p.shape[1]]), idx).reshape([S, S, p.shape[1]]).cast(dtype)));
    this.tables = { h: escape(gather(this.param('rel_pos_h'))), w: escape(gather(this.param('rel_pos_w'))) };
    return this.tables;
  }

  dropTables(): void {
    this.tables?.h.dispose();
    this.tables?.w.dispose();
    this.tables = null;
  }

  /**
   * SAM's relH[b, head, (qh, qw), kh] = q[b, head, qh, qw] · Rh[qh, kh] and relW[…, kw] = q · Rw[qw, kw], for
   * qkv [Bw, S·S, 3·D] (unscaled q, as the reference adds it): each one batched product over the query's row
   * (or column), with the batch, heads and the other axis as its rows.
   */
  private relPos(qkv: Tensor, heads: number): { h: Tensor; w: Tensor; grid: [number, number] } {
    const S = this.side;
    const [Bw, , D3] = qkv.shape;
    const D = D3 / 3;
    const hd = D / heads;
    const { h: Rh, w: Rw } = this.relTables(qkv.dtype);
    const q = narrow(qkv, 2, 0, D).reshape([Bw, S, S, heads, hd]);
    const rows = permute(q, [1, 0, 3, 2, 4]).reshape([S, Bw * heads * S, hd]);
    const relH = permute(matmul(rows, Rh, { transB: true }).reshape([S, Bw, heads, S, S]), [1, 2, 0, 3, 4]).reshape([Bw, heads, S * S, S]);
    const cols = permute(q, [2, 0, 3, 1, 4]).reshape([S, Bw * heads * S, hd]);
    const relW = permute(matmul(cols, Rw, { transB: true }).reshape([S, Bw, heads, S, S]), [1, 2, 3, 0, 4]).reshape([Bw, heads, S * S, S]);
    return { h: relH, w: relW, grid: [S, S] };
  }

  /** x [B, g, g, D] → the block's output, same shape. */
  forward(x: Tensor, c: SamVisionConfig): Tensor {
    const [B, gh, gw, D] = x.shape;
    const h = this.norm1.forward(x);
    let tokens: Tensor;
    let part: { Hp: number; Wp: number } | null = null;
    if (this.windowed) {
      // Zero padding after the norm, as the reference pads: the pad tokens attend and are attended to.
      const w = windowPartition(h, this.side, { layout: 'NHWC', mode: 'zero' });
      tokens = w.tokens;
      part = w;
    } else {
      tokens = h.reshape([B, gh * gw, D]);
    }
    const qkv = this.qkv.forward(tokens);
    const a = this.proj.forward(attention(qkv, { heads: c.heads, relPos: this.relPos(qkv, c.heads) }));
    const back = part ? windowReverse(a, this.side, gh, gw, part.Hp, part.Wp, { layout: 'NHWC' }) : a.reshape([B, gh, gw, D]);
    const x1 = x.add(back);
    return this.lin2.forward(this.lin1.forward(this.norm2.forward(x1), { activation: 'gelu' }), { residual: x1 });
  }

  override dispose(): void {
    this.dropTables();
    super.dispose();
  }
}

class Neck extends Module {
  constructor(c: SamVisionConfig, layer: LayerOptions) {
    super();
    const f32 = { ...layer, dtype: 'f32' as const };
    this.registerParameter('conv1', makeParameter([c.outChannels, c.hidden, 1, 1], layer, {}));
    this.registerParameter('ln1_weight', makeParameter([c.outChannels], f32, {}));
    this.registerParameter('ln1_bias', makeParameter([c.outChannels], f32, {}));
    this.registerParameter('conv2', makeParameter([c.outChannels, c.outChannels, 3, 3], layer, {}));
    this.registerParameter('ln2_weight', makeParameter([c.outChannels], f32, {}));
    this.registerParameter('ln2_bias', makeParameter([c.outChannels], f32, {}));
  }

  /** x [B, D, g, g] → [B, out, g, g]. */
  forward(x: Tensor): Tensor {
    const y = layerNorm2d(conv2d(x, this.param('conv1')), this.param('ln1_weight'), this.param('ln1_bias'), 1e-6);
    return layerNorm2d(conv2d(y, this.param('conv2'), undefined, { padding: 1 }), this.param('ln2_weight'), this.param('ln2_bias'), 1e-6);
  }
}

export interface SamVisionOutput {
  /** SAM has no summary. */
  summary: null;
  /** [B, h·w, hidden]: the last block's tokens, before the neck (what RADIO distils). */
  features: Tensor;
  /** [B, output_channels, h, w]: the encoder's output after the neck. */
  neck: Tensor;
  grid: [number, number];
}

export class SamVisionModel extends Module {
  readonly patchEmbed: Linear;
  readonly blocks: ModuleList<SamBlock>;
  readonly neck: Neck;
  readonly mean: Tensor;
  readonly std: Tensor;
  private posCache: Tensor | null = null;

  constructor(readonly config: SamVisionConfig, readonly dtype: DType, readonly device: Device) {
    super();
    const c = config;
    const layer: LayerOptions = { device, dtype, init: 'empty' };
    if (c.image % c.patch !== 0) throw new Error(`SAM: image_size ${c.image} is not a multiple of patch_size ${c.patch}`);
    const g = c.image / c.patch;
    this.patchEmbed = this.registerModule('patch_embed', new Linear(3 * c.patch * c.patch, c.hidden, layer));
    this.registerParameter('pos', makeParameter([1, g * g, c.hidden], { ...layer, dtype: 'f32' }, {}));
    this.blocks = this.registerModule('blocks', new ModuleList(Array.from({ length: c.layers }, (_, i) => new SamBlock(c, c.window > 0 && !c.globalBlocks.includes(i), layer))));
    this.neck = this.registerModule('neck', new Neck(c, layer));
    this.mean = escape(tensor(Float32Array.from(c.mean), [3], { device }));
    this.std = escape(tensor(Float32Array.from(c.std), [3], { device }));
    this.eval();
  }

  get summaryDim(): null {
    return null;
  }

  /** SAM's position table is not resized: its input is exactly image_size on both sides. */
  gridOf(op: string, h: number, w: number): [number, number] {
    const { image, patch } = this.config;
    if (h !== image || w !== image) throw new Error(`${op}: SAM's encoder takes ${image}x${image} inputs (its position table is not resized), got ${h}x${w}`);
    return [image / patch, image / patch];
  }

  forward(images: Tensor): SamVisionOutput {
    return runEncoder('SamVisionModel.forward', this, images, (x, grid) => this.run(x, grid));
  }

  private run(images: Tensor, grid: [number, number]): SamVisionOutput {
    const c = this.config;
    const B = images.shape[0];
    const [g] = grid;
    const rows = patchify(images, { patch: c.patch, mean: this.mean, std: this.std, dtype: this.dtype });
    const tokens = assembleTokens(emptyTensor([0, c.hidden], this.dtype, this.device), this.patchEmbed.forward(rows), this.positions());
    let x = tokens.reshape([B, g, g, c.hidden]);
    for (const b of this.blocks) x = b.forward(x, c);
    const neck = this.neck.forward(permute(x, [0, 3, 1, 2]));
    return { summary: null, features: x.reshape([B, g * g, c.hidden]), neck, grid };
  }

  private positions(): Tensor {
    if (!this.posCache) this.posCache = escape(noGrad(() => this.param('pos').cast(this.dtype)));
    return this.posCache;
  }

  override dispose(): void {
    this.posCache?.dispose();
    this.posCache = null;
    this.mean.dispose();
    this.std.dispose();
    super.dispose();
  }
}

/** Checkpoint keys → this tree's parameters (transformers' SamVisionEncoder names, `vision_encoder.` prefix). */
function samSources(m: SamVisionModel): Map<string, { key: string; shape: number[] }> {
  const c = m.config;
  const s = new Map<string, { key: string; shape: number[] }>();
  const shapes = new Map(m.namedParameters().map(([k, p]) => [k, [...p.shape]]));
  const put = (k: string, key: string, shape = shapes.get(k)!) => s.set(k, { key: `vision_encoder.${key}`, shape });
  const g = c.image / c.patch;
  put('patch_embed.weight', 'patch_embed.projection.weight', [c.hidden, 3, c.patch, c.patch]);
  put('patch_embed.bias', 'patch_embed.projection.bias');
  put('pos', 'pos_embed', [1, g, g, c.hidden]);
  for (let i = 0; i < c.layers; i++) {
    const L = `layers.${i}`;
    for (const [ours, theirs] of [['norm1', 'layer_norm1'], ['qkv', 'attn.qkv'], ['proj', 'attn.proj'], ['norm2', 'layer_norm2'], ['lin1', 'mlp.lin1'], ['lin2', 'mlp.lin2']])
      for (const leaf of ['weight', 'bias']) put(`blocks.${i}.${ours}.${leaf}`, `${L}.${theirs}.${leaf}`);
    put(`blocks.${i}.rel_pos_h`, `${L}.attn.rel_pos_h`);
    put(`blocks.${i}.rel_pos_w`, `${L}.attn.rel_pos_w`);
  }
  put('neck.conv1', 'neck.conv1.weight');
  put('neck.ln1_weight', 'neck.layer_norm1.weight');
  put('neck.ln1_bias', 'neck.layer_norm1.bias');
  put('neck.conv2', 'neck.conv2.weight');
  put('neck.ln2_weight', 'neck.layer_norm2.weight');
  put('neck.ln2_bias', 'neck.layer_norm2.bias');
  return s;
}

export interface SamLoadOptions {
  device?: Device;
  dtype?: 'f32' | 'bf16';
  onWarning?: (message: string) => void;
}

/** The SAM image encoder in dir (a SamModel or SamVisionModel save_pretrained folder), in eval mode. */
export async function loadSamVisionModel(dir: string, opts: SamLoadOptions = {}): Promise<SamVisionModel> {
  const config = readSamConfig(dir);
  return loadFromCheckpoint(dir, opts.onWarning, () => new SamVisionModel(config, opts.dtype ?? 'f32', opts.device ?? 'cpu'), async (model, file) => {
    const sources = samSources(model);
    const missing = [...sources.values()].map((s) => s.key).filter((k) => !file.has(k));
    if (missing.length) throw new Error(`${file.file}: missing ${missing.length} tensor${missing.length > 1 ? 's' : ''}: ${missing.map((k) => `'${k}'`).join(', ')}`);
    for (const [k, p] of model.namedParameters()) {
      const s = sources.get(k)!;
      native.upload(p.native('load'), (await file.readFloat(s.key, s.shape)).data, p.dtype);
      p.markModified();
    }
    const read = new Set([...sources.values()].map((s) => s.key));
    // A SamModel also holds the prompt encoder and mask decoder: not the image encoder's business.
    return file.keys().filter((k) => !read.has(k) && k.startsWith('vision_encoder.'));
  });
}

/** The transformers checkpoint keys and shapes a model of this tree reads (benches write random ones). */
export function samCheckpointLayout(m: SamVisionModel): Array<[string, number[]]> {
  return [...samSources(m).values()].map((s) => [s.key, s.shape]);
}
