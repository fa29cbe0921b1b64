// A Hugging Face vision encoder (DINOv2, CLIP vision, SigLIP vision, SigLIP2 NaFlex vision) on this package's ops, for
// inference: the teacher half of distillation. One module tree serves the four families; config.ts says which parts
// a family has, and the loader below maps transformers' checkpoint keys onto it.
//
// The tree is laid out for the fused kernels rather than by transformers' names: q, k and v are one packed
// [3·D, D] linear (the attention op reads timm's packed qkv), and DINOv2's LayerScale is folded into the linear
// before it (diag(γ)·W, γ ⊙ b) when the weights are read. That is exact algebra, costs nothing per forward, and
// keeps one copy of each weight; the price is that the tree's state dict is not transformers' layout (a teacher is
// frozen, so nothing is ever saved from it).
import * as path from 'path';

import { noGrad } from '../../autograd';
import { openWeights, TensorReader } from '../../io/safetensors';
import { warnUnreadTensors } from '../../model/weights';
import type { DType, Device } from '../../native';
import { native } from '../../native';
import { LayerNorm, LayerOptions, Linear, makeParameter } from '../../nn/layers';
import { Module, ModuleList } from '../../nn/module';
import type { Parameter } from '../../nn/parameter';
import { silu } from '../../ops/activation';
import { attention } from '../../ops/attention';
import { interpolate } from '../../ops/interpolate';
import { cat, chunk, narrow } from '../../ops/layout';
import { assembleTokens, patchify, sliceRows } from '../../ops/tokens';
import { escape, tidy } from '../../scope';
import { emptyTensor, tensor, Tensor } from '../../tensor';
import { checkMaxNumPatches, HfActivation, HfVisionConfig, readHfVisionConfig } from './config';
import { naflexSize } from './naflex';

/** act(fc1(h)), the activation fused into the GEMM's epilogue. */
function mlpIn(fc1: Linear, h: Tensor, act: HfActivation): Tensor {
  return fc1.forward(h, { activation: act });
}

class Block extends Module {
  readonly norm1: LayerNorm;
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly norm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(c: HfVisionConfig, layer: LayerOptions) {
    super();
    const D = c.hidden;
    this.norm1 = this.registerModule('norm1', new LayerNorm(D, c.eps, layer));
    this.qkv = this.registerModule('qkv', new Linear(D, 3 * D, { ...layer, bias: c.qkvBias }));
    this.proj = this.registerModule('proj', new Linear(D, D, layer));
    this.norm2 = this.registerModule('norm2', new LayerNorm(D, c.eps, layer));
    this.fc1 = this.registerModule('fc1', new Linear(D, (c.swiglu ? 2 : 1) * c.intermediate, layer));
    this.fc2 = this.registerModule('fc2', new Linear(c.intermediate, D, layer));
  }

  /** The pre-norm residual block every family shares: x + attn(norm1 x), then + mlp(norm2 ·). */
  forward(x: Tensor, c: HfVisionConfig): Tensor {
    const a = attention(this.qkv.forward(this.norm1.forward(x)), { heads: c.heads });
    const x1 = this.proj.forward(a, { residual: x });
    const h = this.norm2.forward(x1);
    let m: Tensor;
    if (c.swiglu) {
      // Dinov2SwiGLUFFN: silu(first half) ⊙ second half of weights_in's output.
      const [gate, value] = chunk(this.fc1.forward(h), 2, 2);
      m = silu(gate).mul(value);
    } else {
      m = mlpIn(this.fc1, h, c.activation);
    }
    return this.fc2.forward(m, { residual: x1 });
  }
}

/**
 * SigLIP's attention-pooling head (SiglipMultiheadAttentionPoolingHead): one learned probe attends over the tokens
 * (torch's MultiheadAttention), then a residual MLP after a LayerNorm. The probe's attention runs on the fused
 * kernel as row 0 of [probe; tokens] with the probe's own key masked out by the additive bias, so it sees exactly
 * the tokens' keys and values; the other rows' outputs are not read.
 */
