// E-RADIO's convolutional pieces (spec §2.2, radio/eradio_model.py): Conv2d_BN and YOLOv8's Conv (conv + BatchNorm
// [+ SiLU]), the C2f stage block with its Bottlenecks, the stem, the stride-2 Downsample and the neck's projection.
// In eval mode without autograd every BatchNorm runs folded into its conv (what the reference's switch_to_deploy
// does, numerically the same in eval), cached until a parameter changes; otherwise conv and BatchNorm run apart,
// BatchNorm with batch statistics in training.
import { needsGrad, noGrad } from '../../autograd';
import { foldBatchNorm } from '../../ops/batchnorm';
import { cat, chunk, narrow, pad2d } from '../../ops/layout';
import { interpolate } from '../../ops/interpolate';
import { silu, relu } from '../../ops/activation';
import type { ActivationKind } from '../../ops/activation';
import { escape, tidy } from '../../scope';
import type { Tensor } from '../../tensor';
import { BatchNorm2d, Conv2d } from '../../nn/conv';
import type { LayerOptions } from '../../nn/layers';
import { Module, ModuleDict, ModuleList } from '../../nn/module';
import type { Parameter } from '../../nn/parameter';

/** BatchNorm folded into the preceding conv's weight and bias, kept until one of its sources changes. */
export class FoldCache {
  private cache: { weight: Tensor; bias: Tensor; versions: number[]; from: Tensor[] } | null = null;

  constructor(private readonly conv: Conv2d, private readonly bn: BatchNorm2d) {}

  get(): { weight: Tensor; bias: Tensor } {
    const from = [this.conv.weight, ...(this.conv.bias ? [this.conv.bias] : []), this.bn.weight, this.bn.bias];
    const versions = from.map((p) => (p as Parameter).version);
    const c = this.cache;
    if (c && c.from.every((p, i) => p === from[i] && versions[i] === c.versions[i])) return c;
    this.drop();
    const folded = noGrad(() => tidy(() => {
      const st = this.bn.state;
      const f = foldBatchNorm(this.conv.weight.detach(), this.conv.bias?.detach(), {
        weight: st.weight.detach(), bias: st.bias.detach(), runningMean: st.runningMean, runningVar: st.runningVar, eps: st.eps,
      });
      const dt = this.conv.weight.dtype;
      return { weight: f.weight.dtype === dt ? f.weight : f.weight.cast(dt), bias: f.bias.dtype === dt ? f.bias : f.bias.cast(dt) };
    }));
    this.cache = { weight: escape(folded.weight), bias: escape(folded.bias), versions, from };
    return this.cache;
  }

  drop(): void {
    this.cache?.weight.dispose();
    this.cache?.bias.dispose();
    this.cache = null;
  }
}

/** conv → BatchNorm → activation → + residual: folded into one conv when nothing needs the unfolded graph. */
export function convBN(training: boolean, conv: Conv2d, bn: BatchNorm2d, fold: FoldCache, x: Tensor, activation?: ActivationKind, residual?: Tensor): Tensor {
  const sources = [x, conv.weight, ...(conv.bias ? [conv.bias] : []), bn.weight, bn.bias, ...(residual ? [residual] : [])];
  if (!training && !needsGrad(sources)) {
    const f = fold.get();
    return conv.run(x, f.weight, f.bias, { activation, residual });
  }
  let y = bn.forward(conv.forward(x));
  if (activation === 'silu') y = silu(y);
  else if (activation === 'relu') y = relu(y);
  else if (activation) throw new Error(`ConvBN: activation ${activation} is not used by E-RADIO`);
  return residual ? residual.add(y) : y;
}

export interface ConvBNOptions extends LayerOptions {
  stride?: number;
  padding?: number;
  groups?: number;
  /** The conv's own bias (the neck's depthwise conv has one; Conv2d_BN and Conv do not). */
  convBias?: boolean;
  /** Applied after the BatchNorm: YOLOv8's Conv uses SiLU, Conv2d_BN none. */
  activation?: ActivationKind;
}

/** Conv2d_BN / YOLOv8's Conv: conv → BatchNorm [→ activation] [+ residual]; keys `conv.*`, `bn.*`. */
export class ConvBN extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  private readonly fold: FoldCache;
  private readonly activation?: ActivationKind;

  constructor(inC: number, outC: number, k: number, opts: ConvBNOptions = {}) {
    super();
    const { stride, padding, groups, convBias, activation, ...layer } = opts;
    this.conv = this.registerModule('conv', new Conv2d(inC, outC, k, { ...layer, stride, padding, groups, bias: convBias ?? false }));
    this.bn = this.registerModule('bn', new BatchNorm2d(outC, 1e-5, 0.1, layer));
    this.fold = new FoldCache(this.conv, this.bn);
    this.activation = activation;
  }

  protected override stateChanged(): void {
    this.fold?.drop();
  }

  forward(x: Tensor, residual?: Tensor): Tensor {
    return convBN(this.training, this.conv, this.bn, this.fold, x, this.activation, residual);
  }
}

/** YOLOv8's Conv: k×k, "same" padding k//2, no conv bias, BatchNorm, SiLU. */
function yoloConv(inC: number, outC: number, k: number, opts: LayerOptions): ConvBN {
  return new ConvBN(inC, outC, k, { ...opts, padding: k >> 1, activation: 'silu' });
}

