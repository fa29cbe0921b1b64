// BatchNorm2d (PyTorch's semantics, training and eval), its eval-time fold into the preceding conv, and LayerNorm2d
// (SAM's / ConvNeXt's: normalised over the channels of each pixel), on NCHW [N, C, H, W] or [N, C] input.
import { native } from '../native';
import type { DType } from '../native';
import { emptyTensor, record, Tensor, zeros } from '../tensor';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export interface BatchNormOptions {
  /** γ, shape [C]: x's dtype or f32. Absent: 1. */
  weight?: Tensor;
  /** β, shape [C], the weight's dtype. Absent: 0. */
  bias?: Tensor;
  /** Shape [C], x's dtype or f32: read in eval, updated in place in training. Both or neither. */
  runningMean?: Tensor;
  runningVar?: Tensor;
  /** true: normalise with the batch statistics (and update the running ones); false: with the running ones. */
  training: boolean;
  /** In [0, 1]; default 0.1. (PyTorch's momentum = None, a cumulative average, is not supported.) */
  momentum?: number;
  /** Default 1e-5. */
  eps?: number;
}

export interface FoldBatchNormOptions {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  /** Default 1e-5. */
  eps?: number;
}

interface Dims {
  n: number;
  c: number;
  hw: number;
}

function tensorArg(op: string, name: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) throw new Error(`${op}: ${name} must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  t.native(op);
  return t;
}

// x as [n, c, hw] (hw = 1 for [N, C]).
function nchw(op: string, x: Tensor): Dims {
  tensorArg(op, 'input', x);
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (x.shape.length !== 4 && x.shape.length !== 2)
    throw new Error(`${op}: input must be [N, C, H, W] or [N, C], got shape ${fmt(x.shape)}`);
  const [n, c, h = 1, w = 1] = x.shape;
  return { n, c, hw: h * w };
}

function checkEps(op: string, eps: unknown): number {
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) throw new Error(`${op}: eps must be positive and finite, got ${eps}`);
  return eps;
}

/**
 * The dtype of a pair of per-channel tensors (weight and bias, or the running statistics), each optional: shape
 * [C], on x's device, x's dtype or f32 (mixed precision: bf16 activations with f32 norm parameters), and the
 * same dtype when both are given. x's dtype when neither is.
 */
function pairDtype(op: string, x: Tensor, c: number, pair: Array<[string, Tensor | undefined]>, of = fmt(x.shape)): DType {
  let dtype: DType | undefined;
  for (const [name, t] of pair) {
    if (t === undefined) continue;
    tensorArg(op, name, t);
    if (t.device !== x.device) throw new Error(`${op}: ${name} is on ${t.device}, the input on ${x.device}`);
    if (t.dtype !== x.dtype && t.dtype !== 'f32')
      throw new Error(`${op}: ${name} is ${t.dtype}, expected ${x.dtype === 'f32' ? 'f32' : `${x.dtype} (the input's dtype) or f32`}`);
    if (t.shape.length !== 1 || t.shape[0] !== c)
      throw new Error(`${op}: ${name} has shape ${fmt(t.shape)}, expected [${c}] to match the channels of ${of}`);
    if (dtype !== undefined && t.dtype !== dtype) throw new Error(`${op}: ${pair[0][0]} is ${dtype} but ${name} is ${t.dtype}; they must match`);
    dtype = t.dtype;
  }
  return dtype ?? x.dtype;
}

interface Prepared {
  weight?: Tensor;
  bias?: Tensor;
  runningMean?: Tensor;
  runningVar?: Tensor;
  training: boolean;
  momentum: number;
  eps: number;
  pdt: DType;
  sdt: DType;
}

// The checked batch norm on x viewed as [n, c, hw], recorded for autograd on x, weight and bias.
function batchNormCore(op: string, x: Tensor, d: Dims, p: Prepared): Tensor {
  const y = emptyTensor(x.shape, x.dtype, x.device);
  const mean = emptyTensor([d.c], 'f32', x.device);
  const invstd = emptyTensor([d.c], 'f32', x.device);
  const common = { geometry: { n: d.n, c: d.c, hw: d.hw, dtype: x.dtype, paramDtype: p.pdt }, training: p.training };
  // No elements (N = 0 or H·W = 0, eval only): nothing to normalise, so no kernel.
  if (y.numel > 0)
    native.batchNormForward({
      ...common, y: y.native(op), x: x.native(op), weight: p.weight?.native(op), bias: p.bias?.native(op),
      runningMean: p.runningMean?.native(op), runningVar: p.runningVar?.native(op), mean: mean.native(op),
      invstd: invstd.native(op), eps: p.eps, momentum: p.momentum, statsDtype: p.sdt,
    });
  const params = [p.weight, p.bias].filter((t): t is Tensor => t !== undefined);
  return record(y, op, [x, ...params], (g) => {
    const bop = `${op} backward`;
    const dx = x.requiresGrad ? emptyTensor(x.shape, x.dtype, x.device) : undefined;
    // dweight and dbias are sums over N·H·W: zeros when there are no elements.
    const paramGrad = (t?: Tensor) =>
      t?.requiresGrad ? (y.numel > 0 ? emptyTensor([d.c], p.pdt, x.device) : zeros([d.c], { dtype: p.pdt, device: x.device })) : undefined;
    const dw = paramGrad(p.weight);
    const db = paramGrad(p.bias);
    if (y.numel > 0)
      native.batchNormBackward({
        ...common, dx: dx?.native(bop), dweight: dw?.native(bop), dbias: db?.native(bop), dy: g.native(bop),
        x: x.native(bop), weight: p.weight?.native(bop), mean: mean.native(bop), invstd: invstd.native(bop),
      });
    return [dx ?? null, ...(p.weight ? [dw ?? null] : []), ...(p.bias ? [db ?? null] : [])];
  });
}

/**
 * torch.nn.functional.batch_norm on [N, C, H, W] or [N, C]. Training normalises with the batch mean and biased
 * variance over N·H·W and, when running statistics are given, updates them in place:
 * running = (1 − momentum)·running + momentum·batch, the variance's batch value unbiased (·n/(n − 1)). Eval
 * normalises with the running statistics. Differentiable in x, weight and bias (in training dx includes the
 * terms through the batch statistics). Statistics are accumulated in f32; y has x's dtype.
 */
export function batchNorm2d(x: Tensor, opts: BatchNormOptions): Tensor {
  const op = 'batchNorm2d';
  const d = nchw(op, x);
  if (typeof opts !== 'object' || opts === null) throw new Error(`${op}: options must be an object with training: boolean`);
  const { weight, bias, runningMean, runningVar, training } = opts;
  if (typeof training !== 'boolean') throw new Error(`${op}: training must be a boolean, got ${training === undefined ? 'undefined' : typeof training}`);
  const momentum = opts.momentum ?? 0.1;
  if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1)) throw new Error(`${op}: momentum must be a number in [0, 1], got ${momentum}`);
  const eps = checkEps(op, opts.eps ?? 1e-5);
  const pdt = pairDtype(op, x, d.c, [['weight', weight], ['bias', bias]]);
  const sdt = pairDtype(op, x, d.c, [['runningMean', runningMean], ['runningVar', runningVar]]);
  if ((runningMean === undefined) !== (runningVar === undefined))
    throw new Error(`${op}: runningMean and runningVar must be given together (only ${runningMean ? 'runningMean' : 'runningVar'} was)`);
  if (!training && !runningMean) throw new Error(`${op}: eval mode (training: false) needs runningMean and runningVar`);
  if (training && d.n * d.hw < 2)
    throw new Error(`${op}: training needs more than one value per channel, got input of shape ${fmt(x.shape)}`);
  for (const [name, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const)
    if (t?.requiresGrad) throw new Error(`${op}: ${name} is a buffer updated in place and must not require a gradient`);
  return batchNormCore(op, x, d, { weight, bias, runningMean, runningVar, training, momentum, eps, pdt, sdt });
}

/**
 * Folds an eval-mode BatchNorm into the conv (or linear) before it: weight' = weight·γ/√(var + eps) per output
 * channel (dim 0), bias' = (bias − mean)·γ/√(var + eps) + β (bias 0 when the conv has none). Eval/inference only:
 * no gradient flows through it, so an input that requires a gradient is refused (fold detached tensors).
 * Returns tensors in the conv weight's dtype; f32 conv weights take bf16 BatchNorm tensors in f32.
 */
export function foldBatchNorm(convWeight: Tensor, convBias: Tensor | undefined, opts: FoldBatchNormOptions): { weight: Tensor; bias: Tensor } {
  const op = 'foldBatchNorm';
  tensorArg(op, 'convWeight', convWeight);
  if (convWeight.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (convWeight.shape.length < 1 || convWeight.shape[0] < 1)
    throw new Error(`${op}: convWeight must have at least one output channel (dim 0), got shape ${fmt(convWeight.shape)}`);
  if (typeof opts !== 'object' || opts === null) throw new Error(`${op}: options { weight, bias, runningMean, runningVar } are required`);
  const out = convWeight.shape[0];
  const named: Array<[string, Tensor | undefined]> = [
    ['convWeight', convWeight], ['convBias', convBias], ['weight', opts.weight], ['bias', opts.bias],
    ['runningMean', opts.runningMean], ['runningVar', opts.runningVar],
  ];
  for (const [name, t] of named) {
    if (t === undefined) {
      if (name !== 'convBias') throw new Error(`${op}: ${name} is required`);
      continue;
    }
    tensorArg(op, name, t);
    if (t.requiresGrad) throw new Error(`${op}: is for eval/inference only and has no gradient, but ${name} requires one; pass ${name}.detach()`);
  }
  const eps = checkEps(op, opts.eps ?? 1e-5);
  if (convBias !== undefined) {
    if (convBias.dtype !== convWeight.dtype) throw new Error(`${op}: convBias is ${convBias.dtype}, convWeight ${convWeight.dtype}; they must match`);
    if (convBias.shape.length !== 1 || convBias.shape[0] !== out)
      throw new Error(`${op}: convBias has shape ${fmt(convBias.shape)}, expected [${out}] (the output channels of convWeight ${fmt(convWeight.shape)})`);
  }
  // Both results are an eval batch norm over the output channels: the weight viewed as [1, O, K] with mean 0 and no
  // β gives w·γ·invstd; the bias as [1, O] with the running mean and β gives (b − mean)·γ·invstd + β.
  const asF32 = (t: Tensor) => (convWeight.dtype === 'f32' && t.dtype === 'bf16' ? t.cast('f32') : t);
  const [gamma, beta, mean, variance] = [opts.weight, opts.bias, opts.runningMean, opts.runningVar].map(asF32);
  const flat = convWeight.reshape([1, out, convWeight.numel / out]);
  const bias0 = (convBias ?? zeros([out], { dtype: convWeight.dtype, device: convWeight.device })).reshape([1, out]);
  const of = `convWeight ${fmt(convWeight.shape)} (dim 0)`;
  const pdt = pairDtype(op, bias0, out, [['weight', gamma], ['bias', beta]], of);
  const sdt = pairDtype(op, bias0, out, [['runningMean', mean], ['runningVar', variance]], of);
  const zeroMean = zeros([out], { dtype: sdt, device: convWeight.device });
  const base = { training: false, momentum: 0, eps, pdt, sdt };
  const weight = batchNormCore(op, flat, { n: 1, c: out, hw: flat.shape[2] }, { ...base, weight: gamma, runningMean: zeroMean, runningVar: variance });
  const bias = batchNormCore(op, bias0, { n: 1, c: out, hw: 1 }, { ...base, weight: gamma, bias: beta, runningMean: mean, runningVar: variance });
  return { weight: weight.reshape(convWeight.shape), bias: bias.reshape([out]) };
}

/**
 * LayerNorm2d as in SAM and ConvNeXt: at each pixel of [N, C, H, W] (or row of [N, C]), (x − mean)/√(var + eps)·γ + β
 * with the mean and biased variance over the C channels; weight and bias [C], x's dtype or f32. Differentiable in
 * x, weight and bias.
 */
export function layerNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6): Tensor {
  const op = 'layerNorm2d';
  const d = nchw(op, x);
  tensorArg(op, 'weight', weight);
  tensorArg(op, 'bias', bias);
  const pdt = pairDtype(op, x, d.c, [['weight', weight], ['bias', bias]]);
  checkEps(op, eps);
  const y = emptyTensor(x.shape, x.dtype, x.device);
  const mean = emptyTensor([d.n * d.hw], 'f32', x.device);
  const rstd = emptyTensor([d.n * d.hw], 'f32', x.device);
  const common = { geometry: { n: d.n, c: d.c, hw: d.hw, dtype: x.dtype, paramDtype: pdt } };
  if (y.numel > 0)
    native.layerNorm2dForward({ ...common, y: y.native(op), mean: mean.native(op), rstd: rstd.native(op), x: x.native(op), weight: weight.native(op), bias: bias.native(op), eps });
  return record(y, op, [x, weight, bias], (g) => {
    const bop = `${op} backward`;
    if (y.numel === 0) {
      const like = { dtype: pdt, device: x.device };
      return [emptyTensor(x.shape, x.dtype, x.device), zeros([d.c], like), zeros([d.c], like)];
    }
    const dx = emptyTensor(x.shape, x.dtype, x.device);
    const dw = emptyTensor([d.c], pdt, x.device);
    const db = emptyTensor([d.c], pdt, x.device);
    native.layerNorm2dBackward({
      ...common, dx: dx.native(bop), dweight: dw.native(bop), dbias: db.native(bop), dy: g.native(bop), x: x.native(bop),
      weight: weight.native(bop), mean: mean.native(bop), rstd: rstd.native(bop),
    });
    return [dx, dw, db];
  });
}