class PoolingHead extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly norm: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  private masks = new Map<number, Tensor>();

  constructor(c: HfVisionConfig, layer: LayerOptions) {
    super();
    const D = c.hidden;
    this.registerParameter('probe', makeParameter([1, D], layer, {}));
    this.qkv = this.registerModule('qkv', new Linear(D, 3 * D, layer));
    this.proj = this.registerModule('proj', new Linear(D, D, layer));
    this.norm = this.registerModule('norm', new LayerNorm(D, c.eps, layer));
    this.fc1 = this.registerModule('fc1', new Linear(D, c.intermediate, layer));
    this.fc2 = this.registerModule('fc2', new Linear(c.intermediate, D, layer));
  }

  get probe(): Parameter {
    return this.param('probe');
  }

  private mask(heads: number, L: number, like: Tensor): Tensor {
    const key = heads * 1e9 + L;
    let m = this.masks.get(key);
    if (!m || m.dtype !== like.dtype || m.device !== like.device) {
      m?.dispose();
      const data = new Float32Array(heads * L * L);
      for (let i = 0; i < heads * L; i++) data[i * L] = -1e30;
      m = escape(tensor(data, [heads, L, L], { dtype: like.dtype, device: like.device }));
      this.masks.set(key, m);
    }
    return m;
  }

  forward(x: Tensor, c: HfVisionConfig): Tensor {
    const [B, N, D] = x.shape;
    const seq = assembleTokens(this.probe, x);
    const a = attention(this.qkv.forward(seq), { heads: c.heads, bias: this.mask(c.heads, N + 1, x) });
    const r = this.proj.forward(sliceRows(a, 0, 1));
    const out = this.fc2.forward(mlpIn(this.fc1, this.norm.forward(r), c.activation), { residual: r });
    return out.reshape([B, D]);
  }

  override dispose(): void {
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
    super.dispose();
  }
}

/**
 * What every encoder's forward does around its own run: images [B, 3, H, W] checked (each problem an Error
 * naming op), moved to the model's device, the grid from gridOf, then run without a graph in a tensor scope.
 */
export function runEncoder<T>(op: string, m: Module & { device: Device; gridOf(op: string, h: number, w: number): [number, number] }, images: Tensor,
  run: (x: Tensor, grid: [number, number]) => T, gridOf: (op: string, h: number, w: number) => [number, number] = (o, h, w) => m.gridOf(o, h, w)): T {
  if (m.disposed) throw new Error(`${op}: the model was disposed`);
  if (!(images instanceof Tensor)) throw new Error(`${op}: images must be a Tensor [B, 3, H, W]`);
  if (images.shape.length !== 4 || images.shape[1] !== 3) throw new Error(`${op}: images have shape [${images.shape.join(', ')}], expected [B, 3, H, W]`);
  if (images.dtype === 'i32') throw new Error(`${op}: images must be f32 or bf16, got i32`);
  const grid = gridOf(op, images.shape[2], images.shape[3]);
  return noGrad(() => tidy(() => run(images.device === m.device ? images : images.to(m.device), grid)));
}

export interface HfVisionOutput {
  /** [B, C]: DINOv2's cls token after the final norm, CLIP's image embedding, SigLIP's pooled output; null without one. */
  summary: Tensor | null;
  /** [B, h·w, D]: the patch tokens of the last hidden state (after the final norm for DINOv2 and SigLIP). */
  features: Tensor;
  grid: [number, number];
}

export interface HfForwardOptions {
  /** SigLIP2 NaFlex: the patch budget each image is resized to fit; default the preprocessor's max_num_patches. */
  maxNumPatches?: number;
}

/** SigLIP2 NaFlex over images of different sizes: one summary row per image, each image's tokens on its own grid. */
export interface HfVisionEachOutput {
  /** [B, C], the images' pooled outputs in order; null without a head. */
  summary: Tensor | null;
  /** Per image [1, h·w, D]: the valid tokens of its last hidden state after post_layernorm. */
  features: Tensor[];
  grids: Array<[number, number]>;
}

const isSiglip = (c: HfVisionConfig) => c.arch === 'siglip' || c.arch === 'siglip2';

/** The module tree of one encoder; build it with {@link loadHfVisionModel}. */
export class HfVisionModel extends Module {
  readonly patchEmbed: Linear;
  readonly preNorm: LayerNorm | null;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm;
  readonly projection: Linear | null;
  readonly head: PoolingHead | null;
  readonly mean: Tensor;
  readonly std: Tensor;
  private readonly tables = new Map<string, Tensor>();
  private prefixCache: Tensor | null = null;

