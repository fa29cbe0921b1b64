// E-RADIO's transformer pieces (spec §2.2): the SwinV2 continuous position bias, windowed attention over it, and the
// GRA block (optionally sub-sampled attention between a down- and an up-projection, averaged with its input).
// Tokens stay in raster order: ops.attention reads the windows straight from it, and LayerNorm and the MLP are per
// token, so no window partition is ever materialised.
import { needsGrad, noGrad } from '../../autograd';
import { sigmoid } from '../../ops/activation';
import { attention } from '../../ops/attention';
import { conv2d } from '../../ops/conv';
import { interpolate } from '../../ops/interpolate';
import { permute } from '../../ops/layout';
import { linear } from '../../ops/linear';
import { gatherRows } from '../../ops/tokens';
import { escape, tidy } from '../../scope';
import { full, tensor, Tensor } from '../../tensor';
import { Conv2d, ConvTranspose2d } from '../../nn/conv';
import { LayerNorm, LayerOptions, Linear } from '../../nn/layers';
import { Module, ModuleDict } from '../../nn/module';
import type { Parameter } from '../../nn/parameter';
import { ConvBN, cropOrPad } from './blocks';
import { cpbCoordinates, cpbIndex } from './cpb';

/** nn.LayerNorm's default eps, which E-RADIO's blocks keep. */
const NORM_EPS = 1e-5;

/**
 * PosEmbMLPSwinv2D: bias [heads, L, L] = 16·sigmoid(MLP(log-spaced Δ table))[index], L = ws². Keys
 * `cpb_mlp.0` (Linear 2 → hidden, bias) and `cpb_mlp.2` (Linear hidden → heads, no bias); the reference's
 * coordinate, index and cached-bias buffers are derived from the window size instead (ts/model/eradio/cpb.ts).
 */
export class PositionBias extends Module {
  private readonly fc1: Linear;
  private readonly fc2: Linear;
  private cache: { ws: number; bias: Tensor; versions: number[]; from: Parameter[] } | null = null;

  constructor(hidden: number, readonly heads: number, readonly pretrainedWindow: number, opts: LayerOptions) {
    super();
    this.fc1 = new Linear(2, hidden, opts);
    this.fc2 = new Linear(hidden, heads, { ...opts, bias: false });
    this.registerModule('cpb_mlp', new ModuleDict<Linear>([['0', this.fc1], ['2', this.fc2]]));
  }

  protected override stateChanged(): void {
    this.cache?.bias.dispose();
    this.cache = null;
  }

  private compute(ws: number): Tensor {
    const n = (2 * ws - 1) ** 2;
    const device = this.fc1.weight.device;
    const coords = tensor(cpbCoordinates(ws, this.pretrainedWindow), [n, 2], { device }).cast(this.fc1.weight.dtype);
    const table = linear(linear(coords, this.fc1.weight, this.fc1.bias, { activation: 'relu' }), this.fc2.weight);
    const L = ws * ws;
    const rows = gatherRows(table.reshape([1, n, this.heads]), cpbIndex(ws)).reshape([L * L, this.heads]);
    return sigmoid(permute(rows, [1, 0]).reshape([this.heads, L, L])).scale(16);
  }

  /** The bias for windows of ws × ws; cached across eval calls, recomputed (and differentiable) when training. */
  forward(ws: number): Tensor {
    const from = [this.fc1.weight, this.fc1.bias!, this.fc2.weight];
    if (this.training || needsGrad(from)) return this.compute(ws);
    const versions = from.map((p) => p.version);
    const c = this.cache;
    if (c && c.ws === ws && c.from.every((p, i) => p === from[i] && versions[i] === c.versions[i])) return c.bias;
    this.stateChanged();
    const bias = escape(noGrad(() => tidy(() => this.compute(ws))));
    this.cache = { ws, bias, versions, from };
    return bias;
  }
}

class WindowAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly posEmb: PositionBias;

  constructor(dim: number, readonly heads: number, window: number, cpbHidden: number, qkvBias: boolean, opts: LayerOptions) {
    super();
    this.qkv = this.registerModule('qkv', new Linear(dim, 3 * dim, { ...opts, bias: qkvBias }));
    this.proj = this.registerModule('proj', new Linear(dim, dim, { ...opts, bias: false }));
    this.posEmb = this.registerModule('pos_emb_funct', new PositionBias(cpbHidden, heads, window, opts));
  }

  /** tokens [B, h·w, C] in raster order → tokens + proj(attention in ws × ws windows). */
  forward(x: Tensor, residual: Tensor, h: number, w: number, ws: number): Tensor {
    const bias = this.posEmb.forward(ws);
    const y = attention(this.qkv.forward(x), { heads: this.heads, window: { size: ws, gridH: h, gridW: w }, bias });
    return this.proj.forward(y, { residual });
  }
}

