// E-RADIO (spec §2.2, radio/eradio_model.py): a YOLOv8-style conv stem and two C2f stages, two stages of GRA
// transformer blocks, and the high-resolution neck whose output is RADIO's dense features; the summary is their
// mean. ERadioModel loads a released-format (Hugging Face) checkpoint folder as RadioModel does, with the same
// adaptor heads and outputs, and trains through the same module layer (BatchNorm with batch statistics).
import * as path from 'path';

import { noGrad } from '../../autograd';
import { SafetensorsFile } from '../../io/safetensors';
import type { DType, Device } from '../../native';
import { LayerOptions } from '../../nn/layers';
import { Module, ModuleDict, ModuleList } from '../../nn/module';
import { interpolate } from '../../ops/interpolate';
import { mean, permute } from '../../ops/layout';
import { patchify } from '../../ops/tokens';
import { tidy } from '../../scope';
import { Tensor, tensor } from '../../tensor';
import { GenericAdaptor } from '../adaptor';
import { preprocessImage, type ImageSizeRequest, type ResolutionRule } from '../preprocess';
import type { RadioHeadOutput, RadioOutput } from '../radio';
import { FeatureNormalizer, InputConditioner } from '../vit';
import { checkpointWarner, fillFromCheckpoint, readCheckpointConfig, warnUnreadTensors } from '../weights';
import { C2f, cropOrPad, Downsample, NeckProjection, PatchEmbed } from './blocks';
import { GraBlock } from './attention';
import { checkWindowSize, ERadioArch, ERadioConfig, optimalWindowSize, parseERadioConfig } from './config';

const PREFIX = 'radio_model.';
/** Inputs must be multiples of this: the stem and three downsamples halve the map five times. */
export const ERADIO_STEP = 32;
/** Sub-sampling ratios of the two transformer stages' blocks (sr_ratio of every registered E-RADIO). */
const SR: Record<number, number[]> = { 2: [2, 1], 3: [1] };

/** One conv stage (0, 1): C2f, then the stride-2 Downsample. */
class ConvLevel extends Module {
  readonly blocks: C2f;
  readonly downsample: Downsample;
  constructor(c: number, depth: number, opts: LayerOptions) {
    super();
    this.blocks = this.registerModule('blocks', new C2f(c, depth, opts));
    this.downsample = this.registerModule('downsample', new Downsample(c, opts));
  }
  forward(x: Tensor): [Tensor, Tensor] {
    const pre = this.blocks.forward(x);
    return [this.downsample.forward(pre), pre];
  }
}

/** MultiResolutionAttention: its GRA blocks in order (key `attention_blocks`). */
class Mra extends Module {
  readonly blocks: ModuleList<GraBlock>;
  constructor(c: number, heads: number, arch: ERadioArch, srs: number[], opts: LayerOptions) {
    super();
    const make = (sr: number) => new GraBlock(c, { ...opts, sr, heads, window: arch.windowSize, convBase: arch.convBase, cpbHidden: arch.cpbHidden, convGroupsRatio: arch.convGroupsRatio, qkvBias: arch.qkvBias });
    this.blocks = this.registerModule('attention_blocks', new ModuleList(srs.map(make)));
  }
  forward(x: Tensor, ws: number): Tensor {
    let y = x;
    for (const b of this.blocks) y = b.forward(y, ws);
    return y;
  }
}

/**
 * A transformer stage (2, 3). A map that is no multiple of the largest window (max sr · ws) is resized to the next
 * multiples with nearest and back afterwards, as the reference does (it warns: padding hurt a trained model more).
 */
