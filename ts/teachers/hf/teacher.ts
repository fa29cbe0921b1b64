// A Hugging Face vision encoder as a distillation teacher: DINOv2, CLIP, SigLIP or SigLIP2 NaFlex from the folder (config.json,
// model.safetensors or its shards, preprocessor_config.json) that transformers' save_pretrained writes, run on this package's
// kernels in the trainer's process.
import * as fs from 'fs';
import * as path from 'path';

import { readShardIndex, shardIndexName } from '../../io/safetensors';
import { downloadCheckpoint, HubDownloadOptions } from '../../model/hub';
import { permute } from '../../ops/layout';
import type { Tensor } from '../../tensor';
import type { Teacher, TeacherBatch, TeacherTargets } from '../types';
import { checkMaxNumPatches, HfArch, readHfVisionConfig, SAM_MODEL_TYPES } from './config';
import { HfVisionLoadOptions, HfVisionModel, HfVisionOutput, loadHfVisionWeights } from './model';
import { loadSamVisionModel, readSamConfig, SamVisionModel, SamVisionOutput } from './sam';

export interface HfTeacherOptions extends HfVisionLoadOptions {
  /** Name in logs and metrics; default by family: 'dino_v2', 'clip', 'siglip', 'siglip2' (RADIO's teacher names). */
  name?: string;
  /** The student head the targets train; default the name. */
  head?: string;
  /**
   * [h, w] in pixels, at least the patch size: the size the trainer resizes the batch to for this teacher (a
   * remainder past the last whole patch is not read, as the checkpoint's patch conv does not read it).
   * Default: the preprocessor's crop size (else the config's image_size); for SigLIP2 NaFlex null, the student's own
   * resolution, which the teacher then resizes to fit maxNumPatches as its processor does. null: the student's own.
   */
  inputSize?: [number, number] | null;
  /**
   * SigLIP2 NaFlex only: the patch budget (an integer ≥ 1) each batch is resized to fit, keeping its aspect ratio
   * (the processor's get_image_size_for_max_num_patches, then a bilinear antialiased resize to whole patches).
   * Default: preprocessor_config.json's max_num_patches, else 256.
   */
  maxNumPatches?: number;
  /** Whether the targets include the summary (default: whenever the encoder has one). */
  summary?: boolean;
  /** SAM only: 'encoder' (default, the tokens before the neck, as RADIO distils them) or 'neck' (after it). */
  features?: 'encoder' | 'neck';
}

const DEFAULT_NAMES: Record<HfArch | 'sam', string> = { dinov2: 'dino_v2', clip: 'clip', siglip: 'siglip', siglip2: 'siglip2', sam: 'sam' };

/** The encoder a teacher runs: a ViT family (DINOv2, CLIP, SigLIP, SigLIP2 NaFlex) or SAM's image encoder. */
export type HfEncoder = HfVisionModel | SamVisionModel;

/** What an encoder's forward returns. */
export type HfEncoderOutput = HfVisionOutput | SamVisionOutput;

/** Disposes every tensor of an encoder's output. */
export function disposeEncoderOutput(o: HfEncoderOutput): void {
  o.summary?.dispose();
  o.features.dispose();
  (o as Partial<SamVisionOutput>).neck?.dispose();
}

/** The encoder in dir, by config.json's model_type: SAM's image encoder, else a DINOv2 / CLIP / SigLIP tower. */
export async function loadTeacherEncoder(dir: string, opts: HfVisionLoadOptions = {}): Promise<HfEncoder> {
  if (SAM_MODEL_TYPES.includes(modelTypeOf(dir) ?? '')) return loadSamVisionModel(dir, opts);
  return loadHfVisionWeights(dir, readHfVisionConfig(dir), opts);
}

/** The input size a teacher in dir takes by default: the preprocessor's crop (else image_size); SAM's image_size. */
export function defaultInputSize(dir: string): [number, number] {
  if (SAM_MODEL_TYPES.includes(modelTypeOf(dir) ?? '')) {
    const { image } = readSamConfig(dir);
    return [image, image];
  }
  return readHfVisionConfig(dir).inputSize;
}

function modelTypeOf(dir: string): string | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).model_type;
  } catch {
    return undefined;
  }
}

export class HfTeacher implements Teacher {
  readonly needsImages = true;
  readonly heads: Record<string, { summaryDim: number | null; featureDim: number }>;

  private constructor(
    readonly name: string,
    readonly model: HfEncoder,
    readonly inputSize: [number, number] | null,
    private readonly head: string,
    private readonly useSummary: boolean,
    private readonly neck: boolean,
    private readonly maxNumPatches: number | undefined,
  ) {
    const featureDim = model instanceof SamVisionModel && neck ? model.config.outChannels : model.config.hidden;
    this.heads = { [head]: { summaryDim: useSummary ? model.summaryDim : null, featureDim } };
  }

