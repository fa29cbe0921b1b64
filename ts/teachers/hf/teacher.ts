// A Hugging Face vision encoder as a distillation teacher: DINOv2, CLIP or SigLIP from the folder (config.json,
// model.safetensors, preprocessor_config.json) that transformers' save_pretrained writes, run on this package's
// kernels in the trainer's process.
import * as fs from 'fs';

import { downloadCheckpoint, HubDownloadOptions } from '../../model/hub';
import type { Tensor } from '../../tensor';
import type { Teacher, TeacherBatch, TeacherTargets } from '../types';
import { HfArch, HfVisionConfig, readHfVisionConfig } from './config';
import { HfVisionLoadOptions, HfVisionModel, loadHfVisionWeights } from './model';

export interface HfTeacherOptions extends HfVisionLoadOptions {
  /** Name in logs and metrics; default by family: 'dino_v2', 'clip', 'siglip' (RADIO's teacher names). */
  name?: string;
  /** The student head the targets train; default the name. */
  head?: string;
  /**
   * [h, w] in pixels, at least the patch size: the size the trainer resizes the batch to for this teacher (a
   * remainder past the last whole patch is not read, as the checkpoint's patch conv does not read it).
   * Default: the preprocessor's crop size (else the config's image_size). null: the student's own resolution.
   */
  inputSize?: [number, number] | null;
  /** Whether the targets include the summary (default: whenever the encoder has one). */
  summary?: boolean;
}

const DEFAULT_NAMES: Record<HfArch, string> = { dinov2: 'dino_v2', clip: 'clip', siglip: 'siglip' };

export class HfTeacher implements Teacher {
  readonly needsImages = true;
  readonly heads: Record<string, { summaryDim: number | null; featureDim: number }>;

  private constructor(
    readonly name: string,
    readonly model: HfVisionModel,
    readonly inputSize: [number, number] | null,
    private readonly head: string,
    private readonly useSummary: boolean,
  ) {
    this.heads = { [head]: { summaryDim: useSummary ? model.summaryDim : null, featureDim: model.config.hidden } };
  }

  get config(): HfVisionConfig {
    return this.model.config;
  }

  /** Loads the encoder in dir (a transformers save_pretrained folder) in eval mode. */
  static async load(dir: string, opts: HfTeacherOptions = {}): Promise<HfTeacher> {
    const op = 'HfTeacher.load';
    if (typeof dir !== 'string' || dir === '') throw new Error(`${op}: dir must be a folder path, got ${JSON.stringify(dir)}`);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${op}: ${dir} is not a folder (expected config.json and model.safetensors)`);
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`${op}: dtype must be 'f32' or 'bf16', got ${JSON.stringify(dtype)}`);
    const config = readHfVisionConfig(dir);
    const size = opts.inputSize === undefined ? config.inputSize : opts.inputSize;
    if (size !== null) {
      const P = config.patch;
      if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v >= P))
        throw new Error(`${op} ${dir}: inputSize must be [h, w] in pixels, each at least the patch size ${P}, got ${JSON.stringify(size)}`);
    }
    const model = await loadHfVisionWeights(dir, config, { ...opts, dtype });
    const hasSummary = model.summaryDim !== null;
    if (opts.summary === true && !hasSummary) {
      model.dispose();
      throw new Error(`${op} ${dir}: this ${config.modelType} encoder has no summary output (vision_use_head is false)`);
    }
    const name = opts.name ?? DEFAULT_NAMES[config.arch];
    return new HfTeacher(name, model, size ? [size[0], size[1]] : null, opts.head ?? name, opts.summary ?? hasSummary);
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
    const o = this.model.forward(images);
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
  const dir = await downloadCheckpoint(dirOrRepo, hub);
  // The preprocessor is optional (the family's statistics stand in): fetched when the repo has one.
  await downloadCheckpoint(dirOrRepo, hub, ['preprocessor_config.json']).catch(() => undefined);
  return dir;
}
