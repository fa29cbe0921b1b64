// What an E-RADIO checkpoint's config.json says (spec §2.2, radio/eradio_model.py): the registered architecture
// named by args.model, the few model_kwargs the reference lets a checkpoint change, the window size it runs at and
// the adaptor heads. Anything the port does not build is an Error naming the field.
import { native as addon } from '../../native';
import { AdaptorConfig, parseAdaptors, parsePreferredResolution } from '../config';

/** One registered E-RADIO architecture (the keyword arguments its timm factory passes to ERADIO). */
export interface ERadioArch {
  /** Stage-0 width; stage i has dim·2^i channels. */
  dim: number;
  /** The stem's intermediate width. */
  inDim: number;
  depths: [number, number, number, number];
  heads: [number, number, number, number];
  /** Window size of the two transformer stages at construction (the CPB's "pretrained" window). */
  windowSize: number;
  /** conv_base: 2×2 stride-2 conv down / transposed conv up in the sub-sampled block; else avg-pool + 1×1 Conv2d_BN, nearest-up + 1×1 Conv2d_BN. */
  convBase: boolean;
  /** Channels of the high-resolution neck's output (the dense features). */
  neckDim: number;
  /** First stage feeding the neck: features come out at H / (4·2^neckStart). */
  neckStart: number;
  cpbHidden: number;
  /** conv_groups_ratio: the sr=1 blocks' pre-conv has max(1, int(ratio·C)) groups. */
  convGroupsRatio: number;
  qkvBias: boolean;
}

const LARGE: ERadioArch = {
  dim: 192, inDim: 64, depths: [3, 3, 5, 5], heads: [2, 4, 8, 16], windowSize: 16, convBase: true, neckDim: 1536,
  neckStart: 2, cpbHidden: 512, convGroupsRatio: 0, qkvBias: false,
};
const XXXTINY: ERadioArch = { ...LARGE, dim: 32, inDim: 32, depths: [1, 3, 4, 5], neckDim: 256 };
const XXXTINY_8X: ERadioArch = { ...XXXTINY, convBase: false, cpbHidden: 64, convGroupsRatio: 1 };

/** The registered names of radio/eradio_model.py and the kwargs each factory fixes (a model_kwargs entry for one of them is a TypeError in the reference). */
const ARCHS: Record<string, { arch: ERadioArch; fixed: string[] }> = {
  eradio: { arch: LARGE, fixed: [] },
  eradio_large_fullres_ws16: { arch: LARGE, fixed: [] },
  eradio_xxxtiny: { arch: XXXTINY, fixed: [] },
  eradio_xxxtiny_8x_ws12: { arch: { ...XXXTINY_8X, windowSize: 12 }, fixed: ['cpb_mlp_hidden', 'conv_groups_ratio'] },
  eradio_xxxtiny_8x_ws16: { arch: { ...XXXTINY_8X, neckStart: 1 }, fixed: ['cpb_mlp_hidden', 'conv_groups_ratio'] },
};

/** Every ERADIO keyword a factory leaves open, with the value the port builds: a checkpoint may restate it, or change those marked changeable. */
const OPEN_KWARGS: Record<string, { value: unknown; changeable?: boolean }> = {
  return_full_features: { value: true },
  qkv_bias: { value: false, changeable: true },
  cpb_mlp_hidden: { value: undefined, changeable: true },
  conv_groups_ratio: { value: undefined, changeable: true },
  qk_scale: { value: null },
  layer_scale: { value: null },
  layer_scale_conv: { value: null },
  use_shift: { value: false },
  multi_query: { value: false },
  layer_norm_last: { value: false },
  in_chans: { value: 3 },
  num_classes: { value: 0, changeable: true },
  drop_path_rate: { value: 0 },
  verbose: { value: false, changeable: true },
};

export interface ERadioConfig {
  kind: 'eradio';
  version: string;
  timmModel: string;
  arch: ERadioArch;
  /** The window size the transformer stages run at: config.json's eradio_window_size, else the architecture's. */
  windowSize: number;
  /** Pixels per feature row/column: 4·2^neckStart. */
  featureStride: number;
  adaptors: AdaptorConfig[];
  preferredResolution?: [number, number];
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);

export function isERadioConfig(json: unknown): boolean {
  return isObj(json) && isObj(json.args) && /^eradio/.test(String(json.args.model ?? ''));
}

export function checkWindowSize(where: string, ws: unknown): number {
  if (typeof ws !== 'number' || !Number.isInteger(ws) || ws < 1) throw new Error(`${where}: the window size must be a positive integer, got ${JSON.stringify(ws)}`);
  return ws;
}

