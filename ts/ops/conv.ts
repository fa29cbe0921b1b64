// 2-D convolution and its transpose, NCHW, PyTorch's Conv2d / ConvTranspose2d semantics, differentiable. One
// native family (native/conv) does both: conv's input gradient is the transposed convolution's forward and the
// other way round, so each op is one native call forward and two or three backward.
import { ConvGeometry, native } from '../native';
import { checkSame, emptyTensor, record, Tensor, zeros } from '../tensor';
import { activationBackward, type ActivationKind } from './activation';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;
type Pair = [number, number];

export interface Conv2dOptions {
  /** Default 1. A number applies to both axes; a pair is [height, width]. */
  stride?: number | readonly [number, number];
  /** Zero padding on each side (default 0), or 'valid' (0) or 'same' (stride 1, output size = input size). */
  padding?: number | readonly [number, number] | 'same' | 'valid';
  dilation?: number | readonly [number, number];
  /** Input and output channels split into this many independent groups (default 1; in_channels for depthwise). */
  groups?: number;
  /** Fused after the bias: out = act(conv(x) + bias) + residual. */
  activation?: ActivationKind;
  /** Added after the activation; shaped like the output. */
  residual?: Tensor;
}

export interface ConvTranspose2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  /** Extra rows/columns on the bottom/right of the output (default 0); each must be smaller than its stride. */
  outputPadding?: number | readonly [number, number];
  dilation?: number | readonly [number, number];
  groups?: number;
}

