// A freshly initialised student: a RADIO checkpoint folder (config.json + model.safetensors in the Hugging Face
// layout RadioModel.load and the reference implementation read) with timm's ViT initialisation for the backbone
// and PyTorch's default Linear initialisation for the adaptor heads.
import * as fs from 'fs';
import * as path from 'path';

import { writeSafetensors } from '../io/safetensors';
import type { SafetensorsWriteEntry } from '../io/safetensors';
import { parseRadioConfig, RadioConfig } from '../model/config';
import { fillLayout } from '../model/layout';
import { Rng } from './rng';

export interface StudentAdaptorSpec {
  /** The teacher head this adaptor learns (clip, dino_v2, sam, ...). */
  name: string;
  summaryDim: number;
  featureDim: number;
  /** False for a teacher without a summary target (SAM): its summary head stays frozen. Default true. */
  useSummary?: boolean;
  /** Default: the largest output dim over all adaptors, as the paper's heads (spec §4.3). */
  hiddenDim?: number;
  /** Residual blocks of the MLP v2 heads; default 1. */
  numInner?: number;
}

export interface StudentSpec {
  embedDim: number;
  depth: number;
  heads: number;
  /** Default 16. */
  patchSize?: number;
  /** Side of the CPE position table in pixels (cpe_max_size); default 256. */
  cpeMaxSize?: number;
  /** MLP hidden = mlpRatio·D; default 4. */
  mlpRatio?: number;
  /** cls + registers are padded to a multiple of this (RADIO's register_multiple); default 8. */
  registerMultiple?: number;
  adaptors: StudentAdaptorSpec[];
}

