// RADIO from a released-format (Hugging Face) checkpoint folder, config.json + model.safetensors, as a module tree
// whose parameter keys are the checkpoint's (`radio_model.model.blocks.0.attn.qkv.weight`, ...). The forward pass is
// spec §1.2–1.7 (and §2.1 for ViTDet checkpoints): patchify (input conditioning fused) → patch embedding → CPE →
// [cls/registers, patches + pos] → blocks → summary rows and feature rows → adaptor heads.
//
// Eval mode (what load() returns) is inference: nothing is recorded for autograd, LayerScale runs folded into the
// weights, and every intermediate is freed before forward returns. Training mode (train()) records the graph over
// the live parameters and draws RADIO's random CPE crop and position dropout per sample (or replays a given one);
// the intermediates belong to the graph and are freed by the caller's tensor scope (nn.tidy) or by GC.
import * as path from 'path';

import { isGradEnabled, noGrad } from '../autograd';
import { SafetensorsFile } from '../io/safetensors';
import type { DType, Device } from '../native';
import { Module, ModuleDict } from '../nn/module';
import { assembleTokens, gatherRows, patchify, sliceRows } from '../ops/tokens';
import { tidy } from '../scope';
import { Tensor, tensor } from '../tensor';
import { GenericAdaptor } from './adaptor';
import { parseRadioConfig, RadioConfig, VitDetConfig, vitdetConfig, VitDetOverride } from './config';
import { isERadioConfig } from './eradio/config';
import type { MlpHeadConfig, MlpVersion } from './config';
import { checkCrop, CpeCrop, CpeGeometry, cropApplies, CropRng, drawCrop, evalPositions, trainPositions } from './cpe';
import { downloadCheckpoint, HubDownloadOptions } from './hub';
import { preprocessImage, type ImageSizeRequest, type ResolutionRule } from './preprocess';
import { FeatureNormalizer, InputConditioner, VisionTransformer } from './vit';
import { checkpointWarner, fillFromCheckpoint, readCheckpointConfig, warnUnreadTensors } from './weights';

const PREFIX = 'radio_model.';

export interface RadioLoadOptions {
  /** Default 'cpu'. Weights are uploaded there once. */
  device?: Device;
  /** Weights and activations; default 'f32'. bf16 runs every op on bf16 storage (statistics in f32). */
  dtype?: DType;
  /** The CPE resize's align_corners: false (default) as RADIO's current code; true for checkpoints released before mid-2025 (spec §1.4). */
  cpeAlignCorners?: boolean;
  /** Overrides the ViTDet settings of config.json (windowSize null turns windows off). */
  vitdet?: VitDetOverride;
  /** Seed of the training-mode CPE crop and position dropout draws; default a random one. */
  seed?: number;
  /** Probability that a sample's position encoding is dropped in training; default 0.1, RADIO's hard-coded value. */
  posDropout?: number;
  /**
   * Receives what the load ignores (checkpoint tensors no module reads, an inter-feature normalizer), one message
   * per kind; default process.emitWarning with type 'RadioCheckpointWarning'.
   */
  onWarning?: (message: string) => void;
}

export interface RadioForwardOptions {
  /**
   * Training mode only: replay a CPE crop instead of drawing one. scale and offset [B, 2] (x, y) and keep [B]
   * (1 kept, 0 position dropout), f32 on the model's device; scale and offset only where a crop applies (CPE mode,
   * grid other than the whole table): sampleCpe() says which.
   */
  cpe?: CpeCrop;
  /**
   * ViTDet windows for this call instead of the config's (training uses it as an augmentation, spec §2.1):
   * windowSize null runs every block globally; numGlobal / numWindowed default to the config's schedule.
   */
  vitdet?: VitDetOverride;
}

export interface RadioHeadOutput {
  /** [B, C]: the backbone's is the summary_idxs cls tokens concatenated ([B, len·D]); an adaptor's, its summary head. */
  summary: Tensor;
  /**
   * [B, N, C], N = (H/P)·(W/P) patch tokens in raster order; for an upsampling head (upsample_factor u) the u×
   * finer grid, N = (H/P·u)·(W/P·u).
   */
  features: Tensor;
}