function pair(op: string, name: string, v: unknown, dflt: number, min: number): Pair {
  const p = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((e) => Number.isInteger(e) && e >= min))
    throw new Error(`${op}: ${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  return [p[0], p[1]];
}

function checkGroups(op: string, groups: unknown, inC: number, outC: number): number {
  const g = groups ?? 1;
  if (!Number.isInteger(g) || (g as number) < 1) throw new Error(`${op}: groups must be a positive integer, got ${JSON.stringify(groups)}`);
  const n = g as number;
  if (inC % n !== 0 || outC % n !== 0)
    throw new Error(`${op}: groups ${n} must divide both the input channels (${inC}) and the output channels (${outC})`);
  return n;
}

function check4d(op: string, name: string, t: Tensor): void {
  if (t.shape.length !== 4) throw new Error(`${op}: ${name} must be 4-D [N, C, H, W], got ${fmt(t.shape)}`);
}

const ACTIVATIONS: readonly ActivationKind[] = ['gelu', 'relu', 'silu', 'sigmoid'];

/**
 * x [N, C, H, W] ⋆ weight [O, C/groups, kh, kw] (+ bias [O]), then the optional activation and residual, as
 * PyTorch's F.conv2d (+ act + residual). The output is [N, O, Ho, Wo] with Ho = ⌊(H + 2·ph − dh·(kh − 1) − 1)/sh⌋ + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  const op = 'conv2d';
  const operands = [x, weight, ...(bias ? [bias] : []), ...(opts.residual ? [opts.residual] : [])];
  checkSame(op, operands);
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  check4d(op, 'input', x);
  if (weight.shape.length !== 4) throw new Error(`${op}: weight must be [O, C/groups, kh, kw], got ${fmt(weight.shape)}`);
  const [n, c, h, w] = x.shape;
  const [o, cg, kh, kw] = weight.shape;
  const groups = checkGroups(op, opts.groups, c, o);
  if (cg * groups !== c)
    throw new Error(`${op}: weight ${fmt(weight.shape)} expects ${cg * groups} input channels (${cg} per group × ${groups} groups), input ${fmt(x.shape)} has ${c}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== o)) throw new Error(`${op}: bias has shape ${fmt(bias.shape)}, expected [${o}]`);
  const stride = pair(op, 'stride', opts.stride, 1, 1);
  const dilation = pair(op, 'dilation', opts.dilation, 1, 1);
  let padding: Pair;
  if (opts.padding === 'valid') padding = [0, 0];
  else if (opts.padding === 'same') {
    if (stride[0] !== 1 || stride[1] !== 1) throw new Error(`${op}: padding 'same' needs stride 1, got ${fmt(stride)}`);
    const span = [dilation[0] * (kh - 1), dilation[1] * (kw - 1)];
    if (span.some((s) => s % 2 !== 0))
      throw new Error(`${op}: padding 'same' with an even dilated kernel (${kh}x${kw}, dilation ${fmt(dilation)}) needs uneven padding, which is not supported; pad the input first`);
    padding = [span[0] / 2, span[1] / 2];
  } else padding = pair(op, 'padding', opts.padding, 0, 0);
  const outH = Math.floor((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const outW = Math.floor((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  if (outH < 1 || outW < 1)
    throw new Error(`${op}: input ${h}x${w} (padded ${h + 2 * padding[0]}x${w + 2 * padding[1]}) is smaller than the dilated kernel ${dilation[0] * (kh - 1) + 1}x${dilation[1] * (kw - 1) + 1}`);
  const outShape = [n, o, outH, outW];
  if (opts.residual && fmt(opts.residual.shape) !== fmt(outShape))
    throw new Error(`${op}: residual has shape ${fmt(opts.residual.shape)}, expected ${fmt(outShape)}`);
  const act = opts.activation;
  if (act !== undefined && !ACTIVATIONS.includes(act))
    throw new Error(`${op}: unknown activation ${JSON.stringify(act)} (expected ${ACTIVATIONS.join(', ')})`);
  const geometry: ConvGeometry = { batch: n, inC: c, inH: h, inW: w, outC: o, outH, outW, groups, kernel: [kh, kw], stride, padding, dilation };
  const out = emptyTensor(outShape, x.dtype, x.device);
  if (n === 0 || out.numel === 0) return out;
  const inputs = [x, weight, bias ?? null, opts.residual ?? null];
  const wantsGrad = inputs.some((t) => t?.requiresGrad);
  const preact = act && wantsGrad ? emptyTensor(outShape, x.dtype, x.device) : undefined;
  native.conv2d({
    y: out.native(op), x: x.native(op), weight: weight.native(op), bias: bias?.native(op), residual: opts.residual?.native(op),
    preactivation: preact?.native(op), activation: act ?? 'none', dtype: x.dtype, geometry,
  });
  const recorded = inputs.filter((t): t is Tensor => t !== null);
  return record(out, op, recorded, (g) => {
    const bop = 'conv2d backward';
    const gz = act ? activationBackward(act, g, preact!) : g;
    const grads = new Map<Tensor, Tensor | null>();
    if (x.requiresGrad) grads.set(x, inputGradient(bop, gz, weight, undefined, geometry));
    if (weight.requiresGrad) grads.set(weight, weightGradient(bop, x, gz, geometry));
    if (bias?.requiresGrad) grads.set(bias, channelSum(bop, gz));
    if (opts.residual?.requiresGrad) grads.set(opts.residual, g.alias());
    if (gz !== g) gz.dispose();
    return recorded.map((t) => grads.get(t) ?? null);
  });
}

/** conv's input gradient (+ bias per input channel): [batch, inC, inH, inW]. */
function inputGradient(op: string, dy: Tensor, weight: Tensor, bias: Tensor | undefined, g: ConvGeometry): Tensor {
  const dx = emptyTensor([g.batch, g.inC, g.inH, g.inW], dy.dtype, dy.device);
  native.conv2dBackwardInput({ dx: dx.native(op), dy: dy.native(op), weight: weight.native(op), bias: bias?.native(op), dtype: dy.dtype, geometry: g });
  return dx;
}

function weightGradient(op: string, x: Tensor, dy: Tensor, g: ConvGeometry): Tensor {
  const dw = emptyTensor([g.outC, g.inC / g.groups, g.kernel[0], g.kernel[1]], x.dtype, x.device);
  native.conv2dBackwardWeight({ dw: dw.native(op), x: x.native(op), dy: dy.native(op), dtype: x.dtype, geometry: g });
  return dw;
}

/** Σ over batch and pixels per channel of t [N, C, H, W]: a bias gradient. */
function channelSum(op: string, t: Tensor): Tensor {
  const [n, c, h, w] = t.shape;
  if (n * h * w === 0) return zeros([c], { dtype: t.dtype, device: t.device });
  const out = emptyTensor([c], t.dtype, t.device);
  native.channelSum({ out: out.native(op), t: t.native(op), batch: n, channels: c, pixels: h * w, dtype: t.dtype });
  return out;
}

/**
 * x [N, Cin, H, W] with weight [Cin, Cout/groups, kh, kw] (+ bias [Cout]), as PyTorch's F.conv_transpose2d: the
 * output is [N, Cout, Ho, Wo] with Ho = (H − 1)·sh − 2·ph + dh·(kh − 1) + output_padding + 1. E-RADIO's 2×2 stride-2
 * up-projection is this with stride 2.
 */
export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor, opts: ConvTranspose2dOptions = {}): Tensor {
  const op = 'convTranspose2d';
  checkSame(op, [x, weight, ...(bias ? [bias] : [])]);
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  check4d(op, 'input', x);
  if (weight.shape.length !== 4) throw new Error(`${op}: weight must be [Cin, Cout/groups, kh, kw], got ${fmt(weight.shape)}`);
  const [n, cin, h, w] = x.shape;
  const [wi, cog, kh, kw] = weight.shape;
  if (wi !== cin) throw new Error(`${op}: weight ${fmt(weight.shape)} expects ${wi} input channels, input ${fmt(x.shape)} has ${cin}`);
  const groups = opts.groups ?? 1;
  const cout = cog * (Number.isInteger(groups) ? (groups as number) : 1);
  checkGroups(op, groups, cin, cout);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== cout)) throw new Error(`${op}: bias has shape ${fmt(bias.shape)}, expected [${cout}]`);
  const stride = pair(op, 'stride', opts.stride, 1, 1);
  const padding = pair(op, 'padding', opts.padding, 0, 0);
  const dilation = pair(op, 'dilation', opts.dilation, 1, 1);
  const outPad = pair(op, 'outputPadding', opts.outputPadding, 0, 0);
  if (outPad[0] >= stride[0] || outPad[1] >= stride[1])
    throw new Error(`${op}: outputPadding ${fmt(outPad)} must be smaller than the stride ${fmt(stride)}`);
  const outH = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + outPad[0] + 1;
  const outW = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + outPad[1] + 1;
  if (outH < 1 || outW < 1) throw new Error(`${op}: the output would be ${outH}x${outW}: padding ${fmt(padding)} is too large for the input ${h}x${w}`);
  // The convolution whose input gradient this is: from [N, Cout, outH, outW] to [N, Cin, H, W] with the same weight.
  const geometry: ConvGeometry = {
    batch: n, inC: cout, inH: outH, inW: outW, outC: cin, outH: h, outW: w, groups, kernel: [kh, kw], stride, padding, dilation,
  };
  if (n === 0) return emptyTensor([n, cout, outH, outW], x.dtype, x.device);
  const out = inputGradient(op, x, weight, bias, geometry);
  const recorded = [x, weight, ...(bias ? [bias] : [])];
  return record(out, op, recorded, (g) => {
    const bop = 'convTranspose2d backward';
    const grads = new Map<Tensor, Tensor | null>();
    if (x.requiresGrad) {
      const dx = emptyTensor(x.shape, x.dtype, x.device);
      native.conv2d({ y: dx.native(bop), x: g.native(bop), weight: weight.native(bop), activation: 'none', dtype: x.dtype, geometry });
      grads.set(x, dx);
    }
    if (weight.requiresGrad) grads.set(weight, weightGradient(bop, g, x, geometry));
    if (bias?.requiresGrad) grads.set(bias, channelSum(bop, g));
    return recorded.map((t) => grads.get(t) ?? null);
  });
}