class TransformerLevel extends Module {
  readonly blocks: ModuleList<Mra>;
  readonly downsample: Downsample | null;
  constructor(c: number, depth: number, heads: number, readonly srs: number[], arch: ERadioArch, last: boolean, opts: LayerOptions) {
    super();
    this.blocks = this.registerModule('blocks', new ModuleList(Array.from({ length: depth }, () => new Mra(c, heads, arch, srs, opts))));
    this.downsample = last ? null : this.registerModule('downsample', new Downsample(c, opts));
  }
  forward(x: Tensor, ws: number): [Tensor, Tensor] {
    const [, , H, W] = x.shape;
    const M = Math.max(...this.srs) * ws;
    const [h, w] = [Math.ceil(H / M) * M, Math.ceil(W / M) * M];
    let y = h !== H || w !== W ? interpolate(x, { size: [h, w], mode: 'nearest' }) : x;
    for (const b of this.blocks) y = b.forward(y, ws);
    if (h !== H || w !== W) y = interpolate(y, { size: [H, W], mode: 'nearest' });
    return [this.downsample ? this.downsample.forward(y) : y, y];
  }
}

/** The ERADIO module (`radio_model.model`): stem, levels, high_res_neck. */
export class ERadio extends Module {
  readonly patchEmbed: PatchEmbed;
  readonly levels: ModuleList<ConvLevel | TransformerLevel>;
  private readonly projections: NeckProjection[] = [];

  constructor(readonly arch: ERadioArch, opts: LayerOptions) {
    super();
    const a = arch;
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(a.inDim, a.dim, opts));
    const levels: Array<ConvLevel | TransformerLevel> = [];
    for (let i = 0; i < 4; i++) {
      const c = a.dim * 2 ** i;
      levels.push(i < 2 ? new ConvLevel(c, a.depths[i], opts) : new TransformerLevel(c, a.depths[i], a.heads[i], SR[i], a, i === 3, opts));
    }
    this.levels = this.registerModule('levels', new ModuleList(levels));
    let up = 1;
    for (let i = a.neckStart; i < 4; i++) {
      this.projections.push(new NeckProjection(a.dim * 2 ** i, a.neckDim, up, opts));
      if (i > 0) up *= 2;
    }
    this.registerModule('high_res_neck', new ModuleDict([['neck_features_proj', new ModuleList(this.projections)]]));
  }

  /** x [B, 3, H, W] (conditioned) → the neck's dense features [B, neckDim, H/s, W/s], s = 4·2^neckStart. */
  forward(x: Tensor, ws: number): Tensor {
    let y = this.patchEmbed.forward(x);
    let full: Tensor | null = null;
    let i = 0;
    for (const level of this.levels) {
      const [down, pre] = level instanceof TransformerLevel ? level.forward(y, ws) : level.forward(y);
      y = down;
      if (i >= this.arch.neckStart) {
        const p = this.projections[i - this.arch.neckStart].forward(pre);
        // F.pad(p, (0, W − w, 0, H − h)) with zeros, as the neck sizes a coarser stage's projection.
        full = full ? full.add(cropOrPad(p, full.shape[2], full.shape[3], 'zero')) : p;
      }
      i++;
    }
    return full!;
  }
}

class ERadioCore extends Module {
  readonly model: ERadio;
  readonly inputConditioner: InputConditioner;
  readonly adaptors: ModuleDict<GenericAdaptor>;
  readonly featureNormalizer: FeatureNormalizer | null;

  constructor(c: ERadioConfig, opts: { device: Device; dtype: DType }, has: (key: string) => boolean) {
    super();
    const layer = { ...opts, init: 'empty' as const };
    this.model = this.registerModule('model', new ERadio(c.arch, layer));
    this.inputConditioner = this.registerModule('input_conditioner', new InputConditioner(layer));
    const adaptors = c.adaptors.map((a): [string, GenericAdaptor] => {
      const k = `adaptors.${a.name}`;
      return [a.name, new GenericAdaptor(a, { ...layer, summaryPreNorm: has(`${k}.head_mlp.pre_norm.0.weight`), featurePreNorm: has(`${k}.feat_mlp.pre_norm.0.weight`) })];
    });
    this.adaptors = this.registerModule('adaptors', new ModuleDict(adaptors));
    this.featureNormalizer = has('feature_normalizer.tx') ? this.registerModule('feature_normalizer', new FeatureNormalizer(c.arch.neckDim, layer)) : null;
  }
}