/** The config.json RADIO writes for such a student (the fields RadioModel.load and hf_model.RADIOModel read). */
export function studentConfigJson(spec: StudentSpec): Record<string, unknown> {
  const where = 'createStudent';
  const posInt = (name: string, v: unknown) => {
    if (!Number.isInteger(v) || (v as number) <= 0) throw new Error(`${where}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const D = posInt('embedDim', spec.embedDim);
  const P = posInt('patchSize', spec.patchSize ?? 16);
  if (!Array.isArray(spec.adaptors)) throw new Error(`${where}: adaptors must be an array`);
  const names = new Set<string>();
  for (const [i, a] of spec.adaptors.entries()) {
    if (typeof a.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(a.name)) throw new Error(`${where}: adaptors[${i}].name must be an identifier, got ${JSON.stringify(a.name)}`);
    if (a.name === 'backbone') throw new Error(`${where}: adaptors[${i}].name 'backbone' is reserved for the backbone output`);
    if (names.has(a.name)) throw new Error(`${where}: adaptors[${i}].name ${JSON.stringify(a.name)} is given twice`);
    names.add(a.name);
    posInt(`adaptors[${i}].summaryDim`, a.summaryDim);
    posInt(`adaptors[${i}].featureDim`, a.featureDim);
  }
  const widest = Math.max(1, ...spec.adaptors.map((a) => Math.max(a.summaryDim, a.featureDim)));
  const head = (a: StudentAdaptorSpec, out: number) => ({ input_dim: D, hidden_dim: a.hiddenDim ?? widest, output_dim: out, num_inner: a.numInner ?? 1 });
  return {
    architectures: ['RADIOModel'],
    model_type: 'radio',
    args: {
      model: `vit_base_patch${P}_224`,
      in_chans: null,
      input_size: null,
      pretrained: false,
      num_classes: 0,
      drop: 0.0,
      drop_path: null,
      drop_block: null,
      gp: null,
      bn_momentum: null,
      bn_eps: null,
      torchscript: false,
      initial_checkpoint: '',
      model_kwargs: { embed_dim: D, depth: posInt('depth', spec.depth), num_heads: posInt('heads', spec.heads), mlp_ratio: spec.mlpRatio ?? 4 },
      cpe_max_size: posInt('cpeMaxSize', spec.cpeMaxSize ?? 256),
      teachers: spec.adaptors.map((a) => ({ name: a.name, type: 'generic', ...(a.useSummary === false ? { use_summary: false } : {}) })),
      cls_token_per_teacher: true,
      register_multiple: posInt('registerMultiple', spec.registerMultiple ?? 8),
      mlp_version: 'v2',
      model_norm: false,
      spectral_reparam: false,
      dtype: 'float32',
    },
    version: 'radio_v2.5-b',
    patch_size: P,
    max_resolution: 2048,
    preferred_resolution: [spec.cpeMaxSize ?? 256, spec.cpeMaxSize ?? 256],
    adaptor_names: spec.adaptors.map((a) => a.name),
    adaptor_configs: Object.fromEntries(spec.adaptors.map((a, i) => [a.name, { summary: head(a, a.summaryDim), feature: head(a, a.featureDim), head_idx: i }])),
    vitdet_window_size: null,
    feature_normalizer_config: null,
    inter_feature_normalizer_config: null,
  };
}

/**
 * A student spec with the adaptor names, output dims and head shapes of a teacher checkpoint's heads (what it will
 * learn). The student's heads are plain MLP v2 on its patch grid: an upsampling teacher head's C·u² outputs are C
 * channels on a finer grid, so the student's feature head has C outputs and the loss aligns the grids.
 */
export function studentSpecFor(teacher: RadioConfig, backbone: { embedDim: number; depth: number; heads: number; patchSize?: number; cpeMaxSize?: number }): StudentSpec {
  return {
    ...backbone,
    adaptors: teacher.adaptors.map((a) => ({
      name: a.name,
      summaryDim: a.summary.outputDim,
      featureDim: a.feature.outputDim / a.feature.upsampleFactor ** 2,
      useSummary: a.useSummary,
      hiddenDim: a.feature.hiddenDim,
      numInner: a.feature.numInner,
    })),
  };
}

/** Every tensor of the student, initialised from seed: timm's ViT init for the backbone, torch's for the heads. */
export function initStudentTensors(config: RadioConfig, seed: number): Record<string, SafetensorsWriteEntry> {
  const rng = new Rng(seed);
  // timm's trunc_normal_(std=0.02) truncates at ±2 (absolute), which at std 0.02 never binds: a plain normal.
  const normal = (std: number) => () => std * rng.normal();
  const uniform = (bound: number) => () => bound * (2 * rng.next() - 1);
  const constant = (v: number) => () => v;
  return fillLayout(config, (e) => {
    switch (e.role) {
      case 'patch_embed':
        return uniform(1 / Math.sqrt(e.fanIn));
      case 'pos_embed':
      case 'prefix_tokens':
        return normal(0.02);
      case 'norm.weight':
        return constant(1);
      case 'norm.bias':
        return constant(0);
      case 'linear.weight':
        return e.part === 'backbone' ? normal(0.02) : uniform(1 / Math.sqrt(e.fanIn));
      case 'linear.bias':
        return e.part === 'backbone' ? constant(0) : uniform(1 / Math.sqrt(e.fanIn));
    }
  }, 'createStudent');
}

/** Writes a randomly initialised student checkpoint into dir (created); returns its parsed config. */
export async function createStudent(dir: string, spec: StudentSpec, opts: { seed?: number } = {}): Promise<RadioConfig> {
  const json = studentConfigJson(spec);
  const config = parseRadioConfig(json, 'createStudent');
  await fs.promises.mkdir(dir, { recursive: true });
  const configPath = path.join(dir, 'config.json');
  const tmp = `${configPath}.tmp-${process.pid}`;
  await fs.promises.writeFile(tmp, `${JSON.stringify(json, null, 1)}\n`);
  await fs.promises.rename(tmp, configPath);
  await writeSafetensors(path.join(dir, 'model.safetensors'), initStudentTensors(config, opts.seed ?? 0), { format: 'pt' });
  return config;
}