  constructor(readonly config: HfVisionConfig, readonly dtype: DType, readonly device: Device, projectionDim: number | null) {
    super();
    const c = config;
    const layer: LayerOptions = { device, dtype, init: 'empty' };
    const D = c.hidden;
    // The patch conv has no padding: a side that is not a multiple of the patch loses its remainder (SigLIP's 384 / 14).
    const grid = Math.floor(c.image / c.patch);
    // SigLIP2's patch Linear reads HF's (y, x, c) rows; its columns are reordered at load to patchify's (c, y, x).
    this.patchEmbed = this.registerModule('patch_embed', new Linear(3 * c.patch * c.patch, D, { ...layer, bias: c.arch !== 'clip' }));
    const f32 = { ...layer, dtype: 'f32' as const };
    if (!isSiglip(c)) this.registerParameter('cls', makeParameter([1, 1, D], f32, {}));
    if (c.registers > 0) this.registerParameter('registers', makeParameter([1, c.registers, D], f32, {}));
    // The position table stays f32: transformers resizes it in float32 whatever the model's dtype.
    this.registerParameter('pos', makeParameter([1, grid * grid + (isSiglip(c) ? 0 : 1), D], f32, {}));
    this.preNorm = c.arch === 'clip' ? this.registerModule('pre_norm', new LayerNorm(D, c.eps, layer)) : null;
    this.blocks = this.registerModule('blocks', new ModuleList(Array.from({ length: c.layers }, () => new Block(c, layer))));
    this.norm = this.registerModule('norm', new LayerNorm(D, c.eps, layer));
    this.projection = projectionDim ? this.registerModule('projection', new Linear(D, projectionDim, { ...layer, bias: false })) : null;
    this.head = c.poolingHead ? this.registerModule('head', new PoolingHead(c, layer)) : null;
    this.mean = escape(tensor(Float32Array.from(c.mean), [3], { device }));
    this.std = escape(tensor(Float32Array.from(c.std), [3], { device }));
    this.eval();
  }

  /** Width of the summary output (null: the encoder has none). */
  get summaryDim(): number | null {
    if (this.projection) return this.projection.outFeatures;
    return isSiglip(this.config) && !this.head ? null : this.config.hidden;
  }

  /**
   * The patch grid an input of h × w pixels gives: floor(h / P) × floor(w / P), as the checkpoints' patch conv
   * (stride P, no padding) makes it; an Error when a side is smaller than one patch. SigLIP2 NaFlex: the grid of
   * the size its processor resizes to for maxNumPatches (naflexSize).
   */
  gridOf(op: string, h: number, w: number, maxNumPatches = this.config.maxNumPatches): [number, number] {
    const P = this.config.patch;
    if (maxNumPatches !== null) {
      // SigLIP2 NaFlex: the processor's size for the budget; it resizes any image, one smaller than a patch too.
      if (h < 1 || w < 1) throw new Error(`${op}: input ${h}x${w} has no pixels`);
      const [th, tw] = naflexSize(h, w, P, maxNumPatches);
      return [th / P, tw / P];
    }
    if (h < P || w < P) throw new Error(`${op}: input ${h}x${w} is smaller than the patch size ${P}`);
    return [Math.floor(h / P), Math.floor(w / P)];
  }

  /**
   * images [B, 3, H, W] in [0, 1] (normalised here by the preprocessor's mean and std) → summary and features on
   * the grid gridOf gives. SigLIP2 NaFlex first resizes the batch as its processor does (bilinear, antialiased, to
   * the size naflexSize picks for opts.maxNumPatches); a batch shares one size, so it needs no padding.
   */
  forward(images: Tensor, opts: HfForwardOptions = {}): HfVisionOutput {
    const op = 'HfVisionModel.forward';
    const limit = this.patchBudget(op, opts);
    return runEncoder(op, this, images, (x, grid) => this.run(x, grid), (o, h, w) => this.gridOf(o, h, w, limit));
  }