  /** Loads the encoder in dir (a transformers save_pretrained folder) in eval mode. */
  static async load(dir: string, opts: HfTeacherOptions = {}): Promise<HfTeacher> {
    const op = 'HfTeacher.load';
    if (typeof dir !== 'string' || dir === '') throw new Error(`${op}: dir must be a folder path, got ${JSON.stringify(dir)}`);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${op}: ${dir} is not a folder (expected config.json and model.safetensors)`);
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`${op}: dtype must be 'f32' or 'bf16', got ${JSON.stringify(dtype)}`);
    const sam = SAM_MODEL_TYPES.includes(modelTypeOf(dir) ?? '');
    if (opts.features !== undefined && !sam) throw new Error(`${op} ${dir}: the features option is for SAM's encoder (encoder or neck)`);
    if (opts.features !== undefined && opts.features !== 'encoder' && opts.features !== 'neck')
      throw new Error(`${op} ${dir}: features must be 'encoder' or 'neck', got ${JSON.stringify(opts.features)}`);
    // Read the config (every problem named) before any weights.
    const config = sam ? null : readHfVisionConfig(dir);
    const samConfig = sam ? readSamConfig(dir) : null;
    const patch = config?.patch ?? samConfig!.patch;
    const naflex = config?.arch === 'siglip2';
    if (opts.maxNumPatches !== undefined && !naflex) throw new Error(`${op} ${dir}: maxNumPatches is for SigLIP2 NaFlex encoders (model_type siglip2, siglip2_vision_model)`);
    const maxNumPatches = opts.maxNumPatches === undefined ? undefined : checkMaxNumPatches(`${op} ${dir}: maxNumPatches`, opts.maxNumPatches);
    const size = opts.inputSize === undefined ? (naflex ? null : defaultInputSize(dir)) : opts.inputSize;
    if (size !== null) {
      if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v >= patch))
        throw new Error(`${op} ${dir}: inputSize must be [h, w] in pixels, each at least the patch size ${patch}, got ${JSON.stringify(size)}`);
      if (samConfig && (size[0] !== samConfig.image || size[1] !== samConfig.image))
        throw new Error(`${op} ${dir}: SAM's encoder takes ${samConfig.image}x${samConfig.image} inputs (its position table is not resized), got inputSize ${JSON.stringify(size)}`);
    }
    const model: HfEncoder = config ? await loadHfVisionWeights(dir, config, { ...opts, dtype }) : await loadSamVisionModel(dir, { ...opts, dtype });
    const hasSummary = model.summaryDim !== null;
    if (opts.summary === true && !hasSummary) {
      model.dispose();
      throw new Error(`${op} ${dir}: this ${model.config.modelType} encoder has no summary output`);
    }
    const name = opts.name ?? DEFAULT_NAMES[config?.arch ?? 'sam'];
    return new HfTeacher(name, model, size ? [size[0], size[1]] : null, opts.head ?? name, opts.summary ?? hasSummary, opts.features === 'neck', maxNumPatches);
  }

  /**
   * A folder, or a Hugging Face hub repo id ("facebook/dinov2-giant") fetched into the hub cache (never at install
   * time; offline: the cache only).
   */
  static async fromPretrained(dirOrRepo: string, opts: HfTeacherOptions & { hub?: HubDownloadOptions } = {}): Promise<HfTeacher> {
    const { hub, ...load } = opts;
    return HfTeacher.load(await resolveFolder(dirOrRepo, hub), load);
  }

  async forward(images: Tensor, _batch: TeacherBatch): Promise<TeacherTargets> {
    if (this.model instanceof SamVisionModel) {
      // SAM has no summary; its targets are the tokens before the neck, or the neck's [B, C, h, w] map as tokens.
      const o = this.model.forward(images);
      let features = o.features;
      if (this.neck) {
        features.dispose();
        const [B, C, h, w] = o.neck.shape;
        features = permute(o.neck, [0, 2, 3, 1]).reshape([B, h * w, C]);
      }
      o.neck.dispose();
      return { [this.head]: { features, grid: o.grid } };
    }
    const o = this.model.forward(images, this.maxNumPatches === undefined ? {} : { maxNumPatches: this.maxNumPatches });
    if (!this.useSummary) o.summary?.dispose();
    return { [this.head]: { features: o.features, grid: o.grid, ...(this.useSummary && o.summary ? { summary: o.summary } : {}) } };
  }

  async close(): Promise<void> {
    this.model.dispose();
  }
}

/** dirOrRepo itself when it is a folder, else the hub snapshot of that repo id. */
export async function resolveFolder(dirOrRepo: string, hub: HubDownloadOptions = {}): Promise<string> {
  if (typeof dirOrRepo !== 'string' || dirOrRepo === '') throw new Error(`fromPretrained: expected a folder or a hub repo id, got ${JSON.stringify(dirOrRepo)}`);
  if (fs.existsSync(dirOrRepo)) return dirOrRepo;
  if (!/^[\w.-]+\/[\w.-]+$/.test(dirOrRepo)) throw new Error(`fromPretrained: ${dirOrRepo} is neither a folder nor a hub repo id ("org/name")`);
  // config.json fixes the commit. The weights are one file or a shard index (then its shards, from that commit);
  // the preprocessor is optional (the family's statistics stand in).
  const dir = await downloadCheckpoint(dirOrRepo, hub, ['config.json'], ['model.safetensors', shardIndexName(), 'preprocessor_config.json']);
  if (fs.existsSync(path.join(dir, 'model.safetensors'))) return dir;
  const index = path.join(dir, shardIndexName());
  if (!fs.existsSync(index)) {
    const where = hub.offline || process.env.HF_HUB_OFFLINE ? 'in the cache (offline)' : 'in the repo';
    throw new Error(`fromPretrained: ${dirOrRepo} has neither model.safetensors nor ${shardIndexName()} ${where}`);
  }
  return downloadCheckpoint(dirOrRepo, { ...hub, revision: path.basename(dir) }, readShardIndex(index).shards);
}
