// Layout ops for E-RADIO's CNN stages and window blocks: permute, cat, narrow/chunk, pad2d, sum/mean over one dim,
// window partition/reverse. Every data movement is planned here as one strided copy (native/layout/layout.h), and
// each op's backward is another such copy (or, for reflect/replicate padding, a deterministic gather), so an op and
// its gradient are one kernel each way. Outputs are always contiguous.
import { LayoutCopyPlan, native } from '../native';
import { checkSame, emptyTensor, full, record, Tensor, zeros } from '../tensor';

/**
 * The most dimensions permute (and every plan) handles. A constant, so that it can be read without loading the
 * addon; the limit itself is native/layout/layout.h's, which every op below asks (test/layout.test.ts holds the two equal).
 */
export const MAX_PERMUTE_DIMS = 6;

/** Throws when the layout family does not take tensors of rank r (its one list of limits, native/layout/layout.h). */
function checkRank(op: string, r: number): void {
  const why = native.layoutUnsupported(r);
  if (why) throw new Error(`${op}: ${why}`);
}

export type PadMode = 'zero' | 'reflect' | 'replicate';

export interface WindowPartition {
  /** [B·nWh·nWw, ws·ws, C]: windows row-major, tokens row-major inside a window. */
  tokens: Tensor;
  /** H and W padded up to multiples of the window size. */
  Hp: number;
  Wp: number;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let n = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = n;
    n *= shape[d];
  }
  return s;
}

function integer(op: string, name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new Error(`${op}: ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

/** dim in [-rank, rank) as an index, PyTorch's wrap for negative dims. */
function normDim(op: string, dim: unknown, rank: number, name = 'dim'): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < -rank || dim >= rank)
    throw new Error(`${op}: ${name} ${JSON.stringify(dim)} is out of range for a rank-${rank} tensor (expected [${-rank}, ${rank - 1}])`);
  return dim < 0 ? dim + rank : dim;
}

function checkTensor(op: string, x: unknown, name = 'x'): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: ${name} must be a Tensor`);
  checkSame(op, [x]);
  return x;
}