  /**
   * SigLIP2 NaFlex over images of different sizes (each [1, 3, H, W] or [3, H, W], in [0, 1]), as transformers runs
   * a padded batch of them. Each image runs alone at its exact patch count: the attention op's additive bias is one
   * [heads, T, T] for the whole batch, so it cannot mask a different set of padded keys per image, and since HF's
   * mask keeps padded patches out of every valid token's attention and out of the pooling head, an image alone gives
   * HF's valid tokens and pooled output exactly.
   */
  forwardEach(images: readonly Tensor[], opts: HfForwardOptions = {}): HfVisionEachOutput {
    const op = 'HfVisionModel.forwardEach';
    if (this.config.arch !== 'siglip2') throw new Error(`${op}: images of different sizes are for SigLIP2 NaFlex encoders; this is ${this.config.modelType}`);
    if (!Array.isArray(images) || images.length === 0) throw new Error(`${op}: images must be a non-empty array of [1, 3, H, W] or [3, H, W] tensors`);
    const outs: HfVisionOutput[] = [];
    try {
      for (const [i, img] of images.entries()) {
        if (!(img instanceof Tensor)) throw new Error(`${op}: images[${i}] is not a Tensor`);
        if (img.shape.length === 4 && img.shape[0] !== 1) throw new Error(`${op}: images[${i}] has shape [${img.shape.join(', ')}], expected one image [1, 3, H, W] or [3, H, W]`);
        const one = img.shape.length === 3 ? img.reshape([1, ...img.shape]) : img;
        try {
          outs.push(this.forward(one, opts));
        } finally {
          if (one !== img) one.dispose();
        }
      }
      const summary = this.head ? noGrad(() => cat(outs.map((o) => o.summary!), 0)) : null;
      return { summary, features: outs.map((o) => o.features), grids: outs.map((o) => o.grid) };
    } catch (e) {
      for (const o of outs) o.features.dispose();
      throw e;
    } finally {
      for (const o of outs) o.summary?.dispose();
    }
  }

  /** The patch budget of a forward: SigLIP2's option or its preprocessor's; null (and no option) for the others. */
  private patchBudget(op: string, opts: HfForwardOptions): number | null {
    if (!opts || typeof opts !== 'object') throw new Error(`${op}: options must be an object`);
    if (opts.maxNumPatches === undefined) return this.config.maxNumPatches;
    if (this.config.arch !== 'siglip2') throw new Error(`${op}: maxNumPatches is for SigLIP2 NaFlex encoders; this is ${this.config.modelType}`);
    return checkMaxNumPatches(`${op}: maxNumPatches`, opts.maxNumPatches);
  }

  private run(images: Tensor, grid: [number, number]): HfVisionOutput {
    const c = this.config;
    const B = images.shape[0];
    const [gh, gw] = grid;
    let used = images;
    if (c.arch === 'siglip2') {
      // The processor's resize (the fast one's: bilinear, antialiased, on float pixels) to whole patches; at the
      // image's own size that resize is the identity, so it is skipped.
      if (images.shape[2] !== gh * c.patch || images.shape[3] !== gw * c.patch)
        used = interpolate(images.dtype === 'f32' ? images : images.cast('f32'), { size: [gh * c.patch, gw * c.patch], mode: 'bilinear', alignCorners: false, antialias: true });
    } else {
      // The pixels past the last whole patch, which the conv never reads.
      if (images.shape[2] !== gh * c.patch) used = narrow(used, 2, 0, gh * c.patch);
      if (images.shape[3] !== gw * c.patch) used = narrow(used, 3, 0, gw * c.patch);
    }
    const rows = patchify(used, { patch: c.patch, mean: this.mean, std: this.std, dtype: this.dtype });
    const patches = this.patchEmbed.forward(rows);
    let x = assembleTokens(this.prefix(), patches, this.positions(grid));
    if (this.preNorm) x = this.preNorm.forward(x);
    for (const b of this.blocks) x = b.forward(x, c);
    const T = x.shape[1];
    if (c.arch === 'clip') {
      // CLIP's last hidden state is the encoder's output; post_layernorm and the projection see the cls token only.
      const pooled = this.norm.forward(sliceRows(x, 0, 1).reshape([B, c.hidden]));
      return { summary: this.projection ? this.projection.forward(pooled) : pooled, features: sliceRows(x, 1, T), grid };
    }
    x = this.norm.forward(x);
    if (isSiglip(c)) return { summary: this.head ? this.head.forward(x, c) : null, features: x, grid };
    return { summary: sliceRows(x, 0, 1).reshape([B, c.hidden]), features: sliceRows(x, 1 + c.registers, T), grid };
  }

