// The RADIO student ViT as modules (spec §1.3–1.6), named as RADIO's module tree names them: patch_generator
// (embedder, pos_embed, cls_token.token), blocks.{i} (norm1, attn.qkv, attn.proj, ls1.grandma, norm2, mlp.fc1,
// mlp.fc2, ls2.grandma), norm; plus the input conditioner and the feature normalizer of the RADIO wrapper.
//
// LayerScale is folded into proj and fc2 (diag(γ)·W, γ ⊙ b) only while nothing is recorded for autograd: the
// folded copy is cached, rebuilt when a parameter it came from changed (Parameter.version), and dropped on every
// state change. A recorded forward (training) uses the live parameters, so each one gets its gradient.
import { needsGrad, noGrad } from '../autograd';
import { attention } from '../ops/attention';
import { linear } from '../ops/linear';
import { scaleRows } from '../nn/broadcast';
import { LayerNorm, LayerOptions, LayerScale, Linear, makeParameter } from '../nn/layers';
import { Module, ModuleList } from '../nn/module';
import type { Parameter } from '../nn/parameter';
import { escape, tidy } from '../scope';
import { full, Tensor } from '../tensor';

const BLOCK_EPS = 1e-6;

export interface WindowSpec {
  size: number;
  gridH: number;
  gridW: number;
}

class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(dim: number, opts: LayerOptions & { qkvBias: boolean }) {
    super();
    this.qkv = this.registerModule('qkv', new Linear(dim, 3 * dim, { ...opts, bias: opts.qkvBias }));
    this.proj = this.registerModule('proj', new Linear(dim, dim, opts));
  }
}

class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number, opts: LayerOptions) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(dim, hidden, opts));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, dim, opts));
  }
}

interface Folded {
  weight: Tensor;
  bias: Tensor;
  from: Parameter[];
  versions: number[];
}

/** A linear followed by a LayerScale, folded into one weight and bias; cached until a source parameter changes. */
class FoldedLinear {
  private cache: Folded | null = null;

  constructor(private readonly lin: Linear, private readonly ls: LayerScale) {}

  get(): { weight: Tensor; bias: Tensor } {
    const from = [this.lin.weight, this.lin.bias!, this.ls.gamma];
    const c = this.cache;
    if (c && c.from.every((p, i) => p === from[i] && p.version === c.versions[i])) return c;
    this.drop();
    const [w, b, g] = from;
    const folded = noGrad(() => tidy(() => ({ weight: scaleRows(w, g), bias: b.mul(g) })));
    escape(folded.weight);
    escape(folded.bias);
    this.cache = { ...folded, from, versions: from.map((p) => p.version) };
    return this.cache;
  }

  drop(): void {
    this.cache?.weight.dispose();
    this.cache?.bias.dispose();
    this.cache = null;
  }
}

export interface BlockOptions extends LayerOptions {
  /** LayerScale init value when the block has LayerScale. */
  layerScale?: number;
  /** LayerScale's parameter name: RADIO's backbone blocks use `grandma` (the default), plain timm blocks `gamma`. */
  layerScaleName?: string;
  /** Default true, as timm's VisionTransformer builds its blocks; a bare timm Block defaults to false. */
  qkvBias?: boolean;
}

/** timm's pre-norm ViT block (LayerNorm eps 1e-6, erf GELU). */
export class Block extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly ls1: LayerScale | null;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly ls2: LayerScale | null;
  private readonly folds: [FoldedLinear, FoldedLinear] | null;

  constructor(dim: number, hidden: number, readonly heads: number, opts: BlockOptions = {}) {
    super();
    const { layerScale, layerScaleName, qkvBias, ...layer } = opts;
    const ls = { ...layer, name: layerScaleName };
    this.norm1 = this.registerModule('norm1', new LayerNorm(dim, BLOCK_EPS, layer));
    this.attn = this.registerModule('attn', new Attention(dim, { ...layer, qkvBias: qkvBias ?? true }));
    this.ls1 = layerScale !== undefined ? this.registerModule('ls1', new LayerScale(dim, layerScale, ls)) : null;
    this.norm2 = this.registerModule('norm2', new LayerNorm(dim, BLOCK_EPS, layer));
    this.mlp = this.registerModule('mlp', new Mlp(dim, hidden, layer));
    this.ls2 = layerScale !== undefined ? this.registerModule('ls2', new LayerScale(dim, layerScale, ls)) : null;
    this.folds = this.ls1 && this.ls2 ? [new FoldedLinear(this.attn.proj, this.ls1), new FoldedLinear(this.mlp.fc2, this.ls2)] : null;
  }

  /**
   * ls(lin(h)), plus `residual` when given (fused into the GEMM where it can be); LayerScale folded in unless
   * autograd records. The mixed-precision path passes no residual: it adds the branch in the stream's dtype.
   */
  private branch(i: 0 | 1, lin: Linear, ls: LayerScale | null, h: Tensor, residual?: Tensor): Tensor {
    const fused = residual ? { residual } : {};
    if (!ls) return lin.forward(h, fused);
    if (!needsGrad([h, ls.gamma, lin.weight, lin.bias!, ...(residual ? [residual] : [])])) {
      const f = this.folds![i].get();
      return linear(h, f.weight, f.bias, fused);
    }
    const out = ls.forward(lin.forward(h));
    return residual ? residual.add(out) : out;
  }

  /**
   * Pre-norm residual block; `prefix` leading tokens are cls/registers (0 in window mode, where they sit out).
   * x in the weights' dtype runs everything in it. An f32 x on bf16 weights is mixed precision, as PyTorch's
   * autocast trains: the residual stream and the norms stay f32 and only the linears and attention run in bf16, so
   * the stream is not rounded to 8 bits at every block (that rounding was most of the bf16 gradient error left
   * against the reference's training step once the norm parameters were f32).
   */
  forward(x: Tensor, prefix: number, window?: WindowSpec): Tensor {
    const compute = this.attn.qkv.weight.dtype;
    if (x.dtype !== compute) {
      const low = (t: Tensor) => t.cast(compute);
      const a = attention(this.attn.qkv.forward(low(this.norm1.forward(x))), { heads: this.heads, prefix, window });
      const x1 = x.add(this.branch(0, this.attn.proj, this.ls1, a).cast(x.dtype));
      const m = this.mlp.fc1.forward(low(this.norm2.forward(x1)), { activation: 'gelu' });
      return x1.add(this.branch(1, this.mlp.fc2, this.ls2, m).cast(x.dtype));
    }
    const a = attention(this.attn.qkv.forward(this.norm1.forward(x)), { heads: this.heads, prefix, window });
    const x1 = this.branch(0, this.attn.proj, this.ls1, a, x);
    const m = this.mlp.fc1.forward(this.norm2.forward(x1), { activation: 'gelu' });
    return this.branch(1, this.mlp.fc2, this.ls2, m, x1);
  }

  protected override stateChanged(): void {
    for (const f of this.folds ?? []) f.drop();
  }
}