class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, opts: LayerOptions) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(dim, 4 * dim, { ...opts, bias: false }));
    this.fc2 = this.registerModule('fc2', new Linear(4 * dim, dim, { ...opts, bias: false }));
  }
  forward(x: Tensor, residual: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x, { activation: 'gelu' }), { residual });
  }
}

export interface GraOptions extends LayerOptions {
  /** Sub-sampling ratio of this block's attention (1: none, with a 3×3 pre-conv instead). */
  sr: number;
  heads: number;
  /** The window the block was built with (the CPB's pretrained window). */
  window: number;
  convBase: boolean;
  cpbHidden: number;
  convGroupsRatio: number;
  qkvBias: boolean;
}

/** GRAAttentionBlock (spec §2.2); x NCHW with H, W multiples of sr·ws (the layer's resize sees to that). */
export class GraBlock extends Module {
  readonly sr: number;
  private readonly preConv: ConvBN | null = null;
  private readonly downConv: Conv2d | null = null;
  private readonly downMixer: ConvBN | null = null;
  private readonly upConv: ConvTranspose2d | null = null;
  private readonly upOp: ConvBN | null = null;
  readonly norm1: LayerNorm;
  readonly attn: WindowAttention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  private pool: Tensor | null = null;

  constructor(readonly dim: number, o: GraOptions) {
    super();
    const { sr, heads, window, convBase, cpbHidden, convGroupsRatio, qkvBias, ...layer } = o;
    this.sr = sr;
    if (sr > 1 && convBase) {
      this.downConv = this.registerModule('downsample_op', new Conv2d(dim, dim, sr, { ...layer, stride: sr, bias: true }));
      this.upConv = this.registerModule('upsample_op', new ConvTranspose2d(dim, dim, sr, { ...layer, stride: sr, bias: true }));
    } else if (sr > 1) {
      this.downMixer = this.registerModule('downsample_mixer', new ConvBN(dim, dim, 1, layer));
      this.upOp = this.registerModule('upsample_op', new ConvBN(dim, dim, 1, layer));
    } else {
      const groups = Math.max(1, Math.trunc(convGroupsRatio * dim));
      this.preConv = this.registerModule('pre_conv', new ConvBN(dim, dim, 3, { ...layer, padding: 1, groups }));
    }
    this.norm1 = this.registerModule('norm1', new LayerNorm(dim, NORM_EPS, layer));
    this.attn = this.registerModule('attn', new WindowAttention(dim, heads, window, cpbHidden, qkvBias, layer));
    this.norm2 = this.registerModule('norm2', new LayerNorm(dim, NORM_EPS, layer));
    this.mlp = this.registerModule('mlp', new Mlp(dim, layer));
  }

  /** AvgPool2d(sr) as a depthwise conv of weight 1/sr² (exact: a power-of-two scale). */
  private avgPool(x: Tensor): Tensor {
    if (!this.pool || this.pool.dtype !== x.dtype || this.pool.device !== x.device) {
      this.pool?.dispose();
      this.pool = escape(noGrad(() => full([this.dim, 1, this.sr, this.sr], 1 / (this.sr * this.sr), { device: x.device, dtype: x.dtype })));
    }
    return conv2d(x, this.pool, undefined, { stride: this.sr, groups: this.dim });
  }

  protected override stateChanged(): void {
    this.pool?.dispose();
    this.pool = null;
  }

  forward(x: Tensor, ws: number): Tensor {
    const skip = x;
    let y = x;
    if (this.preConv) y = this.preConv.forward(y, skip);
    if (this.downConv) y = this.downConv.forward(y);
    else if (this.downMixer) y = this.downMixer.forward(this.avgPool(y));
    const [B, C, h, w] = y.shape;
    let t = permute(y, [0, 2, 3, 1]).reshape([B, h * w, C]);
    t = this.attn.forward(this.norm1.forward(t), t, h, w, ws);
    t = this.mlp.forward(this.norm2.forward(t), t);
    y = permute(t.reshape([B, h, w, C]), [0, 3, 1, 2]);
    if (this.upConv) y = this.upConv.forward(y);
    else if (this.upOp) y = this.upOp.forward(interpolate(y, { size: [h * this.sr, w * this.sr], mode: 'nearest' }));
    // F.pad(x, (0, W − w, 0, H − h), mode='reflect'), as the reference sizes the up-projected map.
    y = cropOrPad(y, skip.shape[2], skip.shape[3], 'reflect');
    return y.scale(0.5).add(skip.scale(0.5));
  }
}