  /** The rows before the patches: cls + its position (and DINOv2's registers, which get none); none for SigLIP. */
  private prefix(): Tensor {
    if (this.prefixCache) return this.prefixCache;
    const c = this.config;
    const made = noGrad(() => tidy(() => {
      if (isSiglip(c)) return emptyTensor([0, c.hidden], this.dtype, this.device);
      const cls = this.param('cls').add(sliceRows(this.param('pos'), 0, 1));
      const rows = c.registers > 0 ? cat([cls, this.param('registers')], 1) : cls;
      return rows.reshape([rows.shape[1], c.hidden]).cast(this.dtype);
    }));
    this.prefixCache = escape(made);
    return made;
  }

  /**
   * The patch positions for a grid: the table as stored at the pre-training grid, else resized as transformers'
   * interpolate_pos_encoding does (bicubic, align_corners false, in f32; antialiased for DINOv2 with registers).
   * SigLIP2 NaFlex resizes its square table to every image's grid (resize_positional_embeddings: bilinear,
   * antialiased, align_corners false, in f32), its own size included. Cached per grid.
   */
  private positions(grid: [number, number]): Tensor {
    const key = grid.join('x');
    const hit = this.tables.get(key);
    if (hit) return hit;
    const c = this.config;
    const g = Math.floor(c.image / c.patch);
    const made = noGrad(() => tidy(() => {
      const pos = this.param('pos');
      const first = isSiglip(c) ? 0 : 1;
      const table = sliceRows(pos, first, first + g * g);
      const naflex = c.arch === 'siglip2';
      const sized = !naflex && grid[0] === g && grid[1] === g ? table
        : interpolate(table, { size: grid, mode: naflex ? 'bilinear' : 'bicubic', alignCorners: false, antialias: naflex || c.antialias, layout: 'NLC', grid: [g, g] });
      return sized.cast(this.dtype);
    }));
    this.tables.set(key, escape(made));
    return made;
  }

  /** Drops the cached position tables and prefix (after the parameters changed). */
  clearCaches(): void {
    for (const t of this.tables.values()) t.dispose();
    this.tables.clear();
    this.prefixCache?.dispose();
    this.prefixCache = null;
  }

