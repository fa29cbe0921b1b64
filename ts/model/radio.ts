// RADIO inference from a released-format (Hugging Face) checkpoint folder: config.json + model.safetensors.
// The forward pass is spec §1.2–1.7 (and §2.1 for ViTDet checkpoints) composed from the ops: patchify (input
// conditioning fused) → patch embedding (linear, no bias) → eval CPE → [cls/registers, patches + pos] → blocks
// (LayerNorm eps 1e-6, qkv, fused attention, proj + residual, fc1 + GELU, fc2 + residual) → summary rows and
// feature rows → adaptor heads.
import * as fs from 'fs';
import * as path from 'path';

import { isGradEnabled } from '../autograd';
import { SafetensorsFile } from '../io/safetensors';
import type { DType, Device } from '../native';
import { attention } from '../ops/attention';
import { cpe } from '../ops/interpolate';
import { linear } from '../ops/linear';
import { layerNorm } from '../ops/norm';
import { assembleTokens, gatherRows, patchify, sliceRows } from '../ops/tokens';
import type { Tensor } from '../tensor';
import { MlpV2Head } from './adaptor';
import { parseRadioConfig, RadioConfig, VitDetOverride } from './config';
import { LinearWeights, loadLinear, loadNorm, loadScaledLinear, NormWeights, WeightReader } from './weights';

const BLOCK_EPS = 1e-6;

export interface RadioLoadOptions {
  /** Default 'cpu'. Weights are uploaded there once. */
  device?: Device;
  /** Weights and activations; default 'f32'. bf16 runs every op on bf16 storage (statistics in f32). */
  dtype?: DType;
  /** The CPE resize's align_corners: false (default) as RADIO's current code; true for checkpoints released before mid-2025 (spec §1.4). */
  cpeAlignCorners?: boolean;
  /** Overrides the ViTDet settings of config.json (windowSize null turns windows off). */
  vitdet?: VitDetOverride;
}

export interface RadioHeadOutput {
  /** [B, C]: the backbone's is the summary_idxs cls tokens concatenated ([B, len·D]); an adaptor's, its summary head. */
  summary: Tensor;
  /** [B, N, C], N = (H/P)·(W/P) patch tokens in raster order. */
  features: Tensor;
}

/** `backbone` plus one entry per adaptor head in the checkpoint (e.g. clip, dino_v2, sam). */
export type RadioOutput = { backbone: RadioHeadOutput } & Record<string, RadioHeadOutput>;

interface Block {
  norm1: NormWeights;
  qkv: LinearWeights;
  proj: LinearWeights;
  norm2: NormWeights;
  fc1: LinearWeights;
  fc2: LinearWeights;
}

interface Adaptor {
  name: string;
  headIdx: number;
  summary: MlpV2Head;
  feature: MlpV2Head;
}

export class RadioModel {
  private disposed = false;

  private constructor(
    readonly config: RadioConfig,
    readonly device: Device,
    readonly dtype: DType,
    private readonly cpeAlignCorners: boolean,
    private readonly summaryIdxs: number[],
    private readonly tensors: Tensor[],
    private readonly w: {
      mean: Tensor;
      std: Tensor;
      embedder: Tensor;
      posEmbed: Tensor;
      prefix: Tensor;
      blocks: Block[];
      norm: NormWeights | null;
      featureNormalizer: LinearWeights | null;
      adaptors: Adaptor[];
    },
  ) {}

