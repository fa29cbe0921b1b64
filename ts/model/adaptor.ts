// Adaptor heads (spec §4.3, RADIO's adaptor_mlp.py, adaptor_attn.py): MLP v2, `[pre_norm: LN + GELU] → fc1 →
// (x + Linear(GELU(LN(x))))·num_inner → LN → GELU → Linear`, then, with upsample_factor u > 1, a pixel shuffle of
// each patch's u²·C outputs into a u × u block of a u× finer map; MLP v1, `fc1 → LN → ReLU → (Linear → LN →
// ReLU)·num_inner → fc2` (ReLU, not GELU, and no residual); the attention feature head AttnFDHead, two timm blocks
// over the patch features, then an MLP v2 without inner blocks; and the GenericAdaptor that pairs a summary head
// (head_mlp) with a feature head (feat_mlp).
// Every MLP LayerNorm here uses eps 1e-5 (torch's default), unlike the backbone's 1e-6. Module and key names follow
// RADIO's: v2 pre_norm.0, fc1, blocks.{k}.0 / .2, final.0 / .2 (the GELUs hold the odd Sequential slots); v1 fc1,
// norm, inner.{3k} / .{3k+1} (the ReLUs hold the slots 3k+2), fc2; attn blocks.{0,1}.* (timm Block keys) and mlp.*.
import { Gelu, LayerNorm, LayerOptions, Linear } from '../nn/layers';
import { Module, ModuleList, Sequential } from '../nn/module';
import { relu } from '../ops/activation';
import { gatherRows } from '../ops/tokens';
import { Tensor } from '../tensor';
import type { AdaptorConfig, MlpHeadConfig } from './config';
import { Block } from './vit';

const EPS = 1e-5;

// LN → GELU → Linear, the shape of every MLP v2 stage; the norm and linear are kept typed for the fused calls.
class NormGeluLinear extends Sequential {
  readonly norm: LayerNorm;
  readonly linear: Linear;

  constructor(dim: number, out: number, opts: LayerOptions) {
    const norm = new LayerNorm(dim, EPS, opts);
    const linear = new Linear(dim, out, opts);
    super([norm, new Gelu(), linear]);
    this.norm = norm;
    this.linear = linear;
  }

  /** linear(GELU(LN(x))), with the residual (if any) fused into the GEMM. */
  apply(x: Tensor, residual?: Tensor): Tensor {
    return this.linear.forward((this.at(1) as Gelu).forward(this.norm.forward(x)), { residual });
  }
}

class NormGelu extends Sequential {
  constructor(dim: number, opts: LayerOptions) {
    super([new LayerNorm(dim, EPS, opts), new Gelu()]);
  }
}

class Relu extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/** RADIO's flat `inner` Sequential: num_inner × (Linear, LayerNorm, ReLU), keys inner.{3k}, inner.{3k+1}. */
class InnerV1 extends Sequential {
  constructor(numInner: number, dim: number, opts: LayerOptions) {
    super(Array.from({ length: numInner }, () => [new Linear(dim, dim, opts), new LayerNorm(dim, EPS, opts), new Relu()]).flat());
  }
}

export class MlpV1 extends Module {
  readonly fc1: Linear;
  readonly norm: LayerNorm;
  readonly inner: InnerV1 | null;
  readonly fc2: Linear;

  constructor(readonly config: MlpHeadConfig, opts: LayerOptions = {}) {
    super();
    const { inputDim, hiddenDim, outputDim, numInner } = config;
    this.fc1 = this.registerModule('fc1', new Linear(inputDim, hiddenDim, opts));
    this.norm = this.registerModule('norm', new LayerNorm(hiddenDim, EPS, opts));
    // num_inner 0 is an nn.Identity in RADIO: no keys.
    this.inner = numInner > 0 ? this.registerModule('inner', new InnerV1(numInner, hiddenDim, opts)) : null;
    this.fc2 = this.registerModule('fc2', new Linear(hiddenDim, outputDim, opts));
  }

  /** x [..., D] → [..., output dim]. */
  forward(x: Tensor): Tensor {
    let h = relu(this.norm.forward(this.fc1.forward(x)));
    if (this.inner) h = this.inner.forward(h);
    return this.fc2.forward(h);
  }
}

export class MlpV2 extends Module {
  readonly preNorm: NormGelu | null;
  readonly fc1: Linear;
  readonly blocks: ModuleList<NormGeluLinear>;
  readonly final: NormGeluLinear;

  constructor(readonly config: MlpHeadConfig, opts: LayerOptions & { preNorm?: boolean } = {}) {
    super();
    const { inputDim, hiddenDim, outputDim, numInner } = config;
    this.preNorm = opts.preNorm ? this.registerModule('pre_norm', new NormGelu(inputDim, opts)) : null;
    this.fc1 = this.registerModule('fc1', new Linear(inputDim, hiddenDim, opts));
    this.blocks = this.registerModule('blocks', new ModuleList(Array.from({ length: numInner }, () => new NormGeluLinear(hiddenDim, hiddenDim, opts))));
    this.final = this.registerModule('final', new NormGeluLinear(hiddenDim, outputDim, opts));
  }