/** Parses an E-RADIO config.json (already JSON.parse'd); `where` names the file in messages. */
export function parseERadioConfig(json: unknown, where: string): ERadioConfig {
  if (!isObj(json) || !isObj(json.args)) throw new Error(`${where}: not a RADIO config (no "args" object)`);
  const args = json.args;
  const timmModel = String(args.model ?? '');
  const entry = ARCHS[timmModel];
  if (!entry) throw new Error(`${where}: args.model ${JSON.stringify(timmModel)} is not a registered E-RADIO architecture (${Object.keys(ARCHS).join(', ')})`);
  const arch = { ...entry.arch, depths: [...entry.arch.depths] as ERadioArch['depths'] };
  const kwargs = isObj(args.model_kwargs) ? args.model_kwargs : {};
  if (kwargs.return_full_features !== true)
    throw new Error(`${where}: args.model_kwargs.return_full_features must be true for E-RADIO (without it the model has no dense features)`);
  for (const [k, v] of Object.entries(kwargs)) {
    if (entry.fixed.includes(k)) throw new Error(`${where}: args.model_kwargs.${k}: ${timmModel} fixes it (the reference would fail with a duplicate keyword)`);
    const open = OPEN_KWARGS[k];
    if (!open) throw new Error(`${where}: args.model_kwargs.${k} is not supported for E-RADIO`);
    if (open.changeable) continue;
    const same = open.value === v || (open.value === null && v === null) || (k === 'drop_path_rate' && v === 0);
    if (!same) throw new Error(`${where}: args.model_kwargs.${k} = ${JSON.stringify(v)} is not supported (only ${JSON.stringify(open.value)})`);
  }
  if (kwargs.qkv_bias !== undefined) arch.qkvBias = kwargs.qkv_bias === true;
  if (kwargs.cpb_mlp_hidden !== undefined) {
    const h = kwargs.cpb_mlp_hidden;
    if (typeof h !== 'number' || !Number.isInteger(h) || h < 1) throw new Error(`${where}: args.model_kwargs.cpb_mlp_hidden must be a positive integer`);
    arch.cpbHidden = h;
  }
  if (kwargs.conv_groups_ratio !== undefined) {
    const r = kwargs.conv_groups_ratio;
    if (typeof r !== 'number' || !(r >= 0)) throw new Error(`${where}: args.model_kwargs.conv_groups_ratio ${JSON.stringify(r)} is not supported (a ratio >= 0; -1, no pre-conv, is not)`);
    arch.convGroupsRatio = r;
  }
  for (let i = 2; i < 4; i++) {
    const C = arch.dim * 2 ** i;
    const unsupported = addon.attentionUnsupported(C / arch.heads[i], 'f32');
    if (unsupported) throw new Error(`${where}: stage ${i} (${C} channels, ${arch.heads[i]} heads): attention ${unsupported}`);
  }
  const ws = json.eradio_window_size === undefined || json.eradio_window_size === null ? arch.windowSize : checkWindowSize(`${where}: eradio_window_size`, json.eradio_window_size);
  const preferredResolution = parsePreferredResolution(json, where);
  return {
    kind: 'eradio',
    version: String(json.version ?? ''),
    timmModel, arch, windowSize: ws,
    featureStride: 4 * 2 ** arch.neckStart,
    // No cls tokens: every adaptor reads the one summary (the mean of the dense features), whatever head_idx says.
    adaptors: parseAdaptors(json, where, arch.neckDim, Number.MAX_SAFE_INTEGER),
    ...(preferredResolution ? { preferredResolution } : {}),
  };
}

/**
 * The reference's set_optimal_window_size: the largest divisor of min(H, W) // 32 that is at most maxWindow
 * (224 → 7, 256 → 8, 384 → 12, 512 → 16).
 */
export function optimalWindowSize(resolution: number | readonly [number, number], maxWindow = 16): number {
  const side = typeof resolution === 'number' ? resolution : Math.min(resolution[0], resolution[1]);
  if (!Number.isInteger(side) || side < 32) throw new Error(`optimalWindowSize: resolution must be an integer >= 32, got ${JSON.stringify(resolution)}`);
  if (!Number.isInteger(maxWindow) || maxWindow < 1) throw new Error(`optimalWindowSize: maxWindow must be a positive integer, got ${maxWindow}`);
  const n = Math.floor(side / 32);
  let best = 1;
  for (let d = 1; d <= Math.min(n, maxWindow); d++) if (n % d === 0) best = d;
  return best;
}