/**
 * Checkpoint tensors no module reads, expected: BatchNorm's num_batches_tracked (momentum is fixed), the CPB's
 * coordinate table, index and cached bias (derived from the window size here), and the final BatchNorm `model.norm`,
 * whose output RADIO discards (the summary is the mean of the neck's features).
 */
function expectedUnread(key: string): boolean {
  return /\.num_batches_tracked$/.test(key) || /\.pos_emb_funct\.(relative_coords_table|relative_position_index|relative_bias)$/.test(key) ||
    /^model\.norm\./.test(key) || key === 'summary_idxs';
}

export interface ERadioLoadOptions {
  device?: Device;
  dtype?: DType;
  /** The transformer stages' window, instead of config.json's eradio_window_size (or the architecture's). */
  windowSize?: number;
  onWarning?: (message: string) => void;
}

export class ERadioModel extends Module {
  private readonly core: ERadioCore;
  private ws: number;

  private constructor(readonly config: ERadioConfig, readonly dtype: DType, device: Device, has: (key: string) => boolean) {
    super();
    this.core = this.registerModule('radio_model', new ERadioCore(config, { device, dtype }, has));
    this.ws = config.windowSize;
  }

  /** Loads dir/config.json and dir/model.safetensors in eval mode; every problem is an Error naming the file and key. */
  static async load(dir: string, opts: ERadioLoadOptions = {}): Promise<ERadioModel> {
    const device = opts.device ?? 'cpu';
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`ERadioModel.load: dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
    const { json, configPath } = await readCheckpointConfig('ERadioModel.load', dir);
    const c = parseERadioConfig(json, configPath);
    if (opts.windowSize !== undefined) c.windowSize = checkWindowSize('ERadioModel.load: windowSize', opts.windowSize);
    const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    let model: ERadioModel | null = null;
    try {
      const probe = 'model.patch_embed.conv_down.0.conv.weight';
      const prefix = file.has(`${PREFIX}${probe}`) ? PREFIX : '';
      const has = (key: string) => file.has(prefix + key);
      if (!has(probe)) throw new Error(`${file.file}: no '${PREFIX}${probe}': not an E-RADIO checkpoint, though config.json names ${c.timmModel}`);
      model = new ERadioModel(c, dtype, device, has);
      const unread = (await fillFromCheckpoint(model, file, PREFIX, probe)).filter((k) => !expectedUnread(prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k));
      warnUnreadTensors(file.file, unread, checkpointWarner(opts.onWarning));
      return model.eval();
    } catch (e) {
      model?.dispose();
      throw e;
    } finally {
      await file.close();
    }
  }

  get device(): Device {
    return this.core.inputConditioner.mean.device;
  }

  /** The transformer stages' window size. */
  get windowSize(): number {
    return this.ws;
  }

  /**
   * Runs the transformer stages with ws × ws windows from now on (the reference's change_window_size; the CPB
   * keeps the window it was trained with as its scale). optimalWindowSize(resolution) gives the reference's choice.
   */
  setWindowSize(ws: number): void {
    this.ws = checkWindowSize('ERadioModel.setWindowSize', ws);
  }

  /** The reference's set_optimal_window_size for an input of this resolution (see optimalWindowSize). */
  setOptimalWindowSize(resolution: number | readonly [number, number], maxWindow = 16): number {
    this.ws = optimalWindowSize(resolution, maxWindow);
    return this.ws;
  }

  get resolutionStep(): number {
    return ERADIO_STEP;
  }

  get resolutionRule(): ResolutionRule {
    return { step: ERADIO_STEP, maxSide: 2048 };
  }

  /** Pixels per dense-feature row and column: 4·2^neck_start (16 for every released E-RADIO). */
  get featureStride(): number {
    return this.config.featureStride;
  }

  get preferredResolution(): [number, number] {
    const r = this.config.preferredResolution;
    return r ? [r[0], r[1]] : [512, 512];
  }

  async preprocess(source: string | Buffer, opts: { size?: ImageSizeRequest } = {}): Promise<Tensor> {
    const op = 'ERadioModel.preprocess';
    if (this.disposed) throw new Error(`${op}: the model was disposed`);
    const img = await preprocessImage(op, source, this.resolutionRule, opts.size);
    return tensor(img.pixels, [1, 3, img.height, img.width], { device: this.device });
  }

  /** The feature grid of `head` for H × W images: every head shares the neck's (H/s) × (W/s). */
  featureGrid(head: string, height: number, width: number): [number, number] {
    if (head !== 'backbone' && !this.config.adaptors.some((a) => a.name === head))
      throw new Error(`ERadioModel.featureGrid: no head ${JSON.stringify(head)} (heads: backbone${this.config.adaptors.map((x) => `, ${x.name}`).join('')})`);
    this.checkSize('ERadioModel.featureGrid', height, width);
    return [height / this.featureStride, width / this.featureStride];
  }

  private checkSize(op: string, H: number, W: number): void {
    if (!Number.isInteger(H) || !Number.isInteger(W) || H <= 0 || W <= 0 || H % ERADIO_STEP !== 0 || W % ERADIO_STEP !== 0) {
      const near = (v: number) => Math.max(ERADIO_STEP, Math.round(v / ERADIO_STEP) * ERADIO_STEP);
      throw new Error(`${op}: input resolution ${H}x${W} is not a multiple of ${ERADIO_STEP} (E-RADIO halves it five times); nearest supported: ${near(H)}x${near(W)}`);
    }
  }

  /**
   * images [B, 3, H, W] in [0, 1] → `backbone` (summary = mean of the dense features, features [B, (H/s)·(W/s), C])
   * and every adaptor head. Eval mode runs without autograd with BatchNorm folded; training mode records the graph.
   */
  forward(images: Tensor): RadioOutput {
    const op = 'ERadioModel.forward';
    if (this.disposed) throw new Error(`${op}: the model was disposed`);
    if (!(images instanceof Tensor)) throw new Error(`${op}: images must be a Tensor [B, 3, H, W]`);
    if (images.shape.length !== 4 || images.shape[1] !== 3) throw new Error(`${op}: images have shape [${images.shape.join(', ')}], expected [B, 3, H, W]`);
    this.checkSize(op, images.shape[2], images.shape[3]);
    if (!this.training) return noGrad(() => tidy(() => this.run(images)));
    return this.run(images);
  }

  private run(images: Tensor): RadioOutput {
    const { model, inputConditioner: cond, featureNormalizer } = this.core;
    const [B, , H, W] = images.shape;
    const onDevice = images.device === this.device ? images : images.to(this.device);
    // (x − mean) / std per channel, exactly as the reference's conditioner, by the token op with 1×1 patches.
    const rows = patchify(onDevice, { patch: 1, mean: cond.mean, std: cond.std, dtype: this.dtype });
    const x = permute(rows.reshape([B, H, W, 3]), [0, 3, 1, 2]);
    const full = model.forward(x, this.ws);
    const [, C, fh, fw] = full.shape;
    let features = permute(full, [0, 2, 3, 1]).reshape([B, fh * fw, C]);
    // The summary is taken before the feature normalizer, as the reference's _extract_final does.
    const summary = mean(features, 1);
    if (featureNormalizer) features = featureNormalizer.forward(features);
    const out: Record<string, RadioHeadOutput> = { backbone: { summary, features } };
    for (const [name, a] of this.core.adaptors.entries()) out[name] = { summary: a.headMlp.forward(summary), features: a.featMlp.forward(features, [fh, fw]) };
    return out as RadioOutput;
  }
}
