// What a Hugging Face vision encoder's config.json (and preprocessor_config.json) says, for the architectures a
// RADIO teacher can be: DINOv2 (Dinov2Model, Dinov2WithRegistersModel), CLIP vision (CLIPVisionModel[WithProjection],
// or the vision half of a CLIPModel), SigLIP vision (SiglipVisionModel, or the vision half of a SiglipModel) and SigLIP2
// NaFlex vision (Siglip2VisionModel, or the vision half of a Siglip2Model).
// Fields a config leaves out take the defaults of transformers' config classes, since save_pretrained writes only
// the values that differ from those for some of them.
import * as fs from 'fs';
import * as path from 'path';

export type HfArch = 'dinov2' | 'clip' | 'siglip' | 'siglip2';
/** transformers' hidden_act values that the encoders use: erf GELU, CLIP's quick GELU, SigLIP's tanh GELU. */
export type HfActivation = 'gelu' | 'quickGelu' | 'geluTanh';

export interface HfVisionConfig {
  arch: HfArch;
  /** config.json's model_type, as written. */
  modelType: string;
  hidden: number;
  layers: number;
  heads: number;
  /** The MLP's hidden width (for SwiGLU: the width of each half). */
  intermediate: number;
  patch: number;
  /**
   * The pre-training resolution (the position table's grid is image / patch on a side). SigLIP2 NaFlex has none: its
   * table is a square of num_patches rows, and image is that square's side in pixels, sqrt(num_patches) · patch.
   */
  image: number;
  /**
   * SigLIP2 NaFlex: the preprocessor's max_num_patches (default 256), the patch budget each image is resized to fit
   * with its aspect ratio kept; null for the fixed-resolution families.
   */
  maxNumPatches: number | null;
  eps: number;
  activation: HfActivation;
  /** DINOv2 with registers: register tokens after the cls token (no position embedding). */
  registers: number;
  /** DINOv2-g's SwiGLU feed-forward instead of fc1 → GELU → fc2. */
  swiglu: boolean;
  qkvBias: boolean;
  /** SigLIP and SigLIP2: the attention-pooling head gives the summary (vision_use_head). */
  poolingHead: boolean;
  /** Whether the position table is resized with antialiasing (transformers' Dinov2WithRegistersModel does). */
  antialias: boolean;
  /** Key prefix of the vision tower in model.safetensors ('' for DINOv2, 'vision_model.' for CLIP and SigLIP). */
  prefix: string;
  /** Per-channel normalisation of [0, 1] pixels, and the input size the preprocessor crops to. */
  mean: [number, number, number];
  std: [number, number, number];
  inputSize: [number, number];
}

type Json = Record<string, unknown>;

const ACTIVATIONS: Record<string, HfActivation> = {
  gelu: 'gelu',
  quick_gelu: 'quickGelu',
  gelu_pytorch_tanh: 'geluTanh',
  gelu_new: 'geluTanh',
};

// transformers' defaults per config class (Dinov2Config, CLIPVisionConfig, SiglipVisionConfig, Siglip2VisionConfig).
const DEFAULTS: Record<HfArch, Json> = {
  dinov2: { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, mlp_ratio: 4, hidden_act: 'gelu', layer_norm_eps: 1e-6, image_size: 224, patch_size: 14, qkv_bias: true, use_swiglu_ffn: false, num_register_tokens: 0 },
  clip: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 },
  siglip: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 16, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6, vision_use_head: true },
  siglip2: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_patches: 256, patch_size: 16, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6, vision_use_head: true },
};

/** Siglip2ImageProcessor's max_num_patches when preprocessor_config.json does not say. */
const SIGLIP2_MAX_NUM_PATCHES = 256;

// Normalisation when a folder has no preprocessor_config.json: each family's published statistics.
const STATS: Record<HfArch, { mean: [number, number, number]; std: [number, number, number] }> = {
  dinov2: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  clip: { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] },
  siglip: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  siglip2: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
};

const MODEL_TYPES: Record<string, { arch: HfArch; sub?: string; prefix: string }> = {
  dinov2: { arch: 'dinov2', prefix: '' },
  dinov2_with_registers: { arch: 'dinov2', prefix: '' },
  clip: { arch: 'clip', sub: 'vision_config', prefix: 'vision_model.' },
  clip_vision_model: { arch: 'clip', prefix: 'vision_model.' },
  siglip: { arch: 'siglip', sub: 'vision_config', prefix: 'vision_model.' },
  siglip_vision_model: { arch: 'siglip', prefix: 'vision_model.' },
  // Siglip2Model keeps its vision tower under vision_model too.
  siglip2: { arch: 'siglip2', sub: 'vision_config', prefix: 'vision_model.' },
  siglip2_vision_model: { arch: 'siglip2', prefix: 'vision_model.' },
};

function readJson(file: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read it (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Json;
}

/** The [h, w] a preprocessor crops or resizes to, or null when it does not say. */
function preprocessorSize(p: Json): [number, number] | null {
  for (const key of ['crop_size', 'size']) {
    const v = p[key];
    if (typeof v === 'number') return [v, v];
    if (v && typeof v === 'object') {
      const o = v as Json;
      if (typeof o.height === 'number' && typeof o.width === 'number') return [o.height, o.width];
      if (key === 'crop_size' && typeof o.shortest_edge === 'number') return [o.shortest_edge, o.shortest_edge];
    }
  }
  return null;
}

function triple(file: string, key: string, v: unknown): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw new Error(`${file}: ${key} must be three numbers, got ${JSON.stringify(v)}`);
  return [v[0], v[1], v[2]];
}

