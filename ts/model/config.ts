// What a RADIO checkpoint's config.json says about the network (spec §1.1, §1.5, §1.8, §2.1, §4.3, §5.2), parsed
// into plain numbers. Anything this port does not implement is an Error naming the field, never a silent guess.
import { native as addon } from '../native';

/** The standard timm ViTs RADIO builds on: [embed dim, depth, heads, MLP hidden (0: 4·D)]. */
const TIMM_VITS: Record<string, readonly [number, number, number, number]> = {
  tiny: [192, 12, 3, 0],
  small: [384, 12, 6, 0],
  base: [768, 12, 12, 0],
  large: [1024, 24, 16, 0],
  huge: [1280, 32, 16, 0],
  so400m: [1152, 27, 16, 4304],
};

/** ViTDet schedules of the released checkpoints (the HF config carries only the window size; RADIO's resource map the rest). */
const VITDET_DEFAULTS: Record<string, { numGlobal?: number; numWindowed?: number }> = {
  radio_v2: { numWindowed: 5 },
  'radio_v2.1': { numWindowed: 5 },
  'radio_v2.5-b': { numGlobal: 4 },
  'radio_v2.5-l': { numGlobal: 4 },
  'radio_v2.5-h': { numGlobal: 4 },
  'radio_v2.5-g': { numGlobal: 8 },
};

/**
 * RADIO's adaptor head variants (spec §4.3, adaptor_module_factory.py): v1 `MLP` (LN + ReLU), v2 `MLP2` (residual
 * LN + GELU blocks), and, for feature heads only, attn `AttnFDHead` (two timm blocks, then an MLP2).
 */
export type MlpVersion = 'v1' | 'v2' | 'attn';

export interface MlpHeadConfig {
  version: MlpVersion;
  inputDim: number;
  hiddenDim: number;
  /** The last Linear's width: for an upsampling head C·u², pixel-shuffled to C channels on a u× finer grid. */
  outputDim: number;
  /** num_inner of config.json; an attn head's MLP2 has none whatever it says (RADIO builds it with 0). */
  numInner: number;
  /** Feature heads of C-RADIOv3+: each patch's output is a u × u block of the u× finer feature map; 1 otherwise. */
  upsampleFactor: number;
}

export interface AdaptorConfig {
  name: string;
  /** The cls token this adaptor's summary head reads. */
  headIdx: number;
  /** False when the teacher of this name has `use_summary: false`: no loss reaches the summary head, so it does not train. */
  useSummary: boolean;
  summary: MlpHeadConfig;
  feature: MlpHeadConfig;
}

export interface VitDetConfig {
  windowSize: number;
  /** Which blocks attend in windows (the rest, and always the last, attend globally). */
  windowed: boolean[];
  /** The schedule's parameter (vitdet.py takes one of the two). */
  numGlobal?: number;
  numWindowed?: number;
}

export interface RadioConfig {
  version: string;
  timmModel: string;
  embedDim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  patchSize: number;
  /** G: the position embedding is a G × G grid. */
  cpeGrid: number;
  /**
   * RADIO's cpe_mode (spec §1.4): the table is larger than the arch's native img_size. True for every released
   * checkpoint; when false, eval and training take the table's top-left corner (resized only if still too small).
   */
  cpeMode: boolean;
  /** timm's drop_path rate (applied in training only). */
  dropPath: number;
  numCls: number;
  numRegisters: number;
  /** summary_idxs when the checkpoint has no buffer for it (§1.5). */
  defaultSummaryIdxs: number[];
  modelNorm: boolean;
  vitdet: VitDetConfig | null;
  adaptors: AdaptorConfig[];
  featureNormalizer: boolean;
  /** config.json has an inter_feature_normalizer_config (the -norm checkpoints). */
  interFeatureNormalizer: boolean;
  /** config.json's preferred_resolution [H, W], when it names one. */
  preferredResolution?: [number, number];
}

export interface VitDetOverride {
  windowSize?: number | null;
  numGlobal?: number;
  numWindowed?: number;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);