/** `backbone` plus one entry per adaptor head in the checkpoint (e.g. clip, dino_v2, sam). */
export type RadioOutput = { backbone: RadioHeadOutput } & Record<string, RadioHeadOutput>;

// RADIO's own module (HF wrapper's `radio_model`): model, input_conditioner, adaptors, feature_normalizer.
class RadioCore extends Module {
  readonly model: VisionTransformer;
  readonly inputConditioner: InputConditioner;
  readonly adaptors: ModuleDict<GenericAdaptor>;
  readonly featureNormalizer: FeatureNormalizer | null;

  constructor(c: RadioConfig, opts: { device: Device; dtype: DType }, has: (key: string) => boolean) {
    super();
    const layer = { ...opts, init: 'empty' as const };
    const layerScale = has('model.blocks.0.ls1.grandma') ? 1e-5 : undefined;
    const S = c.numCls + c.numRegisters;
    this.model = this.registerModule('model', new VisionTransformer({ ...c, prefixRows: S, layerScale }, layer));
    this.inputConditioner = this.registerModule('input_conditioner', new InputConditioner(layer));
    const adaptors = c.adaptors.map((a): [string, GenericAdaptor] => {
      const k = `adaptors.${a.name}`;
      const featMlp = a.feature.version === 'attn' ? `${k}.feat_mlp.mlp` : `${k}.feat_mlp`;
      return [a.name, new GenericAdaptor(a, { ...layer, summaryPreNorm: has(`${k}.head_mlp.pre_norm.0.weight`), featurePreNorm: has(`${featMlp}.pre_norm.0.weight`) })];
    });
    this.adaptors = this.registerModule('adaptors', new ModuleDict(adaptors));
    const normalizer = c.featureNormalizer || has('feature_normalizer.tx');
    this.featureNormalizer = normalizer ? this.registerModule('feature_normalizer', new FeatureNormalizer(c.embedDim, layer)) : null;
  }
}

const HEAD_KEYS: Record<MlpVersion, { probe: string; what: string }> = {
  v1: { probe: 'fc2.weight', what: 'MLP v1 keys (fc1, norm, fc2)' },
  v2: { probe: 'final.2.weight', what: 'MLP v2 keys (fc1, blocks, final)' },
  attn: { probe: 'mlp.final.2.weight', what: 'attention-head keys (blocks.{0,1}, mlp)' },
};

/**
 * The head variant comes from config.json; a checkpoint whose keys are another variant's says so here rather than
 * as a list of missing tensors, and one with more inner blocks than the config builds is refused (they would be
 * ignored, and the head's output wrong).
 */
function checkHeadKeys(file: string, prefix: string, k: string, head: 'head_mlp' | 'feat_mlp', hc: MlpHeadConfig, has: (key: string) => boolean): void {
  const found = (Object.keys(HEAD_KEYS) as MlpVersion[]).filter((v) => has(`${k}.${HEAD_KEYS[v].probe}`));
  if (found.length === 1 && found[0] !== hc.version) {
    const field = head === 'head_mlp' ? 'args.mlp_version' : 'args.spatial_mlp_version (or args.mlp_version)';
    throw new Error(`${file}: adaptor head '${prefix}${k}' has ${HEAD_KEYS[found[0]].what}, but config.json ${field} makes it ${hc.version}`);
  }
  const extra = {
    v1: [`${k}.inner.${3 * hc.numInner}.weight`],
    v2: [`${k}.blocks.${hc.numInner}.0.weight`],
    // RADIO builds AttnFDHead with two blocks and an MLP2 without inner blocks, whatever num_inner says.
    attn: [`${k}.blocks.2.norm1.weight`, `${k}.mlp.blocks.0.0.weight`],
  }[hc.version].find(has);
  if (extra) {
    const built = hc.version === 'attn' ? 'the two blocks and no MLP inner blocks RADIO builds for an attention head' : `num_inner ${hc.numInner} in config.json`;
    throw new Error(`${file}: adaptor head '${prefix}${k}' has more inner blocks than ${built} ('${prefix}${extra}')`);
  }
}