/** v as a SigLIP2 patch budget (an integer, at least one patch), else an Error naming what. */
export function checkMaxNumPatches(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${what} must be an integer of at least 1 (patches per image), got ${JSON.stringify(v)}`);
  return v;
}

/** SAM's model types (SamModel, SamVisionModel): their encoder is read by sam.ts, not by this config. */
export const SAM_MODEL_TYPES: readonly string[] = ['sam', 'sam_vision_model'];

/** Whether dir holds a Hugging Face vision encoder this package runs as a teacher (by config.json's model_type). */
export function isHfVisionFolder(dir: string): boolean {
  try {
    const c = readJson(path.join(dir, 'config.json'));
    return typeof c.model_type === 'string' && (c.model_type in MODEL_TYPES || SAM_MODEL_TYPES.includes(c.model_type));
  } catch {
    return false;
  }
}

/** dir's config.json (+ preprocessor_config.json when present), each problem an Error naming the file and key. */
export function readHfVisionConfig(dir: string): HfVisionConfig {
  const file = path.join(dir, 'config.json');
  const top = readJson(file);
  const type = top.model_type;
  const known = typeof type === 'string' ? MODEL_TYPES[type] : undefined;
  if (!known) throw new Error(`${file}: model_type ${JSON.stringify(type)} is not a supported teacher (expected one of ${Object.keys(MODEL_TYPES).join(', ')})`);
  const where = known.sub ? `${file}: ${known.sub}` : file;
  const own = known.sub ? top[known.sub] : top;
  if (!own || typeof own !== 'object') throw new Error(`${file}: ${known.sub} must be an object`);
  const c = { ...DEFAULTS[known.arch], ...(own as Json) };
  const int = (key: string): number => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${where}.${key} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  if (hidden % heads !== 0) throw new Error(`${where}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  const act = c.hidden_act;
  const activation = typeof act === 'string' ? ACTIVATIONS[act] : undefined;
  if (!activation) throw new Error(`${where}.hidden_act ${JSON.stringify(act)} is not supported (expected one of ${Object.keys(ACTIVATIONS).join(', ')})`);
  const eps = c.layer_norm_eps;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`${where}.layer_norm_eps must be a positive number, got ${JSON.stringify(eps)}`);
  if ((c.num_channels ?? 3) !== 3) throw new Error(`${where}.num_channels must be 3 (RGB), got ${JSON.stringify(c.num_channels)}`);
  let intermediate: number;
  let swiglu = false;
  if (known.arch === 'dinov2') {
    const ratio = c.mlp_ratio;
    if (typeof ratio !== 'number' || !(ratio > 0)) throw new Error(`${where}.mlp_ratio must be a positive number, got ${JSON.stringify(ratio)}`);
    swiglu = c.use_swiglu_ffn === true;
    const plain = Math.trunc(hidden * ratio);
    // Dinov2SwiGLUFFN's width: two thirds of the plain MLP's, rounded up to a multiple of 8.
    intermediate = swiglu ? Math.trunc((Math.trunc((plain * 2) / 3) + 7) / 8) * 8 : plain;
  } else {
    intermediate = int('intermediate_size');
  }
  const patch = int('patch_size');
  let image: number;
  if (known.arch === 'siglip2') {
    // Siglip2VisionEmbeddings reshapes the table to int(sqrt(num_patches)) on a side, which only a square fills.
    const n = int('num_patches');
    const side = Math.round(Math.sqrt(n));
    if (side * side !== n) throw new Error(`${where}.num_patches must be a square (the position table is side x side), got ${n}`);
    image = side * patch;
  } else {
    image = int('image_size');
  }
  const registers = type === 'dinov2_with_registers' ? int('num_register_tokens') : 0;

  const stats = STATS[known.arch];
  let mean = stats.mean;
  let std = stats.std;
  let inputSize: [number, number] = [image, image];
  let maxNumPatches = known.arch === 'siglip2' ? SIGLIP2_MAX_NUM_PATCHES : null;
  const preFile = path.join(dir, 'preprocessor_config.json');
  if (fs.existsSync(preFile)) {
    const pre = readJson(preFile);
    if (pre.image_mean !== undefined) mean = triple(preFile, 'image_mean', pre.image_mean);
    if (pre.image_std !== undefined) std = triple(preFile, 'image_std', pre.image_std);
    inputSize = preprocessorSize(pre) ?? inputSize;
    if (known.arch === 'siglip2') {
      if (pre.max_num_patches !== undefined) maxNumPatches = checkMaxNumPatches(`${preFile}: max_num_patches`, pre.max_num_patches);
      // The processor cuts patches of its own patch_size; one that is not the model's would feed it other rows.
      if (pre.patch_size !== undefined && pre.patch_size !== patch)
        throw new Error(`${preFile}: patch_size ${JSON.stringify(pre.patch_size)} is not config.json's patch_size ${patch}`);
    }
  }
  return {
    arch: known.arch,
    modelType: type as string,
    hidden,
    layers: int('num_hidden_layers'),
    heads,
    intermediate,
    patch,
    image,
    maxNumPatches,
    eps,
    activation,
    registers,
    swiglu,
    qkvBias: known.arch === 'dinov2' ? c.qkv_bias !== false : true,
    poolingHead: (known.arch === 'siglip' || known.arch === 'siglip2') && c.vision_use_head !== false,
    antialias: type === 'dinov2_with_registers',
    prefix: known.prefix,
    mean,
    std,
    inputSize,
  };
}