class ClsToken extends Module {
  constructor(rows: number, dim: number, opts: LayerOptions) {
    super();
    this.registerParameter('token', makeParameter([rows, dim], opts, { normal: dim ** -0.5 }));
  }
  get token(): Parameter {
    return this.param('token');
  }
}

/** Patch embedding (no bias), the CPE position table and the prefix tokens. */
export class PatchGenerator extends Module {
  readonly embedder: Linear;
  readonly clsToken: ClsToken;

  constructor(patch: number, dim: number, readonly grid: number, prefixRows: number, opts: LayerOptions) {
    super();
    this.embedder = this.registerModule('embedder', new Linear(3 * patch * patch, dim, { ...opts, bias: false }));
    this.registerParameter('pos_embed', makeParameter([1, grid * grid, dim], opts, { normal: dim ** -0.5 }));
    this.clsToken = this.registerModule('cls_token', new ClsToken(prefixRows, dim, opts));
  }

  get posEmbed(): Parameter {
    return this.param('pos_embed');
  }
}

export interface VitShape {
  patchSize: number;
  embedDim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  cpeGrid: number;
  prefixRows: number;
  /** LayerScale init value when the blocks have LayerScale. */
  layerScale?: number;
  modelNorm: boolean;
}

/** RADIO's `model`: patch_generator, blocks, and the final norm when args.model_norm. */
export class VisionTransformer extends Module {
  readonly patchGenerator: PatchGenerator;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm | null;

  constructor(readonly shape: VitShape, opts: LayerOptions) {
    super();
    const { patchSize, embedDim: D, depth, heads, mlpHidden, cpeGrid, prefixRows } = shape;
    this.patchGenerator = this.registerModule('patch_generator', new PatchGenerator(patchSize, D, cpeGrid, prefixRows, opts));
    const blocks = Array.from({ length: depth }, () => new Block(D, mlpHidden, heads, { ...opts, layerScale: shape.layerScale }));
    this.blocks = this.registerModule('blocks', new ModuleList(blocks));
    this.norm = shape.modelNorm ? this.registerModule('norm', new LayerNorm(D, BLOCK_EPS, opts)) : null;
  }
}

/** `input_conditioner`: the per-channel mean and std buffers, (3, 1, 1), kept in f32 (patchify computes in f32). */
export class InputConditioner extends Module {
  constructor(opts: LayerOptions) {
    super();
    for (const k of ['norm_mean', 'norm_std'])
      this.registerBuffer(k, full([3, 1, 1], k === 'norm_mean' ? 0 : 1, { device: opts.device, dtype: 'f32' }));
  }
  get mean(): Tensor {
    return this.buffer('norm_mean');
  }
  get std(): Tensor {
    return this.buffer('norm_std');
  }
}

/** `feature_normalizer` (spec §4.2): f ↦ (f − mean)·txᵀ, buffers only, run as one linear with bias −tx·mean. */
export class FeatureNormalizer extends Module {
  private bias: Tensor | null = null;

  constructor(dim: number, opts: LayerOptions) {
    super();
    const o = { device: opts.device, dtype: opts.dtype };
    this.registerBuffer('mean', full([dim], 0, o));
    this.registerBuffer('tx', full([dim, dim], 0, o));
  }

  forward(f: Tensor): Tensor {
    const tx = this.buffer('tx');
    if (!this.bias) {
      const mean = this.buffer('mean');
      this.bias = escape(noGrad(() => tidy(() => linear(mean.reshape([1, mean.numel]), tx).scale(-1).reshape([mean.numel]))));
    }
    return linear(f, tx, this.bias);
  }

  protected override stateChanged(): void {
    this.bias?.dispose();
    this.bias = null;
  }
}
