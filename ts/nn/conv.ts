// Convolution layers (PyTorch's Conv2d, ConvTranspose2d and BatchNorm2d, same keys and layouts), each a thin module
// over one op. BatchNorm2d keeps f32 parameters and statistics in a bf16 model (mixed precision, as autocast runs
// norms), uses batch statistics and updates its running ones in training mode, and the running ones in eval.
import { noGrad } from '../autograd';
import { batchNorm2d } from '../ops/batchnorm';
import { conv2d, Conv2dOptions, convTranspose2d } from '../ops/conv';
import { full, Tensor } from '../tensor';
import { LayerOptions, makeParameter } from './layers';
import { Module } from './module';

type Pair = number | readonly [number, number];

export interface Conv2dLayerOptions extends LayerOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  /** Default true. */
  bias?: boolean;
}

const pairOf = (v: Pair | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function check(op: string, ...ds: number[]): void {
  for (const d of ds) if (!Number.isInteger(d) || d <= 0) throw new Error(`${op}: sizes must be positive integers, got ${ds.join(', ')}`);
}

/** y = conv(x, W) + b, W [out, in/groups, kh, kw]; keys `weight`, `bias`. PyTorch's default initialisation. */
export class Conv2d extends Module {
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernel: Pair, opts: Conv2dLayerOptions = {}) {
    super();
    this.kernel = pairOf(kernel, 1);
    this.stride = pairOf(opts.stride, 1);
    this.padding = pairOf(opts.padding, 0);
    this.dilation = pairOf(opts.dilation, 1);
    this.groups = opts.groups ?? 1;
    check('Conv2d', inChannels, outChannels, ...this.kernel, this.groups);
    if (inChannels % this.groups || outChannels % this.groups)
      throw new Error(`Conv2d: groups ${this.groups} must divide the input (${inChannels}) and output (${outChannels}) channels`);
    const fanIn = (inChannels / this.groups) * this.kernel[0] * this.kernel[1];
    const bound = 1 / Math.sqrt(fanIn);
    this.registerParameter('weight', makeParameter([outChannels, inChannels / this.groups, ...this.kernel], opts, { uniform: bound }));
    if (opts.bias ?? true) this.registerParameter('bias', makeParameter([outChannels], { ...opts, seed: opts.seed === undefined ? undefined : opts.seed + 1 }, { uniform: bound }));
  }

  get weight(): Tensor {
    return this.param('weight');
  }
  get bias(): Tensor | undefined {
    return this.hasParameter('bias') ? this.param('bias') : undefined;
  }

  /** The convolution's own geometry with another weight and bias (a folded BatchNorm's), plus a fused epilogue. */
  run(x: Tensor, weight: Tensor, bias: Tensor | undefined, epilogue: Pick<Conv2dOptions, 'activation' | 'residual'> = {}): Tensor {
    return conv2d(x, weight, bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups, ...epilogue });
  }

  forward(x: Tensor, epilogue: Pick<Conv2dOptions, 'activation' | 'residual'> = {}): Tensor {
    return this.run(x, this.weight, this.bias, epilogue);
  }
}

/** PyTorch's ConvTranspose2d: W [in, out/groups, kh, kw]; keys `weight`, `bias`. */
export class ConvTranspose2d extends Module {
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];

  constructor(readonly inChannels: number, readonly outChannels: number, kernel: Pair, opts: LayerOptions & { stride?: Pair; padding?: Pair; bias?: boolean } = {}) {
    super();
    this.kernel = pairOf(kernel, 1);
    this.stride = pairOf(opts.stride, 1);
    this.padding = pairOf(opts.padding, 0);
    check('ConvTranspose2d', inChannels, outChannels, ...this.kernel);
    // PyTorch's fan-in of a transposed conv weight [in, out, kh, kw] is out·kh·kw.
    const bound = 1 / Math.sqrt(outChannels * this.kernel[0] * this.kernel[1]);
    this.registerParameter('weight', makeParameter([inChannels, outChannels, ...this.kernel], opts, { uniform: bound }));
    if (opts.bias ?? true) this.registerParameter('bias', makeParameter([outChannels], { ...opts, seed: opts.seed === undefined ? undefined : opts.seed + 1 }, { uniform: bound }));
  }

  get weight(): Tensor {
    return this.param('weight');
  }
  get bias(): Tensor | undefined {
    return this.hasParameter('bias') ? this.param('bias') : undefined;
  }

  forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/**
 * BatchNorm2d over the channels of NCHW: keys `weight`, `bias` (parameters) and `running_mean`, `running_var`
 * (buffers, f32). PyTorch's `num_batches_tracked` only matters for momentum=None, which this layer does not
 * offer, so it is not kept (a checkpoint's is ignored by the loaders that know it).
 */
export class BatchNorm2d extends Module {
  constructor(readonly channels: number, readonly eps = 1e-5, readonly momentum = 0.1, opts: LayerOptions = {}) {
    super();
    check('BatchNorm2d', channels);
    if (!(eps > 0)) throw new Error(`BatchNorm2d: eps must be positive, got ${eps}`);
    if (!(momentum >= 0 && momentum <= 1)) throw new Error(`BatchNorm2d: momentum must be in [0, 1], got ${momentum}`);
    const f32 = { ...opts, dtype: 'f32' as const };
    this.registerParameter('weight', makeParameter([channels], f32, { fill: 1 }));
    this.registerParameter('bias', makeParameter([channels], f32, { fill: 0 }));
    const device = opts.device ?? 'cpu';
    this.registerBuffer('running_mean', noGrad(() => full([channels], 0, { device, dtype: 'f32' })));
    this.registerBuffer('running_var', noGrad(() => full([channels], 1, { device, dtype: 'f32' })));
  }

  get weight(): Tensor {
    return this.param('weight');
  }
  get bias(): Tensor {
    return this.param('bias');
  }
  get runningMean(): Tensor {
    return this.buffer('running_mean');
  }
  get runningVar(): Tensor {
    return this.buffer('running_var');
  }

  /** The stats and affine values foldBatchNorm takes. */
  get state(): { weight: Tensor; bias: Tensor; runningMean: Tensor; runningVar: Tensor; eps: number } {
    return { weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar, eps: this.eps };
  }

  forward(x: Tensor): Tensor {
    return batchNorm2d(x, {
      weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
      training: this.training, momentum: this.momentum, eps: this.eps,
    });
  }
}