/** y + cv2(cv1(y)), both 3×3 YOLO convs (shortcut, e = 1). */
class Bottleneck extends Module {
  readonly cv1: ConvBN;
  readonly cv2: ConvBN;
  constructor(c: number, opts: LayerOptions) {
    super();
    this.cv1 = this.registerModule('cv1', yoloConv(c, c, 3, opts));
    this.cv2 = this.registerModule('cv2', yoloConv(c, c, 3, opts));
  }
  forward(x: Tensor): Tensor {
    return this.cv2.forward(this.cv1.forward(x), x);
  }
}

/** YOLOv8's C2f(c, c, n, shortcut=True, e=0.5): split the 1×1 projection in two, grow n Bottlenecks off the second half, project the concatenation. */
export class C2f extends Module {
  readonly cv1: ConvBN;
  readonly cv2: ConvBN;
  readonly m: ModuleList<Bottleneck>;

  constructor(c: number, n: number, opts: LayerOptions) {
    super();
    const h = c >> 1;
    this.cv1 = this.registerModule('cv1', yoloConv(c, 2 * h, 1, opts));
    this.cv2 = this.registerModule('cv2', yoloConv((2 + n) * h, c, 1, opts));
    this.m = this.registerModule('m', new ModuleList(Array.from({ length: n }, () => new Bottleneck(h, opts))));
  }

  forward(x: Tensor): Tensor {
    const ys = chunk(this.cv1.forward(x), 2, 1);
    for (const b of this.m) ys.push(b.forward(ys[ys.length - 1]));
    return this.cv2.forward(cat(ys, 1));
  }
}

/** The stem: Conv2d_BN(3, inDim, 3, s2, p1), ReLU, Conv2d_BN(inDim, dim, 3, s2, p1), ReLU → H/4; keys conv_down.{0,2}. */
export class PatchEmbed extends Module {
  private readonly convs: [ConvBN, ConvBN];
  constructor(inDim: number, dim: number, opts: LayerOptions) {
    super();
    const a = new ConvBN(3, inDim, 3, { ...opts, stride: 2, padding: 1, activation: 'relu' });
    const b = new ConvBN(inDim, dim, 3, { ...opts, stride: 2, padding: 1, activation: 'relu' });
    // Sequential indices 0 and 2 (1 and 3 are the parameterless ReLUs).
    this.registerModule('conv_down', new ModuleDict([['0', a], ['2', b]]));
    this.convs = [a, b];
  }
  forward(x: Tensor): Tensor {
    return this.convs[1].forward(this.convs[0].forward(x));
  }
}

/** Downsample: Conv2d_BN(c, 2c, 3, s2, p1), no activation; key `reduction`. */
export class Downsample extends Module {
  readonly reduction: ConvBN;
  constructor(c: number, opts: LayerOptions) {
    super();
    this.reduction = this.registerModule('reduction', new ConvBN(c, 2 * c, 3, { ...opts, stride: 2, padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    return this.reduction.forward(x);
  }
}

/**
 * The neck's projection of one stage: nearest ×u, depthwise 3×3 conv (with bias) + BatchNorm (`conv1`, `norm`),
 * 1×1 conv to the neck width (`conv2`). Identity when u is 1 and the stage already has the neck's width.
 */
export class NeckProjection extends Module {
  private readonly parts: { conv1: Conv2d; norm: BatchNorm2d; conv2: Conv2d; fold: FoldCache } | null = null;

  constructor(c: number, out: number, readonly upsample: number, opts: LayerOptions) {
    super();
    if (upsample === 1 && c === out) return;
    const conv1 = this.registerModule('conv1', new Conv2d(c, c, 3, { ...opts, padding: 1, groups: c, bias: true }));
    const norm = this.registerModule('norm', new BatchNorm2d(c, 1e-5, 0.1, opts));
    const conv2 = this.registerModule('conv2', new Conv2d(c, out, 1, { ...opts, bias: true }));
    this.parts = { conv1, norm, conv2, fold: new FoldCache(conv1, norm) };
  }

  protected override stateChanged(): void {
    this.parts?.fold.drop();
  }

  forward(x: Tensor): Tensor {
    const p = this.parts;
    if (!p) return x;
    const [, , h, w] = x.shape;
    const up = this.upsample === 1 ? x : interpolate(x, { size: [h * this.upsample, w * this.upsample], mode: 'nearest' });
    return p.conv2.forward(convBN(this.training, p.conv1, p.norm, p.fold, up));
  }
}

/** x [N, C, h, w] cropped at the bottom/right to at most H × W, then padded there (zeros or reflected) to H × W: F.pad with (0, W − w, 0, H − h). */
export function cropOrPad(x: Tensor, H: number, W: number, mode: 'zero' | 'reflect'): Tensor {
  let y = x;
  if (y.shape[2] > H) y = narrow(y, 2, 0, H);
  if (y.shape[3] > W) y = narrow(y, 3, 0, W);
  if (y.shape[2] < H || y.shape[3] < W) y = pad2d(y, [0, W - y.shape[3], 0, H - y.shape[2]], mode);
  return y;
}