/**
 * Tensors no module reads that are expected: summary_idxs (read apart from the modules) and timm's reg_token,
 * which RADIO's patch generator replaces but leaves in the model (spec §1.1). No warning for these.
 */
const UNUSED_BY_RADIO = new Set(['summary_idxs', 'model.reg_token']);

/** One warning for the inter-feature normalizer, one listing every other tensor no module read. */
function warnUnread(file: string, prefix: string, c: RadioConfig, unread: string[], warn: (message: string) => void): void {
  const bare = (k: string) => (prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k);
  const inter = unread.filter((k) => bare(k).startsWith('inter_feature_normalizer.'));
  const unknown = unread.filter((k) => !UNUSED_BY_RADIO.has(bare(k)) && !inter.includes(k)).sort();
  if (inter.length || c.interFeatureNormalizer)
    warn(`${file}: the inter_feature_normalizer (${inter.map((k) => `'${k}'`).join(', ') || 'in config.json only'}) is ignored: it normalizes intermediate-layer features, which RadioModel does not return`);
  warnUnreadTensors(file, unknown, warn);
}

export class RadioModel extends Module {
  private readonly core: RadioCore;
  private rng: CropRng;

  private constructor(
    readonly config: RadioConfig,
    readonly dtype: DType,
    device: Device,
    private readonly geometry: CpeGeometry,
    private readonly summaryIdxs: number[],
    private readonly posDropout: number,
    seed: number,
    has: (key: string) => boolean,
  ) {
    super();
    this.core = this.registerModule('radio_model', new RadioCore(config, { device, dtype }, has));
    this.rng = new CropRng(seed);
  }

  /**
   * Downloads a checkpoint from the Hugging Face hub into its cache (see ts/model/hub.ts: resumable, offline with
   * HF_HUB_OFFLINE=1, HF_TOKEN for gated repos) and loads it, e.g. `RadioModel.fromPretrained('nvidia/RADIO-B')`.
   */
  static async fromPretrained(repo: string, opts: RadioLoadOptions & HubDownloadOptions = {}): Promise<RadioModel> {
    const { revision, cacheDir, token, endpoint, offline, progress, ...load } = opts;
    return RadioModel.load(await downloadCheckpoint(repo, { revision, cacheDir, token, endpoint, offline, progress }), load);
  }