function posInt(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${where}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** Which blocks are windowed, following vitdet.py: switch to windows at i % period == 0, back at period − 1. */
export function vitdetSchedule(depth: number, opts: { numGlobal?: number; numWindowed?: number }): boolean[] {
  const period = opts.numWindowed !== undefined ? opts.numWindowed + 1 : Math.max(Math.floor(depth / opts.numGlobal!), 1);
  const windowed: boolean[] = [];
  let state = false;
  for (let i = 0; i < depth; i++) {
    if (i === depth - 1) state = false;
    else if (i % period === 0) state = true;
    else if (i % period === period - 1) state = false;
    windowed.push(state);
  }
  return windowed;
}

/**
 * The ViTDet settings of `windowSize` windows on a `depth`-block model, the schedule from numWindowed when given,
 * else numGlobal. Errors name `where` and the field (the vitdet_* names of config.json).
 */
export function vitdetConfig(where: string, depth: number, windowSize: number, opts: { numGlobal?: number; numWindowed?: number }): VitDetConfig {
  posInt(where, 'vitdet_window_size', windowSize);
  const { numGlobal, numWindowed } = opts;
  if (numWindowed !== undefined) {
    if (!Number.isInteger(numWindowed) || numWindowed < 0) throw new Error(`${where}: vitdet_num_windowed must be a non-negative integer, got ${JSON.stringify(numWindowed)}`);
    return { windowSize, windowed: vitdetSchedule(depth, { numWindowed }), numWindowed };
  }
  if (numGlobal === undefined) throw new Error(`${where}: ViTDet windows need vitdet_num_global or vitdet_num_windowed`);
  posInt(where, 'vitdet_num_global', numGlobal);
  return { windowSize, windowed: vitdetSchedule(depth, { numGlobal }), numGlobal };
}

function mlpVersion(where: string, name: string, v: unknown, feature: boolean): MlpVersion {
  if (v === 'v1' || v === 'v2' || (feature && v === 'attn')) return v;
  throw new Error(`${where}: ${name} ${JSON.stringify(v)} is not supported (${feature ? "'v1', 'v2' and 'attn'" : "summary heads are 'v1' or 'v2'"})`);
}

function parseHead(where: string, v: unknown, inputDim: number, version: MlpVersion, feature: boolean): MlpHeadConfig {
  if (!isObj(v)) throw new Error(`${where} is missing`);
  const head = {
    version,
    inputDim: posInt(where, 'input_dim', v.input_dim),
    hiddenDim: posInt(where, 'hidden_dim', v.hidden_dim),
    outputDim: posInt(where, 'output_dim', v.output_dim),
    numInner: v.num_inner === undefined ? 0 : (v.num_inner as number),
    upsampleFactor: v.upsample_factor === undefined || v.upsample_factor === null ? 1 : posInt(where, 'upsample_factor', v.upsample_factor),
  };
  if (!Number.isInteger(head.numInner) || head.numInner < 0) throw new Error(`${where}.num_inner must be a non-negative integer`);
  if (head.inputDim !== inputDim) throw new Error(`${where}.input_dim ${head.inputDim} does not match the backbone width ${inputDim}`);
  const u = head.upsampleFactor;
  if (u > 1) {
    // RADIO hands upsample_factor to feature heads only, and only its MLP2 uses it: v1 would take the keyword and
    // ignore it, and AttnFDHead.forward does not pass its MLP2 the image size it needs, so the reference fails.
    // Either way the checkpoint is not one RADIO runs as its config says.
    if (!feature) throw new Error(`${where}.upsample_factor ${u}: RADIO does not upsample summary heads`);
    if (version !== 'v2') throw new Error(`${where}.upsample_factor ${u}: only MLP v2 feature heads upsample (this head is ${version})`);
    if (head.outputDim % (u * u) !== 0) throw new Error(`${where}.output_dim ${head.outputDim} is not a multiple of upsample_factor² ${u * u}`);
  }
  return head;
}

/** Parses a HF RADIO config.json (already JSON.parse'd); `where` names the file in messages. */
export function parseRadioConfig(json: unknown, where: string, vitdetOverride: VitDetOverride = {}): RadioConfig {
  if (!isObj(json) || !isObj(json.args)) throw new Error(`${where}: not a RADIO config (no "args" object)`);
  const args = json.args;
  const timmModel = String(args.model ?? '');
  if (/^dino_v2_.*_student$/.test(timmModel) || String(json.version ?? '') === 'radio_v2.5-g')
    throw new Error(`${where}: ${JSON.stringify(json.version ?? timmModel)} (args.model ${JSON.stringify(timmModel)}) is radio_v2.5-g's DINOv2 architecture (DinoWrapper, keys model.inner.*), which this port does not support yet`);
  if (/^eradio/.test(timmModel))
    throw new Error(`${where}: args.model ${JSON.stringify(timmModel)} is E-RADIO (the hybrid CNN-transformer), which is not a ViT config: parse it with parseERadioConfig, load it with ERadioModel.load or loadRadio`);
  const m = /^vit_([a-z0-9]+)_patch(\d+)(?:_v2)?_\d+$/.exec(timmModel);
  if (!m || !(m[1] in TIMM_VITS)) throw new Error(`${where}: args.model ${JSON.stringify(timmModel)} is not a supported timm ViT (vit_{tiny,small,base,large,huge,so400m}_patch*_*)`);
  const kwargs = isObj(args.model_kwargs) ? args.model_kwargs : {};
  const [d0, depth0, heads0, hidden0] = TIMM_VITS[m[1]];
  const embedDim = posInt(where, 'model_kwargs.embed_dim', kwargs.embed_dim ?? d0);
  const depth = posInt(where, 'model_kwargs.depth', kwargs.depth ?? depth0);
  const heads = posInt(where, 'model_kwargs.num_heads', kwargs.num_heads ?? heads0);
  const mlpRatio = kwargs.mlp_ratio as number | undefined;
  const mlpHidden = mlpRatio !== undefined ? Math.floor(embedDim * mlpRatio) : hidden0 && kwargs.embed_dim === undefined ? hidden0 : 4 * embedDim;
  if (embedDim % heads !== 0) throw new Error(`${where}: num_heads ${heads} does not divide embed_dim ${embedDim}`);
  // The attention op's own answer (for f32; bf16 runs the same head dims), at load time rather than at the first forward.
  const unsupported = addon.attentionUnsupported(embedDim / heads, 'f32');
  if (unsupported) throw new Error(`${where}: model_kwargs embed_dim ${embedDim} / num_heads ${heads}: attention ${unsupported}`);
  const patchSize = posInt(where, 'patch_size', json.patch_size ?? Number(m[2]));
  const cpeMax = posInt(where, 'args.cpe_max_size', args.cpe_max_size);
  const cpeGrid = Math.ceil(cpeMax / patchSize);
  // The *_v2 archs (extra_timm_models.py) are built at img_size 518·16/14 = 592 whatever their name says.
  const imgSize = kwargs.img_size ?? (/_v2_\d+$/.test(timmModel) ? Math.floor((518 * 16) / 14) : Number(/_(\d+)$/.exec(timmModel)![1]));
  const native = Array.isArray(imgSize) ? imgSize : [imgSize, imgSize];
  if (native.length !== 2 || !native.every((v) => Number.isInteger(v) && (v as number) > 0))
    throw new Error(`${where}: model_kwargs.img_size must be a positive integer or [h, w], got ${JSON.stringify(imgSize)}`);
  const maxDims = Math.ceil((roundHalfEven(cpeMax / patchSize) * patchSize) / patchSize) * patchSize;
  const cpeMode = native.some((v) => v !== maxDims);
  const dropPath = args.drop_path === undefined || args.drop_path === null ? 0 : Number(args.drop_path);
  if (!(dropPath >= 0 && dropPath < 1)) throw new Error(`${where}: args.drop_path must be in [0, 1), got ${JSON.stringify(args.drop_path)}`);

  const teachers = Array.isArray(args.teachers) ? (args.teachers as Json[]) : [];
  const names = teachers.map((t) => String(t.name));
  const numCls = args.cls_token_per_teacher ? new Set(names).size : 1;
  let numRegisters = 0;
  if (args.cpe_num_registers !== undefined && args.cpe_num_registers !== null) numRegisters = args.cpe_num_registers as number;
  else if (args.register_multiple) numRegisters = (args.register_multiple as number) - (numCls % (args.register_multiple as number));
  const defaultSummaryIdxs = args.cls_token_per_teacher
    ? [...new Set(teachers.filter((t) => t.use_summary !== false).map((t) => names.indexOf(String(t.name))))].sort((a, b) => a - b)
    : [0];

  const windowSize = vitdetOverride.windowSize !== undefined ? vitdetOverride.windowSize : (json.vitdet_window_size as number | null | undefined);
  let vitdet: VitDetConfig | null = null;
  if (windowSize !== undefined && windowSize !== null) {
    const version = String(json.version ?? '');
    const numGlobal = vitdetOverride.numGlobal ?? (json.vitdet_num_global as number | undefined) ?? VITDET_DEFAULTS[version]?.numGlobal;
    const numWindowed = vitdetOverride.numWindowed ?? (json.vitdet_num_windowed as number | undefined) ?? VITDET_DEFAULTS[version]?.numWindowed;
    if (numGlobal === undefined && numWindowed === undefined)
      throw new Error(`${where}: vitdet_window_size is set but neither vitdet_num_global nor vitdet_num_windowed is known for version ${JSON.stringify(version)}`);
    vitdet = vitdetConfig(where, depth, windowSize, { numGlobal, numWindowed });
  }

  const adaptors = parseAdaptors(json, where, embedDim, numCls + numRegisters);
  const preferredResolution = parsePreferredResolution(json, where);
  // inter_feature_normalizer_config is not parsed: it applies only to intermediate-layer features, which this port
  // does not return (RadioModel.load warns that it is ignored).
  return {
    version: String(json.version ?? ''),
    timmModel, embedDim, depth, heads, mlpHidden, patchSize, cpeGrid, cpeMode, dropPath, numCls, numRegisters, defaultSummaryIdxs,
    modelNorm: args.model_norm === true,
    vitdet, adaptors,
    featureNormalizer: json.feature_normalizer_config !== undefined && json.feature_normalizer_config !== null,
    interFeatureNormalizer: json.inter_feature_normalizer_config !== undefined && json.inter_feature_normalizer_config !== null,
    ...(preferredResolution ? { preferredResolution } : {}),
  };
}

/**
 * The adaptor heads of config.json (adaptor_names, adaptor_configs, args.mlp_version / spatial_mlp_version), each
 * reading a backbone of width embedDim; head_idx must name one of the numPrefix summary tokens.
 */
export function parseAdaptors(json: Json, where: string, embedDim: number, numPrefix: number): AdaptorConfig[] {
  const args = json.args as Json;
  const teachers = Array.isArray(args.teachers) ? (args.teachers as Json[]) : [];
  // RADIO's HF loader (hf_model.py → GenericAdaptor(args, None, None, mlp_config)) takes the summary head's MLP
  // variant from args.mlp_version and the feature head's from args.spatial_mlp_version, falling back to the
  // summary's; per-teacher overrides are not read on that path. Without args.mlp_version (that loader would fail)
  // the heads are taken as v2 and RadioModel.load checks their keys against that: v1 keys are then an Error.
  const summaryVersion = args.mlp_version === undefined || args.mlp_version === null ? 'v2' : mlpVersion(where, 'args.mlp_version', args.mlp_version, false);
  const featureVersion = args.spatial_mlp_version === undefined || args.spatial_mlp_version === null
    ? summaryVersion
    : mlpVersion(where, 'args.spatial_mlp_version', args.spatial_mlp_version, true);
  const adaptorNames = Array.isArray(json.adaptor_names) ? (json.adaptor_names as string[]) : [];
  const adaptorConfigs = isObj(json.adaptor_configs) ? json.adaptor_configs : {};
  return adaptorNames.map((name): AdaptorConfig => {
    const c = adaptorConfigs[name];
    const at = `${where}: adaptor_configs.${name}`;
    if (!isObj(c)) throw new Error(`${at} is missing`);
    const headIdx = c.head_idx as number;
    if (!Number.isInteger(headIdx) || headIdx < 0 || headIdx >= numPrefix) throw new Error(`${at}.head_idx ${JSON.stringify(headIdx)} is out of range`);
    const teacher = teachers.find((t) => String(t.name) === name);
    return {
      name, headIdx, useSummary: teacher?.use_summary !== false,
      summary: parseHead(`${at}.summary`, c.summary, embedDim, summaryVersion, false),
      feature: parseHead(`${at}.feature`, c.feature, embedDim, featureVersion, true),
    };
  });
}

/** config.json's preferred_resolution [H, W], when it names one. */
export function parsePreferredResolution(json: Json, where: string): [number, number] | undefined {
  if (json.preferred_resolution !== undefined && json.preferred_resolution !== null) {
    const r = json.preferred_resolution;
    if (!Array.isArray(r) || r.length !== 2 || !r.every((v) => Number.isInteger(v) && v > 0))
      throw new Error(`${where}: preferred_resolution must be [height, width] in positive integers, got ${JSON.stringify(r)}`);
    return [r[0], r[1]];
  }
  return undefined;
}