  /** Loads `dir`/config.json and `dir`/model.safetensors; every problem is an Error naming the file and key. */
  static async load(dir: string, opts: RadioLoadOptions = {}): Promise<RadioModel> {
    const device = opts.device ?? 'cpu';
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`RadioModel.load: dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
    if (typeof dir !== 'string' || dir === '') throw new Error(`RadioModel.load: dir must be a checkpoint folder path, got ${JSON.stringify(dir)}`);
    const dirStat = await fs.promises.stat(dir).catch((e: Error) => {
      throw new Error(`RadioModel.load: cannot open the checkpoint folder ${dir} (${e.message})`);
    });
    if (!dirStat.isDirectory()) throw new Error(`RadioModel.load: ${dir} is not a folder (expected one holding config.json and model.safetensors)`);
    const configPath = path.join(dir, 'config.json');
    let json: unknown;
    try {
      // Checked first: reading a FIFO or a device would wait forever for a writer.
      if (!(await fs.promises.stat(configPath)).isFile()) throw new Error('not a regular file');
      json = JSON.parse(await fs.promises.readFile(configPath, 'utf8'));
    } catch (e) {
      throw new Error(`${configPath}: cannot read the RADIO config (${(e as Error).message})`);
    }
    const config = parseRadioConfig(json, configPath, opts.vitdet);
    const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    const prefix = file.has('radio_model.model.patch_generator.embedder.weight') ? 'radio_model.' : '';
    const r = new WeightReader(file, prefix, device, dtype);
    try {
      return await RadioModel.build(r, config, opts);
    } catch (e) {
      for (const t of r.made) t.dispose();
      throw e;
    } finally {
      await file.close();
    }
  }

  private static async build(r: WeightReader, c: RadioConfig, opts: RadioLoadOptions): Promise<RadioModel> {
    const { embedDim: D, patchSize: P, mlpHidden: M } = c;
    const S = c.numCls + c.numRegisters;
    // The conditioner's buffers stay f32 whatever the model dtype: the patchify kernel computes in f32.
    const mean = r.upload(await r.host('input_conditioner.norm_mean', [3, 1, 1]), [3], 'f32');
    const std = r.upload(await r.host('input_conditioner.norm_std', [3, 1, 1]), [3], 'f32');
    const pg = 'model.patch_generator';
    const embedder = await r.load(`${pg}.embedder.weight`, [D, 3 * P * P]);
    const posEmbed = await r.load(`${pg}.pos_embed`, [1, c.cpeGrid * c.cpeGrid, D]);
    const prefix = await r.load(`${pg}.cls_token.token`, [S, D]);
    const blocks: Block[] = [];
    for (let i = 0; i < c.depth; i++) {
      const k = `model.blocks.${i}`;
      // LayerScale (`grandma`, spec §1.6) multiplies the branch output per channel: folded into proj and fc2.
      const scaled = r.has(`${k}.ls1.grandma`);
      blocks.push({
        norm1: await loadNorm(r, `${k}.norm1`, D),
        qkv: await loadLinear(r, `${k}.attn.qkv`, 3 * D, D),
        proj: scaled ? await loadScaledLinear(r, `${k}.attn.proj`, D, D, `${k}.ls1.grandma`) : await loadLinear(r, `${k}.attn.proj`, D, D),
        norm2: await loadNorm(r, `${k}.norm2`, D),
        fc1: await loadLinear(r, `${k}.mlp.fc1`, M, D),
        fc2: scaled ? await loadScaledLinear(r, `${k}.mlp.fc2`, D, M, `${k}.ls2.grandma`) : await loadLinear(r, `${k}.mlp.fc2`, D, M),
      });
    }
    if (r.has(`model.blocks.${c.depth}.norm1.weight`)) throw new Error(`${r.file.file}: the checkpoint has more blocks than depth ${c.depth} in config.json`);
    const norm = c.modelNorm ? await loadNorm(r, 'model.norm', D) : null;
    const summaryIdxs = r.has('summary_idxs') ? await r.ints('summary_idxs') : c.defaultSummaryIdxs;
    for (const i of summaryIdxs)
      if (!Number.isInteger(i) || i < 0 || i >= c.numCls) throw new Error(`${r.file.file}: summary_idxs holds ${i}, outside the ${c.numCls} cls tokens`);
    let featureNormalizer: LinearWeights | null = null;
    if (c.featureNormalizer || r.has('feature_normalizer.tx')) {
      if (c.adaptors.length)
        throw new Error(`${r.file.file}: a feature normalizer together with adaptor heads is not supported (which features the heads read is unverified)`);
      // (f − mean)·txᵀ = f·txᵀ − tx·mean: one linear with a folded bias.
      const tx = await r.host('feature_normalizer.tx', [D, D]);
      const mu = await r.host('feature_normalizer.mean', [D]);
      const bias = Float32Array.from({ length: D }, (_, o) => -tx.subarray(o * D, (o + 1) * D).reduce((s, v, i) => s + v * mu[i], 0));
      featureNormalizer = { weight: r.upload(tx, [D, D]), bias: r.upload(bias, [D]) };
    }
    const adaptors: Adaptor[] = [];
    for (const a of c.adaptors) {
      const k = `adaptors.${a.name}`;
      adaptors.push({ name: a.name, headIdx: a.headIdx, summary: await MlpV2Head.load(r, `${k}.head_mlp`, a.summary), feature: await MlpV2Head.load(r, `${k}.feat_mlp`, a.feature) });
    }
    const weights = { mean, std, embedder, posEmbed, prefix, blocks, norm, featureNormalizer, adaptors };
    return new RadioModel(c, r.device, r.dtype, opts.cpeAlignCorners ?? false, summaryIdxs, r.made, weights);
  }

  /** H and W must be multiples of this: the patch size, times the window size in ViTDet mode. */
  get resolutionStep(): number {
    return this.config.patchSize * (this.config.vitdet?.windowSize ?? 1);
  }

  /**
   * images [B, 3, H, W] with values in [0, 1] (any dtype; moved to the model's device when elsewhere) → the
   * backbone's and every adaptor's summary and features, in the model dtype, on the model's device.
   */
  forward(images: Tensor): RadioOutput {
    if (this.disposed) throw new Error('RadioModel.forward: the model was disposed');
    const c = this.config;
    if (images.shape.length !== 4 || images.shape[1] !== 3) throw new Error(`RadioModel.forward: images have shape [${images.shape.join(', ')}], expected [B, 3, H, W]`);
    const [B, , H, W] = images.shape;
    const step = this.resolutionStep;
    if (H % step !== 0 || W % step !== 0 || H === 0 || W === 0) {
      const near = (v: number) => Math.max(step, Math.round(v / step) * step);
      throw new Error(`RadioModel.forward: input resolution ${H}x${W} is not a multiple of ${step} (patch ${c.patchSize}${c.vitdet ? ` × window ${c.vitdet.windowSize}` : ''}); nearest supported: ${near(H)}x${near(W)}`);
    }
    // Intermediates are freed as soon as used, unless autograd is recording a graph that still needs them.
    const recording = isGradEnabled() && this.tensors.some((t) => t.requiresGrad);
    const free = recording ? () => undefined : (t: Tensor) => t.dispose();
    const gh = H / c.patchSize;
    const gw = W / c.patchSize;
    const S = c.numCls + c.numRegisters;
    const onDevice = images.device === this.device ? images : images.to(this.device);
    const patches = patchify(onDevice, { patch: c.patchSize, mean: this.w.mean, std: this.w.std, dtype: this.dtype });
    if (onDevice !== images) free(onDevice);
    const embedded = linear(patches, this.w.embedder);
    free(patches);
    const pos = cpe(this.w.posEmbed, { gridH: gh, gridW: gw, alignCorners: this.cpeAlignCorners });
    let x = assembleTokens(this.w.prefix, embedded, pos);
    free(embedded);
    free(pos);
    x = this.runBlocks(x, B, S, gh, gw, free);
    if (this.w.norm) {
      const n = layerNorm(x, this.w.norm.weight, this.w.norm.bias, BLOCK_EPS);
      free(x);
      x = n;
    }
    const summary = gatherRows(x, this.summaryIdxs);
    let features = sliceRows(x, S, S + gh * gw);
    if (this.w.featureNormalizer) {
      const f = linear(features, this.w.featureNormalizer.weight, this.w.featureNormalizer.bias);
      free(features);
      features = f;
    }
    const out: Record<string, RadioHeadOutput> = { backbone: { summary: summary.reshape([B, this.summaryIdxs.length * c.embedDim]), features } };
    free(summary);
    for (const a of this.w.adaptors) {
      const rows = gatherRows(x, [a.headIdx]);
      const s = rows.reshape([B, c.embedDim]);
      free(rows);
      out[a.name] = { summary: a.summary.forward(s, free), features: a.feature.forward(features, free) };
      free(s);
    }
    free(x);
    return out as RadioOutput;
  }

  // Global blocks see all S + N tokens. In ViTDet mode the prefix tokens sit out windowed blocks entirely (spec
  // §2.1): they are set aside when windows start and put back, unchanged, when global attention resumes. The
  // attention op reads windows straight from the raster layout, so no reordering is needed.
  private runBlocks(x: Tensor, B: number, S: number, gh: number, gw: number, free: (t: Tensor) => void): Tensor {
    const c = this.config;
    const schedule = c.vitdet?.windowed ?? new Array<boolean>(c.depth).fill(false);
    let prefix: Tensor | null = null;
    for (let i = 0; i < this.w.blocks.length; i++) {
      const windowed = schedule[i];
      if (windowed && !prefix) {
        prefix = sliceRows(x, 0, S);
        const p = sliceRows(x, S, S + gh * gw);
        free(x);
        x = p;
      } else if (!windowed && prefix) {
        const joined = assembleTokens(prefix, x);
        free(prefix);
        free(x);
        prefix = null;
        x = joined;
      }
      const window = windowed ? { size: c.vitdet!.windowSize, gridH: gh, gridW: gw } : undefined;
      const next = this.block(this.w.blocks[i], x, window ? 0 : S, window, free);
      free(x);
      x = next;
    }
    return x;
  }

  private block(b: Block, x: Tensor, prefix: number, window: { size: number; gridH: number; gridW: number } | undefined, free: (t: Tensor) => void): Tensor {
    const h1 = layerNorm(x, b.norm1.weight, b.norm1.bias, BLOCK_EPS);
    const qkv = linear(h1, b.qkv.weight, b.qkv.bias);
    free(h1);
    const a = attention(qkv, { heads: this.config.heads, prefix, window });
    free(qkv);
    const x1 = linear(a, b.proj.weight, b.proj.bias, { residual: x });
    free(a);
    const h2 = layerNorm(x1, b.norm2.weight, b.norm2.bias, BLOCK_EPS);
    const m = linear(h2, b.fc1.weight, b.fc1.bias, { activation: 'gelu' });
    free(h2);
    const out = linear(m, b.fc2.weight, b.fc2.bias, { residual: x1 });
    free(m);
    free(x1);
    return out;
  }

  /** Every learned weight (the input conditioner's mean and std are buffers, not included). */
  parameters(): Tensor[] {
    return this.tensors.filter((t) => t !== this.w.mean && t !== this.w.std);
  }

  /** Frees every weight now; the model cannot be used afterwards. */
  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.disposed = true;
  }
}