function checkFloat(op: string, x: Tensor): void {
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported (f32 or bf16)`);
}

/** A new contiguous tensor of outShape filled by plan from x (nothing runs for an empty output). */
function planned(op: string, x: Tensor, outShape: readonly number[], plan: LayoutCopyPlan): Tensor {
  const out = emptyTensor(outShape, x.dtype, x.device);
  if (out.numel > 0) native.layoutCopy({ op, out: out.native(op), x: x.native(op), dtype: x.dtype, ...plan });
  return out;
}

/** The plan that reads x [.., n, ..] as a contiguous walk over outShape with offset start along dim. */
function narrowPlan(x: Tensor, dim: number, start: number, outShape: readonly number[]): LayoutCopyPlan {
  const xs = contiguousStrides(x.shape);
  return { sizes: [...outShape], srcStrides: xs, dstStrides: contiguousStrides(outShape), srcOffset: start * xs[dim] };
}

/** The gradient of a narrow: g placed at start along dim of a zero tensor of shape, in one pass. */
function unnarrow(op: string, g: Tensor, shape: readonly number[], dim: number, start: number): Tensor {
  if (g.numel === 0) return zeros(shape, { dtype: g.dtype, device: g.device });
  const gs = contiguousStrides(g.shape);
  const coef = shape.map((_, d) => (d === dim ? 1 : 0));
  return planned(op, g, shape, {
    sizes: [...shape], srcStrides: gs.map((s, d) => (d === dim ? 0 : s)), dstStrides: contiguousStrides(shape),
    axes: [{ coef, lo: start, extent: g.shape[dim], stride: gs[dim] }],
  });
}

/** x with its dimensions reordered: out.shape[i] = x.shape[dims[i]] (negative dims wrap), contiguous. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const op = 'permute';
  checkTensor(op, x);
  const r = x.shape.length;
  checkRank(op, r);
  if (!Array.isArray(dims) || dims.length !== r)
    throw new Error(`${op}: dims must list all ${r} dimensions of ${fmt(x.shape)}, got ${JSON.stringify(dims)}`);
  const p = dims.map((d, i) => normDim(op, d, r, `dims[${i}]`));
  if (new Set(p).size !== r) throw new Error(`${op}: dims ${JSON.stringify(dims)} repeat a dimension (expected a permutation)`);
  const outShape = p.map((d) => x.shape[d]);
  const xs = contiguousStrides(x.shape);
  const out = planned(op, x, outShape, { sizes: outShape, srcStrides: p.map((d) => xs[d]), dstStrides: contiguousStrides(outShape) });
  const inverse = new Array<number>(r);
  p.forEach((d, i) => (inverse[d] = i));
  return record(out, op, [x], (g) => [permute(g, inverse)]);
}

/** The tensors joined along dim (every other size equal), as torch.cat. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  const op = 'cat';
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error(`${op}: expected a non-empty array of tensors`);
  tensors.forEach((t, i) => checkTensor(op, t, `tensors[${i}]`));
  checkSame(op, tensors);
  const first = tensors[0].shape;
  if (first.length === 0) throw new Error(`${op}: zero-dimensional tensors cannot be concatenated`);
  checkRank(op, first.length);
  const d = normDim(op, dim, first.length);
  tensors.forEach((t: Tensor, i: number) => {
    if (t.shape.length !== first.length || t.shape.some((s, k) => k !== d && s !== first[k]))
      throw new Error(`${op}: tensors[${i}] ${fmt(t.shape)} does not match tensors[0] ${fmt(first)} outside dim ${d}`);
  });
  const outShape = [...first];
  outShape[d] = tensors.reduce((a, t) => a + t.shape[d], 0);
  const out = emptyTensor(outShape, tensors[0].dtype, tensors[0].device);
  const os = contiguousStrides(outShape);
  const starts: number[] = [];
  let at = 0;
  for (const t of tensors) {
    starts.push(at);
    if (t.numel > 0)
      native.layoutCopy({
        op, out: out.native(op), x: t.native(op), dtype: t.dtype,
        sizes: [...t.shape], srcStrides: contiguousStrides(t.shape), dstStrides: os, dstOffset: at * os[d],
      });
    at += t.shape[d];
  }
  return record(out, op, tensors, (g) => tensors.map((t, i) => (t.requiresGrad ? narrow(g, d, starts[i], t.shape[d]) : null)));
}

/** length entries of x along dim from start (a negative start counts from the end), copied; torch.narrow. */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const op = 'narrow';
  checkTensor(op, x);
  if (x.shape.length === 0) throw new Error(`${op}: a zero-dimensional tensor cannot be narrowed`);
  checkRank(op, x.shape.length);
  const d = normDim(op, dim, x.shape.length);
  const n = x.shape[d];
  if (typeof start !== 'number' || !Number.isInteger(start) || start < -n || start > n)
    throw new Error(`${op}: start ${JSON.stringify(start)} is out of range for dim ${d} of size ${n}`);
  const s = start < 0 ? start + n : start;
  integer(op, 'length', length, 0);
  if (s + length > n) throw new Error(`${op}: start ${s} + length ${length} exceeds dim ${d} of size ${n} in ${fmt(x.shape)}`);
  const outShape = [...x.shape];
  outShape[d] = length;
  const out = planned(op, x, outShape, narrowPlan(x, d, s, outShape));
  return record(out, op, [x], (g) => [unnarrow(`${op} backward`, g, x.shape, d, s)]);
}

/** torch.chunk: pieces of ceil(n / chunks) along dim, the last smaller (so there may be fewer than chunks). */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  const op = 'chunk';
  checkTensor(op, x);
  integer(op, 'chunks', chunks, 1);
  if (x.shape.length === 0) throw new Error(`${op}: a zero-dimensional tensor cannot be chunked`);
  const d = normDim(op, dim, x.shape.length);
  const n = x.shape[d];
  // As PyTorch: an empty dim still gives `chunks` (empty) pieces.
  if (n === 0) return Array.from({ length: chunks }, () => narrow(x, d, 0, 0));
  const size = Math.ceil(n / chunks);
  const out: Tensor[] = [];
  for (let s = 0; s < n; s += size) out.push(narrow(x, d, s, Math.min(size, n - s)));
  return out;
}

/**
 * F.pad over the last two dims with pads = [left, right, top, bottom]. 'zero' takes negative pads (a crop);
 * 'reflect' needs every pad below its dim's size, 'replicate' a non-empty map. The backward of reflect/replicate
 * sums each output gradient into the element it was read from, in a fixed order.
 */
export function pad2d(x: Tensor, pads: readonly number[], mode: PadMode = 'zero'): Tensor {
  const op = 'pad2d';
  checkTensor(op, x);
  if (x.shape.length < 2) throw new Error(`${op}: x must have at least 2 dims (…, H, W), got ${fmt(x.shape)}`);
  if (mode !== 'zero' && mode !== 'reflect' && mode !== 'replicate')
    throw new Error(`${op}: unknown mode ${JSON.stringify(mode)} (expected zero, reflect or replicate)`);
  if (!Array.isArray(pads) || pads.length !== 4 || pads.some((p) => typeof p !== 'number' || !Number.isSafeInteger(p)))
    throw new Error(`${op}: pads must be 4 integers [left, right, top, bottom], got ${JSON.stringify(pads)}`);
  const [left, right, top, bottom] = pads;
  const H = x.shape[x.shape.length - 2], W = x.shape[x.shape.length - 1];
  if (mode !== 'zero') {
    if (pads.some((p) => p < 0)) throw new Error(`${op}: negative pads (cropping) are only allowed in zero mode, got ${JSON.stringify(pads)} in ${mode} mode`);
    if (H === 0 || W === 0) throw new Error(`${op}: ${mode} padding needs a non-empty map, got ${fmt(x.shape)}`);
    if (mode === 'reflect' && (left >= W || right >= W || top >= H || bottom >= H))
      throw new Error(`${op}: reflect pads ${JSON.stringify(pads)} must be smaller than the padded dims (H ${H}, W ${W})`);
  }
  const Ho = H + top + bottom, Wo = W + left + right;
  if (Ho < 0 || Wo < 0) throw new Error(`${op}: pads ${JSON.stringify(pads)} crop ${fmt(x.shape)} to a negative size ${Ho}x${Wo}`);
  const lead = x.shape.slice(0, -2);
  const outShape = [...lead, Ho, Wo];
  const P = prod(lead);
  let out: Tensor;
  if (x.numel === 0) out = zeros(outShape, { dtype: x.dtype, device: x.device });
  else
    out = planned(op, x, outShape, {
      sizes: [P, Ho, Wo], srcStrides: [H * W, 0, 0], dstStrides: [Ho * Wo, Wo, 1], mode,
      axes: [{ coef: [0, 1, 0], lo: top, extent: H, stride: W }, { coef: [0, 0, 1], lo: left, extent: W, stride: 1 }],
    });
  return record(out, op, [x], (g) => {
    if (mode === 'zero') return [pad2d(g, [-left, -right, -top, -bottom], 'zero')];
    const gi = emptyTensor(x.shape, x.dtype, x.device);
    const bop = `${op} backward`;
    native.layoutPadBackward({
      op: bop, gradIn: gi.native(bop), gradOut: g.native(bop), dtype: x.dtype,
      geometry: { planes: P, inH: H, inW: W, outH: Ho, outW: Wo, top, left, mode },
    });
    return [gi];
  });
}

// alpha · Σ over dim; n = 0 gives `empty` everywhere (0 for sum, NaN for mean, as PyTorch).
function reduceDim(op: string, x: Tensor, dim: number, keepdim: boolean, mean: boolean): Tensor {
  checkTensor(op, x);
  checkFloat(op, x);
  if (x.shape.length === 0) throw new Error(`${op}: a zero-dimensional tensor has no dim to reduce`);
  if (typeof keepdim !== 'boolean') throw new Error(`${op}: keepdim must be a boolean, got ${JSON.stringify(keepdim)}`);
  const d = normDim(op, dim, x.shape.length);
  const outer = prod(x.shape.slice(0, d)), n = x.shape[d], inner = prod(x.shape.slice(d + 1));
  const outShape = keepdim ? x.shape.map((s, k) => (k === d ? 1 : s)) : x.shape.filter((_, k) => k !== d);
  const alpha = mean ? 1 / n : 1;
  let out: Tensor;
  if (n === 0) out = full(outShape, mean ? NaN : 0, { dtype: x.dtype, device: x.device });
  else {
    out = emptyTensor(outShape, x.dtype, x.device);
    if (out.numel > 0) native.layoutReduce({ op, out: out.native(op), x: x.native(op), dtype: x.dtype, geometry: { outer, n, inner, alpha } });
  }
  return record(out, op, [x], (g) => {
    if (x.numel === 0) return [zeros(x.shape, { dtype: x.dtype, device: x.device })];
    // Broadcast back over dim: a source stride of 0 repeats each gradient n times.
    return [planned(`${op} backward`, g, x.shape, { sizes: [outer, n, inner], srcStrides: [inner, 0, 1], dstStrides: [n * inner, inner, 1], scale: alpha })];
  });
}

/** Σ over one dim, f32 accumulation; keepdim keeps it as size 1. */
export function sum(x: Tensor, dim: number, keepdim = false): Tensor {
  return reduceDim('sum', x, dim, keepdim, false);
}

/** The mean over one dim, f32 accumulation; keepdim keeps it as size 1. */
export function mean(x: Tensor, dim: number, keepdim = false): Tensor {
  return reduceDim('mean', x, dim, keepdim, true);
}

export type WindowLayout = 'NHWC' | 'NCHW';

export interface WindowPartitionOptions {
  /** The map's layout: 'NHWC' [B, H, W, C] (default, timm/Swin) or 'NCHW' [B, C, H, W] (E-RADIO's blocks). */
  layout?: WindowLayout;
  /** The padding up to the window multiple: 'zero' (default, timm/Swin) or 'reflect' (E-RADIO's F.pad). */
  mode?: 'zero' | 'reflect';
}

interface MapDims {
  B: number;
  H: number;
  W: number;
  C: number;
  layout: WindowLayout;
}

// Windows of the map as [B, nWh, nWw, ws, ws, C]: the map coordinates h = wh·ws + r and w = ww·ws + c are the two
// axes, so the padding (partition) or the dropped rows (reverse) need no second pass. With reverse and H = Hp the
// whole padded map is written (the reflect backward's first step).
function windowPlan(m: MapDims, ws: number, nWh: number, nWw: number, reverse: boolean, mode: PadMode = 'zero'): LayoutCopyPlan {
  const { B, H, W, C } = m;
  const nhwc = m.layout === 'NHWC';
  const sizes = [B, nWh, nWw, ws, ws, C];
  const map = [H * W * C, 0, 0, 0, 0, nhwc ? 1 : H * W];
  const axes = [
    { coef: [0, ws, 0, 1, 0, 0], lo: 0, extent: H, stride: nhwc ? W * C : W, dst: reverse },
    { coef: [0, 0, ws, 0, 1, 0], lo: 0, extent: W, stride: nhwc ? C : 1, dst: reverse },
  ];
  const tokens = contiguousStrides(sizes);
  return reverse ? { sizes, srcStrides: tokens, dstStrides: map, axes } : { sizes, srcStrides: map, dstStrides: tokens, axes, mode };
}

const mapShape = (m: MapDims) => (m.layout === 'NHWC' ? [m.B, m.H, m.W, m.C] : [m.B, m.C, m.H, m.W]);

function windowSize(op: string, ws: unknown): number {
  return integer(op, 'window size ws', ws, 1);
}

function windowLayout(op: string, layout: unknown): WindowLayout {
  if (layout !== 'NHWC' && layout !== 'NCHW') throw new Error(`${op}: unknown layout ${JSON.stringify(layout)} (expected NHWC or NCHW)`);
  return layout;
}

/**
 * x [B, H, W, C] (or [B, C, H, W] with layout 'NCHW') padded at the bottom/right to multiples of ws and cut into
 * windows: timm/Swin's window_partition with zero padding, or E-RADIO's with mode 'reflect'.
 */
export function windowPartition(x: Tensor, ws: number, opts: WindowPartitionOptions = {}): WindowPartition {
  const op = 'windowPartition';
  checkTensor(op, x);
  windowSize(op, ws);
  if (typeof opts !== 'object' || opts === null) throw new Error(`${op}: options must be an object`);
  const layout = windowLayout(op, opts.layout ?? 'NHWC');
  const mode = opts.mode ?? 'zero';
  if (mode !== 'zero' && mode !== 'reflect') throw new Error(`${op}: unknown mode ${JSON.stringify(mode)} (expected zero or reflect)`);
  if (x.shape.length !== 4) throw new Error(`${op}: x must be ${layout} ${layout === 'NHWC' ? '[B, H, W, C]' : '[B, C, H, W]'}, got ${fmt(x.shape)}`);
  const [B, H, W, C] = layout === 'NHWC' ? x.shape : [x.shape[0], x.shape[2], x.shape[3], x.shape[1]];
  const m: MapDims = { B, H, W, C, layout };
  const nWh = Math.ceil(H / ws), nWw = Math.ceil(W / ws);
  const Hp = nWh * ws, Wp = nWw * ws;
  if (mode === 'reflect' && ((Hp > H && Hp - H >= H) || (Wp > W && Wp - W >= W)))
    throw new Error(`${op}: reflect padding of ${H}x${W} to ${Hp}x${Wp} needs each pad smaller than its dim`);
  const tokens = planned(op, x, [B * nWh * nWw, ws * ws, C], windowPlan(m, ws, nWh, nWw, false, mode));
  record(tokens, op, [x], (g) => {
    // An empty map has no windows (Hp or Wp 0, which windowReverse refuses): nothing flows back.
    if (x.numel === 0) return [zeros(x.shape, { dtype: x.dtype, device: x.device })];
    if (mode === 'zero') return [windowReverse(g, ws, H, W, Hp, Wp, { layout })];
    // Reflect: the windows back onto the whole padded map, then each padded element summed into its source.
    const bop = `${op} backward`;
    const full = planned(bop, g, mapShape({ ...m, H: Hp, W: Wp }), windowPlan({ ...m, H: Hp, W: Wp }, ws, nWh, nWw, true));
    const gi = emptyTensor(x.shape, x.dtype, x.device);
    const nhwc = layout === 'NHWC';
    native.layoutPadBackward({
      op: bop, gradIn: gi.native(bop), gradOut: full.native(bop), dtype: x.dtype,
      geometry: { planes: nhwc ? B : B * C, inner: nhwc ? C : 1, inH: H, inW: W, outH: Hp, outW: Wp, top: 0, left: 0, mode: 'reflect' },
    });
    full.dispose();
    return [gi];
  });
  return { tokens, Hp, Wp };
}

/** tokens [B·nWh·nWw, ws·ws, C] of a Hp × Wp map back to [B, H, W, C] (or [B, C, H, W]), the padding dropped. */
export function windowReverse(tokens: Tensor, ws: number, H: number, W: number, Hp: number, Wp: number,
  opts: { layout?: WindowLayout } = {}): Tensor {
  const op = 'windowReverse';
  checkTensor(op, tokens, 'tokens');
  windowSize(op, ws);
  if (typeof opts !== 'object' || opts === null) throw new Error(`${op}: options must be an object`);
  const layout = windowLayout(op, opts.layout ?? 'NHWC');
  integer(op, 'H', H, 0);
  integer(op, 'W', W, 0);
  integer(op, 'Hp', Hp, 1);
  integer(op, 'Wp', Wp, 1);
  if (Hp % ws || Wp % ws) throw new Error(`${op}: the padded map ${Hp}x${Wp} is not a multiple of the window size ${ws}`);
  if (H > Hp || W > Wp) throw new Error(`${op}: the map ${H}x${W} does not fit in the padded map ${Hp}x${Wp}`);
  const nWh = Hp / ws, nWw = Wp / ws;
  if (tokens.shape.length !== 3 || tokens.shape[1] !== ws * ws || tokens.shape[0] % (nWh * nWw) !== 0)
    throw new Error(`${op}: tokens must be [B·${nWh * nWw}, ${ws * ws}, C] for ${ws}x${ws} windows of a ${Hp}x${Wp} map, got ${fmt(tokens.shape)}`);
  const m: MapDims = { B: tokens.shape[0] / (nWh * nWw), H, W, C: tokens.shape[2], layout };
  const out = planned(op, tokens, mapShape(m), windowPlan(m, ws, nWh, nWw, true));
  return record(out, op, [tokens], (g) =>
    // A map with no rows or columns sends nothing back to the (all padding) windows.
    [g.numel === 0 ? zeros(tokens.shape, { dtype: g.dtype, device: g.device }) : planned(`${op} backward`, g, tokens.shape, windowPlan(m, ws, nWh, nWw, false))]);
}