  /**
   * x [..., D] → [..., output dim]; an upsampling head (u > 1) needs x as [B, gh·gw, D] and the patch grid, and
   * returns [B, (gh·u)·(gw·u), output dim / u²] in raster order of the finer grid.
   */
  forward(x: Tensor, grid?: readonly [number, number]): Tensor {
    let h = this.fc1.forward(this.preNorm ? this.preNorm.forward(x) : x);
    for (const b of this.blocks) h = b.apply(h, h);
    const y = this.final.apply(h);
    const u = this.config.upsampleFactor;
    return u > 1 ? pixelShuffle(y, u, grid) : y;
  }
}

/**
 * RADIO's `b (h w) (u1 u2 c) -> b (h u1 w u2) c`: the u²·C outputs of patch (y, x) are, as u² rows of C, the
 * u × u block at (y·u, x·u) of the finer grid. As rows of C that is a fixed permutation, one gather.
 */
function pixelShuffle(y: Tensor, u: number, grid: readonly [number, number] | undefined): Tensor {
  if (!grid) throw new Error(`adaptor feature head: upsample_factor ${u} needs the patch grid`);
  const [gh, gw] = grid;
  const [B, N, C] = y.shape;
  if (y.shape.length !== 3 || N !== gh * gw) throw new Error(`adaptor feature head: features [${y.shape.join(', ')}] are not the ${gh}x${gw} patch grid`);
  const c = C / (u * u);
  const W = gw * u;
  const index = new Int32Array(N * u * u);
  for (let Y = 0; Y < gh * u; Y++)
    for (let X = 0; X < W; X++) index[Y * W + X] = (Math.floor(Y / u) * gw + Math.floor(X / u)) * u * u + (Y % u) * u + (X % u);
  return gatherRows(y.reshape([B, N * u * u, c]), index);
}

// What AttnFDHead passes timm's Block (the rest are Block's defaults: mlp_ratio 4, LayerNorm eps 1e-6 and, unlike
// the blocks timm's VisionTransformer builds, no qkv bias).
const ATTN_HEAD_HEADS = 16;
const ATTN_HEAD_LAYER_SCALE = 1e-5;

/**
 * RADIO's AttnFDHead: two timm `Block(D, num_heads=16, init_values=1e-5)` (timm's LayerScale, `gamma`) over the
 * patch features, then an MLP v2 with no inner blocks whatever num_inner says, as RADIO builds it. The 16 heads are
 * fixed by RADIO, so the head dim is D / 16 (80 for ViT-H, 64 for ViT-L).
 */
export class AttnFdHead extends Module {
  readonly blocks: ModuleList<Block>;
  readonly mlp: MlpV2;

  constructor(readonly config: MlpHeadConfig, opts: LayerOptions & { preNorm?: boolean } = {}) {
    super();
    const { preNorm, ...layer } = opts;
    const D = config.inputDim;
    if (D % ATTN_HEAD_HEADS !== 0) throw new Error(`attention feature head: width ${D} is not a multiple of its ${ATTN_HEAD_HEADS} heads`);
    const block = () => new Block(D, 4 * D, ATTN_HEAD_HEADS, { ...layer, layerScale: ATTN_HEAD_LAYER_SCALE, layerScaleName: 'gamma', qkvBias: false });
    this.blocks = this.registerModule('blocks', new ModuleList([block(), block()]));
    this.mlp = this.registerModule('mlp', new MlpV2({ ...config, version: 'v2', numInner: 0 }, { ...layer, preNorm }));
  }

  /** x [B, N, D] (patch features, no prefix tokens) → [B, N, output dim]. */
  forward(x: Tensor, grid?: readonly [number, number]): Tensor {
    let h = x;
    for (const b of this.blocks) h = b.forward(h, 0);
    return this.mlp.forward(h, grid);
  }
}

export type MlpHead = MlpV1 | MlpV2 | AttnFdHead;

function makeHead(config: MlpHeadConfig, opts: LayerOptions, preNorm: boolean | undefined): MlpHead {
  if (config.version === 'v1') {
    // MLP v1 has no pre_norm option in RADIO.
    if (preNorm) throw new Error('the checkpoint has pre_norm weights for an MLP v1 adaptor head, which has no pre_norm');
    return new MlpV1(config, opts);
  }
  if (config.version === 'attn') return new AttnFdHead(config, { ...opts, preNorm });
  return new MlpV2(config, { ...opts, preNorm });
}

/** One teacher's heads: head_mlp on its cls token, feat_mlp on the patch features. */
export class GenericAdaptor extends Module {
  readonly headMlp: MlpHead;
  readonly featMlp: MlpHead;

  constructor(readonly config: AdaptorConfig, opts: LayerOptions & { summaryPreNorm?: boolean; featurePreNorm?: boolean } = {}) {
    super();
    this.headMlp = this.registerModule('head_mlp', makeHead(config.summary, opts, opts.summaryPreNorm));
    this.featMlp = this.registerModule('feat_mlp', makeHead(config.feature, opts, opts.featurePreNorm));
    // A teacher without a summary target sends no gradient to its summary head (RADIO leaves its .grad None).
    if (!config.useSummary) for (const p of this.headMlp.parameters()) p.requiresGrad = false;
  }
}