  override dispose(): void {
    this.clearCaches();
    this.mean.dispose();
    this.std.dispose();
    super.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Loading: every parameter of the tree from one or more checkpoint tensors.

interface Source {
  /** Checkpoint keys whose values, in this order, make the parameter (q, k, v stacked along the rows). */
  keys: string[];
  /** Each key's shape in transformers' layout (a conv kernel, an nn.Embedding table, ...). */
  shapes: number[][];
  /** A 1-D tensor scaling the parameter's rows: DINOv2's LayerScale folded into the linear before it. */
  scale?: string;
  /** SigLIP2's patch Linear: columns in HF's (y, x, c) patch order, reordered to patchify's (c, y, x). */
  hwcPatch?: number;
}

/** Checkpoint tensors that the forward never reads and that are no cause for a warning. */
function expectedUnread(k: string): boolean {
  return /(^|\.)mask_token$/.test(k) || k.startsWith('text_model.') || /^(text_projection|logit_scale|logit_bias)(\.|$)/.test(k) || k.endsWith('position_ids');
}

/** Each parameter of m: the checkpoint tensors it is made of, in transformers' names and shapes. */
function sourceMap(c: HfVisionConfig, m: HfVisionModel): Map<string, Source> {
  const shapeOf = new Map(m.namedParameters().map(([k, p]) => [k, [...p.shape]]));
  const s = new Map<string, Source>();
  const D = c.hidden;
  const one = (k: string, key: string, scale?: string, shape = shapeOf.get(k)!) => s.set(k, { keys: [key], shapes: [shape], ...(scale ? { scale } : {}) });
  const both = (k: string, key: string, scale?: string) => {
    one(`${k}.weight`, `${key}.weight`, scale);
    one(`${k}.bias`, `${key}.bias`, scale);
  };
  const qkv = (k: string, parts: string[]) => {
    s.set(`${k}.weight`, { keys: parts.map((p) => `${p}.weight`), shapes: parts.map(() => [D, D]) });
    if (c.qkvBias) s.set(`${k}.bias`, { keys: parts.map((p) => `${p}.bias`), shapes: parts.map(() => [D]) });
  };
  const conv = [D, 3, c.patch, c.patch];
  const positions = shapeOf.get('pos')![1];
  const P = c.prefix;
  if (c.arch === 'dinov2') {
    one('patch_embed.weight', 'embeddings.patch_embeddings.projection.weight', undefined, conv);
    one('patch_embed.bias', 'embeddings.patch_embeddings.projection.bias');
    one('cls', 'embeddings.cls_token');
    if (c.registers) one('registers', 'embeddings.register_tokens');
    one('pos', 'embeddings.position_embeddings');
    for (let i = 0; i < c.layers; i++) {
      const L = `encoder.layer.${i}`;
      both(`blocks.${i}.norm1`, `${L}.norm1`);
      qkv(`blocks.${i}.qkv`, ['query', 'key', 'value'].map((p) => `${L}.attention.attention.${p}`));
      both(`blocks.${i}.proj`, `${L}.attention.output.dense`, `${L}.layer_scale1.lambda1`);
      both(`blocks.${i}.norm2`, `${L}.norm2`);
      both(`blocks.${i}.fc1`, `${L}.mlp.${c.swiglu ? 'weights_in' : 'fc1'}`);
      both(`blocks.${i}.fc2`, `${L}.mlp.${c.swiglu ? 'weights_out' : 'fc2'}`, `${L}.layer_scale2.lambda1`);
    }
    both('norm', 'layernorm');
  } else {
    if (c.arch === 'siglip2') s.set('patch_embed.weight', { keys: [`${P}embeddings.patch_embedding.weight`], shapes: [[D, 3 * c.patch * c.patch]], hwcPatch: c.patch });
    else one('patch_embed.weight', `${P}embeddings.patch_embedding.weight`, undefined, conv);
    if (isSiglip(c)) one('patch_embed.bias', `${P}embeddings.patch_embedding.bias`);
    else {
      one('cls', `${P}embeddings.class_embedding`, undefined, [D]);
      both('pre_norm', `${P}pre_layrnorm`);
    }
    one('pos', `${P}embeddings.position_embedding.weight`, undefined, [positions, D]);
    for (let i = 0; i < c.layers; i++) {
      const L = `${P}encoder.layers.${i}`;
      both(`blocks.${i}.norm1`, `${L}.layer_norm1`);
      qkv(`blocks.${i}.qkv`, ['q_proj', 'k_proj', 'v_proj'].map((p) => `${L}.self_attn.${p}`));
      both(`blocks.${i}.proj`, `${L}.self_attn.out_proj`);
      both(`blocks.${i}.norm2`, `${L}.layer_norm2`);
      both(`blocks.${i}.fc1`, `${L}.mlp.fc1`);
      both(`blocks.${i}.fc2`, `${L}.mlp.fc2`);
    }
    both('norm', `${P}post_layernorm`);
    if (m.projection) one('projection.weight', 'visual_projection.weight');
    if (m.head) {
      const H = `${P}head`;
      one('head.probe', `${H}.probe`, undefined, [1, 1, D]);
      one('head.qkv.weight', `${H}.attention.in_proj_weight`);
      one('head.qkv.bias', `${H}.attention.in_proj_bias`);
      both('head.proj', `${H}.attention.out_proj`);
      both('head.norm', `${H}.layernorm`);
      both('head.fc1', `${H}.mlp.fc1`);
      both('head.fc2', `${H}.mlp.fc2`);
    }
  }
  return s;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

async function fill(m: HfVisionModel, file: TensorReader, sources: Map<string, Source>): Promise<string[]> {
  const params = m.namedParameters();
  const needed = new Set<string>();
  for (const [k] of params) {
    const s = sources.get(k);
    if (!s) throw new Error(`internal: no checkpoint source for ${k}`);
    for (const key of [...s.keys, ...(s.scale ? [s.scale] : [])]) needed.add(key);
  }
  const missing = [...needed].filter((k) => !file.has(k));
  if (missing.length) throw new Error(`${file.file}: missing ${missing.length} tensor${missing.length > 1 ? 's' : ''}: ${missing.map((k) => `'${k}'`).join(', ')}`);
  for (const [k, p] of params) {
    const s = sources.get(k)!;
    const parts = [];
    // readFloat checks each tensor's shape against the config's, naming the tensor.
    for (let i = 0; i < s.keys.length; i++) parts.push((await file.readFloat(s.keys[i], s.shapes[i])).data);
    const total = parts.reduce((a, d) => a + d.length, 0);
    let data = parts.length === 1 ? parts[0] : new Float32Array(total);
    if (parts.length > 1) parts.reduce((at, d) => (data.set(d, at), at + d.length), 0);
    if (s.hwcPatch) data = hwcToChw(data, p.shape[0], s.hwcPatch);
    if (s.scale) {
      const rows = p.shape[0];
      const { data: g } = await file.readFloat(s.scale, [rows]);
      const width = total / rows;
      for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) data[r * width + j] *= g[r];
    }
    native.upload(p.native('load'), data, p.dtype);
    p.markModified();
  }
  return file.keys().filter((k) => !needed.has(k));
}

/** [rows, p·p·3] with columns (y, x, c) → the same rows with columns (c, y, x). */
function hwcToChw(data: Float32Array, rows: number, p: number): Float32Array {
  const out = new Float32Array(data.length);
  const width = 3 * p * p;
  for (let r = 0; r < rows; r++)
    for (let yx = 0; yx < p * p; yx++) for (let ch = 0; ch < 3; ch++) out[r * width + ch * p * p + yx] = data[r * width + yx * 3 + ch];
  return out;
}

export interface HfVisionLoadOptions {
  device?: Device;
  /** The weights' and activations' dtype (default f32); norms and the position table stay f32. */
  dtype?: 'f32' | 'bf16';
  /** Warnings (unread checkpoint tensors); default process.emitWarning. */
  onWarning?: (message: string) => void;
}

/**
 * dir's weights opened (model.safetensors, or the shards of model.safetensors.index.json), a model made for them and
 * filled by `fill`, which returns the checkpoint keys it left unread for one warning; the model is disposed on any
 * Error.
 */
export async function loadFromCheckpoint<M extends Module>(dir: string, onWarning: ((message: string) => void) | undefined,
  make: (file: TensorReader) => M, fill: (m: M, file: TensorReader) => Promise<string[]>): Promise<M> {
  const file = await openWeights(dir);
  let model: M | null = null;
  try {
    model = make(file);
    warnUnreadTensors(file.file, await fill(model, file), onWarning ?? ((msg) => process.emitWarning(msg, 'TeacherCheckpointWarning')));
    return model;
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    await file.close();
  }
}

/** Reads dir's weights (model.safetensors, or its shards) into a model of config c. */
export async function loadHfVisionWeights(dir: string, c: HfVisionConfig, opts: HfVisionLoadOptions): Promise<HfVisionModel> {
  return loadFromCheckpoint(dir, opts.onWarning, (file) => {
    // CLIPVisionModel has no projection: its summary is the normed cls token.
    const proj = c.arch === 'clip' && file.has('visual_projection.weight') ? file.entry('visual_projection.weight').shape : null;
    if (proj && proj.length !== 2) throw new Error(`${file.file}: 'visual_projection.weight' must be 2-D, got [${proj.join(', ')}]`);
    return new HfVisionModel(c, opts.dtype ?? 'f32', opts.device ?? 'cpu', proj ? proj[0] : null);
  }, async (model, file) => {
    const sources = sourceMap(c, model);
    // The one size a config can get wrong without the weights' shapes saying which: name it.
    const pos = sources.get('pos')!;
    const posKey = pos.keys[0];
    if (file.has(posKey) && numel(file.entry(posKey).shape) !== numel(pos.shapes[0]))
      throw new Error(`${file.file}: '${posKey}' has shape [${file.entry(posKey).shape.join(', ')}], but ${c.arch === 'siglip2' ? `num_patches ${(c.image / c.patch) ** 2}` : `image_size ${c.image} / patch_size ${c.patch}`} needs ${numel(pos.shapes[0]) / c.hidden} rows`);
    return (await fill(model, file, sources)).filter((k) => !expectedUnread(k));
  });
}

/** The encoder in dir (config.json, model.safetensors, optional preprocessor_config.json), in eval mode. */
export async function loadHfVisionModel(dir: string, opts: HfVisionLoadOptions = {}): Promise<HfVisionModel> {
  return loadHfVisionWeights(dir, readHfVisionConfig(dir), opts);
}

/** The transformers checkpoint a model of this tree reads: every key with its shape (benches write random ones). */
export function hfCheckpointLayout(m: HfVisionModel): Array<[string, number[]]> {
  const out = new Map<string, number[]>();
  const sources = sourceMap(m.config, m);
  for (const [k, p] of m.namedParameters()) {
    const s = sources.get(k)!;
    s.keys.forEach((key, i) => out.set(key, s.shapes[i]));
    if (s.scale) out.set(s.scale, [p.shape[0]]);
  }
  return [...out];
}