  /** Loads `dir`/config.json and `dir`/model.safetensors in eval mode; every problem is an Error naming the file and key. */
  static async load(dir: string, opts: RadioLoadOptions = {}): Promise<RadioModel> {
    const device = opts.device ?? 'cpu';
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`RadioModel.load: dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
    const posDropout = opts.posDropout ?? 0.1;
    if (!(posDropout >= 0 && posDropout < 1)) throw new Error(`RadioModel.load: posDropout must be in [0, 1), got ${opts.posDropout}`);
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    CropRng.check(seed);
    const { json, configPath } = await readCheckpointConfig('RadioModel.load', dir);
    if (isERadioConfig(json))
      throw new Error(`${configPath}: an E-RADIO checkpoint (args.model ${JSON.stringify((json as { args: { model: string } }).args.model)}); load it with ERadioModel.load(dir) or loadRadio(dir)`);
    const c = parseRadioConfig(json, configPath, opts.vitdet);
    const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    let model: RadioModel | null = null;
    try {
      const prefix = file.has(`${PREFIX}model.patch_generator.embedder.weight`) ? PREFIX : '';
      const has = (key: string) => file.has(prefix + key);
      for (const a of c.adaptors)
        for (const head of ['head_mlp', 'feat_mlp'] as const) checkHeadKeys(file.file, prefix, `adaptors.${a.name}.${head}`, head, head === 'head_mlp' ? a.summary : a.feature, has);
      if (has(`model.blocks.${c.depth}.norm1.weight`)) throw new Error(`${file.file}: the checkpoint has more blocks than depth ${c.depth} in config.json`);
      if (has('model.inner.blocks.0.norm1.weight'))
        throw new Error(`${file.file}: the keys model.inner.* are radio_v2.5-g's DINOv2 architecture (DinoWrapper), which this port does not support yet`);
      // The buffer is the authority, as in RADIO: its HF loader derives one from the teachers (without the
      // deduplication of spec §1.5), and loading the checkpoint then overwrites it with the stored one.
      const summaryIdxs = has('summary_idxs') ? (await file.readInts(`${prefix}summary_idxs`)).data : c.defaultSummaryIdxs;
      for (const i of summaryIdxs)
        if (!Number.isInteger(i) || i < 0 || i >= c.numCls) throw new Error(`${file.file}: summary_idxs holds ${i}, outside the ${c.numCls} cls tokens`);
      const geometry = { grid: c.cpeGrid, cpeMode: c.cpeMode, alignCorners: opts.cpeAlignCorners ?? false };
      model = new RadioModel(c, dtype, device, geometry, summaryIdxs, posDropout, seed, has);
      const unread = await fillFromCheckpoint(model, file, PREFIX);
      warnUnread(file.file, prefix, c, unread, checkpointWarner(opts.onWarning));
      return model.eval();
    } catch (e) {
      model?.dispose();
      throw e;
    } finally {
      await file.close();
    }
  }

  get device(): Device {
    return this.core.model.patchGenerator.posEmbed.device;
  }

  /** H and W must be multiples of this: the patch size, times the window size in ViTDet mode. */
  get resolutionStep(): number {
    return this.stepFor(this.config.vitdet);
  }

  private stepFor(vitdet: VitDetConfig | null): number {
    return this.config.patchSize * (vitdet?.windowSize ?? 1);
  }

  /** The side in pixels of the position table (cpe_max_size): the largest input needing no position resampling. */
  private get tableSide(): number {
    return this.config.cpeGrid * this.config.patchSize;
  }

  /**
   * How preprocess() picks a resolution: multiples of resolutionStep, and at most the position table's side
   * (cpe_max_size, which released checkpoints also give as max_resolution) when no size is asked for.
   */
  get resolutionRule(): ResolutionRule {
    return { step: this.resolutionStep, maxSide: this.tableSide };
  }

  /**
   * An image file path or its bytes in a Buffer (JPEG, PNG or WebP, decoded with sharp) → `[1, 3, H, W]` f32 RGB in
   * [0, 1] on the model's device, ready for forward(). H × W is a resolution this model supports: by default the
   * image's own size (longer side at most the position table's) rounded to the nearest multiples of resolutionStep,
   * aspect kept; `size: N` scales the shorter side to N first (RADIO's examples' mode); `size: [H, W]` asks for
   * exactly that (multiples of resolutionStep). A missing or corrupt file and an unsupported size are Errors naming it.
   *
   * ```ts
   * const images = await model.preprocess('photo.jpg');     // e.g. [1, 3, 480, 640] for a 480 × 640 photo
   * const out = model.forward(images);
   * ```
   */
  async preprocess(source: string | Buffer, opts: { size?: ImageSizeRequest } = {}): Promise<Tensor> {
    const op = 'RadioModel.preprocess';
    if (this.disposed) throw new Error(`${op}: the model was disposed`);
    const img = await preprocessImage(op, source, this.resolutionRule, opts.size);
    return tensor(img.pixels, [1, 3, img.height, img.width], { device: this.device });
  }

  /** RADIO's min_resolution_step: the same number as resolutionStep, under the reference's name. */
  get minResolutionStep(): number {
    return this.resolutionStep;
  }

  get patchSize(): number {
    return this.config.patchSize;
  }

  /**
   * [H, W] the checkpoint was tuned for: config.json's preferred_resolution; a config without one gets the
   * position table's own size (cpe grid × patch), the largest input that needs no position resampling.
   */
  get preferredResolution(): [number, number] {
    const r = this.config.preferredResolution;
    return r ? [r[0], r[1]] : [this.tableSide, this.tableSide];
  }

  /** Restarts the training draws (CPE crop, position dropout) from seed. */
  seed(seed: number): void {
    this.rng = new CropRng(seed);
  }

  /**
   * Draws a training crop for `batch` images of H × W pixels from the model's generator, as a training forward
   * without opts.cpe would: keep [B], and scale, offset [B, 2] where a crop applies; f32 on the model's device.
   */
  sampleCpe(batch: number, height: number, width: number): CpeCrop {
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`RadioModel.sampleCpe: batch must be a positive integer, got ${batch}`);
    const [gh, gw] = this.grid('RadioModel.sampleCpe', height, width);
    return drawCrop(this.rng, batch, cropApplies(this.geometry, gh, gw), this.posDropout, this.device);
  }

  /**
   * The (rows, cols) grid of `head`'s features for H × W images: the patch grid, or u× finer for a head with
   * upsample_factor u. An Error for a head the model does not have.
   */
  featureGrid(head: string, height: number, width: number): [number, number] {
    const [gh, gw] = this.grid('RadioModel.featureGrid', height, width);
    if (head === 'backbone') return [gh, gw];
    const a = this.config.adaptors.find((x) => x.name === head);
    if (!a) throw new Error(`RadioModel.featureGrid: no head ${JSON.stringify(head)} (heads: backbone${this.config.adaptors.map((x) => `, ${x.name}`).join('')})`);
    const u = a.feature.upsampleFactor;
    return [gh * u, gw * u];
  }

  private grid(op: string, H: number, W: number, vitdet: VitDetConfig | null = this.config.vitdet): [number, number] {
    const c = this.config;
    const step = this.stepFor(vitdet);
    if (!Number.isInteger(H) || !Number.isInteger(W) || H % step !== 0 || W % step !== 0 || H <= 0 || W <= 0) {
      const near = (v: number) => Math.max(step, Math.round(v / step) * step);
      throw new Error(`${op}: input resolution ${H}x${W} is not a multiple of ${step} (patch ${c.patchSize}${vitdet ? ` × window ${vitdet.windowSize}` : ''}); nearest supported: ${near(H)}x${near(W)}`);
    }
    return [H / c.patchSize, W / c.patchSize];
  }

  /** The ViTDet settings a forward with `override` runs (the config's without one; null: all global). */
  private vitdetFor(op: string, override: VitDetOverride | undefined): VitDetConfig | null {
    const own = this.config.vitdet;
    if (override === undefined) return own;
    if (!override || typeof override !== 'object') throw new Error(`${op}: opts.vitdet must be { windowSize, numGlobal?, numWindowed? }, got ${JSON.stringify(override)}`);
    const windowSize = override.windowSize === undefined ? own?.windowSize : override.windowSize;
    if (windowSize === null) return null;
    if (windowSize === undefined) throw new Error(`${op}: opts.vitdet.windowSize is required (the model has no ViTDet windows of its own)`);
    const schedule = override.numGlobal !== undefined || override.numWindowed !== undefined
      ? { numGlobal: override.numGlobal, numWindowed: override.numWindowed }
      : { numGlobal: own?.numGlobal, numWindowed: own?.numWindowed };
    if (schedule.numGlobal === undefined && schedule.numWindowed === undefined)
      throw new Error(`${op}: opts.vitdet needs numGlobal or numWindowed (the model has no ViTDet schedule of its own)`);
    return vitdetConfig(`${op}: opts.vitdet`, this.config.depth, windowSize, schedule);
  }

  /**
   * images [B, 3, H, W] with values in [0, 1] (any dtype; moved to the model's device when elsewhere) → the
   * backbone's and every adaptor's summary and features, in the model dtype, on the model's device.
   */
  forward(images: Tensor, opts: RadioForwardOptions = {}): RadioOutput {
    const op = 'RadioModel.forward';
    if (this.disposed) throw new Error(`${op}: the model was disposed`);
    if (!(images instanceof Tensor)) throw new Error(`${op}: images must be a Tensor [B, 3, H, W]`);
    if (images.shape.length !== 4 || images.shape[1] !== 3) throw new Error(`${op}: images have shape [${images.shape.join(', ')}], expected [B, 3, H, W]`);
    const [B, , H, W] = images.shape;
    const vitdet = this.vitdetFor(op, opts.vitdet);
    const [gh, gw] = this.grid(op, H, W, vitdet);
    if (!this.training) {
      if (opts.cpe !== undefined) throw new Error(`${op}: opts.cpe replays a training crop; the model is in eval mode (call train())`);
      return noGrad(() => tidy(() => this.run(images, gh, gw, null, vitdet)));
    }
    if (this.config.dropPath > 0) throw new Error(`${op}: drop_path ${this.config.dropPath} in training is not supported`);
    const crop = opts.cpe !== undefined
      ? checkCrop(op, opts.cpe, this.geometry, B, gh, gw, this.device)
      : drawCrop(this.rng, B, cropApplies(this.geometry, gh, gw), this.posDropout, this.device);
    return this.run(images, gh, gw, crop, vitdet);
  }

  private run(images: Tensor, gh: number, gw: number, crop: CpeCrop | null, vitdet: VitDetConfig | null): RadioOutput {
    const c = this.config;
    const { model: vit, inputConditioner: cond, featureNormalizer } = this.core;
    const pg = vit.patchGenerator;
    const B = images.shape[0];
    const S = c.numCls + c.numRegisters;
    const onDevice = images.device === this.device ? images : images.to(this.device);
    const patches = patchify(onDevice, { patch: c.patchSize, mean: cond.mean, std: cond.std, dtype: this.dtype });
    const embedded = pg.embedder.forward(patches);
    const pos = crop ? trainPositions(pg.posEmbed, this.geometry, gh, gw, crop) : evalPositions(pg.posEmbed, this.geometry, gh, gw);
    // bf16 training is mixed precision (see Block.forward): the residual stream, from the token assembly (patch
    // embedding + position encoding added in f32) through the final norm, is f32; the heads run in bf16 again.
    // Inference stays all-bf16, the fast path with LayerScale folded and residuals fused into the GEMMs.
    const mixed = this.training && this.dtype === 'bf16';
    const f32 = (t: Tensor) => t.cast('f32');
    let x = this.runBlocks(mixed ? assembleTokens(f32(pg.clsToken.token), f32(embedded), f32(pos)) : assembleTokens(pg.clsToken.token, embedded, pos), S, gh, gw, vitdet);
    if (vit.norm) x = vit.norm.forward(x);
    if (mixed) x = x.cast(this.dtype);
    let features = sliceRows(x, S, S + gh * gw);
    if (featureNormalizer) features = featureNormalizer.forward(features);
    const summary = gatherRows(x, this.summaryIdxs).reshape([B, this.summaryIdxs.length * c.embedDim]);
    const out: Record<string, RadioHeadOutput> = { backbone: { summary, features } };
    for (const [name, a] of this.core.adaptors.entries()) {
      const s = gatherRows(x, [a.config.headIdx]).reshape([B, c.embedDim]);
      out[name] = { summary: a.headMlp.forward(s), features: a.featMlp.forward(features, [gh, gw]) };
    }
    return out as RadioOutput;
  }

  // Global blocks see all S + N tokens. In ViTDet mode the prefix tokens sit out windowed blocks entirely (spec
  // §2.1): they are set aside when windows start and put back, unchanged, when global attention resumes. The
  // attention op reads windows straight from the raster layout, so no reordering is needed.
  private runBlocks(x: Tensor, S: number, gh: number, gw: number, vitdet: VitDetConfig | null): Tensor {
    const c = this.config;
    const schedule = vitdet?.windowed ?? new Array<boolean>(c.depth).fill(false);
    let prefix: Tensor | null = null;
    let i = 0;
    for (const block of this.core.model.blocks) {
      const windowed = schedule[i++];
      if (windowed && !prefix) {
        prefix = sliceRows(x, 0, S);
        x = sliceRows(x, S, S + gh * gw);
      } else if (!windowed && prefix) {
        x = assembleTokens(prefix, x);
        prefix = null;
      }
      const input = x;
      const run = () => (windowed ? block.forward(input, 0, { size: vitdet!.windowSize, gridH: gh, gridW: gw }) : block.forward(input, S));
      // Without a recorded graph nothing needs a block's input or intermediates once its output exists: each block
      // runs in its own scope that takes its input along, so inference holds one block's activations at a time.
      x = isGradEnabled() ? run() : tidy(run, { consume: [input] });
    }
    return x;
  }
}
