// Multi-resolution interpolation: resize (F.interpolate: bilinear, nearest, bicubic, antialias), the CPE position-embedding crop for eval and for
// training (spec §1.4), each differentiable with respect to its map. Every op is one native kernel each way.
import { needsGrad } from '../autograd';
import { InterpolateCrop, InterpolateGeometry, native } from '../native';
import { checkSame, dtypeSize, numelOf, record, Tensor, zeros } from '../tensor';

export type InterpolateMode = 'bilinear' | 'nearest' | 'bicubic';
export type InterpolateLayout = 'NCHW' | 'NLC';

export interface InterpolateOptions {
  /** Output [height, width]. Give size or scaleFactor, not both. */
  size?: readonly [number, number];
  /**
   * PyTorch's scale_factor [sh, sw] (recompute_scale_factor unset): the output is floor(in · s) and the source
   * coordinates use the ratio 1/s (not in/out) unless alignCorners is set.
   */
  scaleFactor?: readonly [number, number];
  /**
   * Default 'bilinear'. 'nearest' is PyTorch's legacy nearest: source index floor(dst · in/out). 'bicubic' is
   * upsample_bicubic2d: cubic convolution (A = −0.75), border pixels replicated.
   */
  mode?: InterpolateMode;
  /** Bilinear and bicubic; default false. PyTorch's meaning. */
  alignCorners?: boolean;
  /**
   * Bilinear and bicubic; default false. PyTorch's antialias=True: a separable filter as wide as the downsampling
   * ratio (triangle, or Keys' cubic with A = −0.5, which changes bicubic even when upsampling), normalised per output.
   */
  antialias?: boolean;
  /** 'NCHW' (default): x is [N, C, H, W]. 'NLC': x is tokens [B, H*W, C] with grid = [H, W]; nothing is transposed. */
  layout?: InterpolateLayout;
  grid?: readonly [number, number];
}

export interface CpeOptions {
  gridH: number;
  gridW: number;
  /** Default false, as RADIO's current code; checkpoints released before mid-2025 used true (spec §1.4). */
  alignCorners?: boolean;
}

export interface CpeTrainOptions {
  gridH: number;
  gridW: number;
  /** [B, 2] f32: (sx, sy), the crop's side lengths as fractions of the full map. */
  scale: Tensor;
  /** [B, 2] f32: (px, py), the crop's top-left corner in [0, 1] map coordinates. */
  offset: Tensor;
  /** [B] f32: 0 drops the sample's position embedding (position dropout), anything else keeps it. */
  keep: Tensor;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function positiveInt(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > 2 ** 31 - 1)
    throw new Error(`${op}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function pair(op: string, name: string, v: unknown): [number, number] {
  if (!Array.isArray(v) || v.length !== 2) throw new Error(`${op}: ${name} must be [height, width], got ${JSON.stringify(v)}`);
  return [positiveInt(op, `${name}[0]`, v[0]), positiveInt(op, `${name}[1]`, v[1])];
}

function checkMap(op: string, x: Tensor): void {
  checkSame(op, [x]);
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported (f32 or bf16)`);
}

// As PyTorch's upsampling: a batch of zero is an empty result, but every other dimension must be non-zero.
function checkNonEmpty(op: string, x: Tensor, names: readonly string[]): void {
  names.forEach((name, i) => {
    if (i > 0 && x.shape[i] === 0) throw new Error(`${op}: input ${fmt(x.shape)} has no elements (${name} must be > 0)`);
  });
}

interface Crop {
  scale: Tensor;
  offset: Tensor;
  keep: Tensor;
}

const cropBuffers = (op: string, crop?: Crop): InterpolateCrop =>
  crop ? { scale: crop.scale.native(op), offset: crop.offset.native(op), keep: crop.keep.native(op) } : {};

// Samples x into a new tensor of outShape as geometry says, and records the gather backward.
function resample(op: string, x: Tensor, outShape: number[], geometry: InterpolateGeometry, crop?: Crop): Tensor {
  const out = new Tensor(native.alloc(x.device, numelOf(outShape) * dtypeSize(x.dtype)), outShape, x.dtype, x.device);
  // Only a batch of zero gets here with nothing to sample (the callers refuse every other empty dimension).
  if (out.numel > 0) native.interpolate({ out: out.native(op), x: x.native(op), dtype: x.dtype, geometry, ...cropBuffers(op, crop) });
  if (!needsGrad([x])) return out;
  // The backward needs the crop parameters as they are now, even if the caller disposes them meanwhile.
  const saved = crop && { scale: crop.scale.detach(), offset: crop.offset.detach(), keep: crop.keep.detach() };
  return record(out, op, [x], (g) => {
    const bop = `${op} backward`;
    if (g.dtype !== x.dtype || g.device !== x.device || g.numel !== out.numel)
      throw new Error(`${bop}: gradient ${g} does not match the output ${fmt(outShape)} ${x.dtype} on ${x.device}`);
    // An empty batch sends nothing back: zeros, or an empty gradient for an empty input.
    if (out.numel === 0) return [zeros(x.shape, { dtype: x.dtype, device: x.device })];
    const gi = new Tensor(native.alloc(x.device, x.numel * dtypeSize(x.dtype)), x.shape, x.dtype, x.device);
    native.interpolateBackward({ gradIn: gi.native(bop), gradOut: g.native(bop), dtype: x.dtype, geometry, ...cropBuffers(bop, saved) });
    return [gi];
  });
}

function scaleFactors(op: string, v: unknown): [number, number] {
  if (!Array.isArray(v) || v.length !== 2) throw new Error(`${op}: scaleFactor must be [sh, sw], got ${JSON.stringify(v)}`);
  v.forEach((s, i) => {
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0)
      throw new Error(`${op}: scaleFactor[${i}] must be a finite number > 0, got ${typeof s === 'number' ? s : JSON.stringify(s)}`);
  });
  return [v[0], v[1]];
}

function flag(op: string, name: string, v: unknown): boolean {
  if (v !== undefined && typeof v !== 'boolean') throw new Error(`${op}: ${name} must be a boolean, got ${JSON.stringify(v)}`);
  return v ?? false;
}

/**
 * Resizes the spatial map of x to opts.size (or by opts.scaleFactor), as PyTorch's F.interpolate: bilinear, legacy
 * nearest or bicubic, antialias for bilinear and bicubic.
 */
export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  const op = 'interpolate';
  checkMap(op, x);
  if (!opts || typeof opts !== 'object') throw new Error(`${op}: options { size } are required (or { scaleFactor })`);
  if (opts.size !== undefined && opts.scaleFactor !== undefined) throw new Error(`${op}: give size or scaleFactor, not both`);
  if (opts.size === undefined && opts.scaleFactor === undefined) throw new Error(`${op}: options { size } are required (or { scaleFactor })`);
  const mode = opts.mode ?? 'bilinear';
  if (mode !== 'bilinear' && mode !== 'nearest' && mode !== 'bicubic')
    throw new Error(`${op}: unknown mode ${JSON.stringify(mode)} (expected bilinear, nearest or bicubic)`);
  const layout = opts.layout ?? 'NCHW';
  if (layout !== 'NCHW' && layout !== 'NLC') throw new Error(`${op}: unknown layout ${JSON.stringify(layout)} (expected NCHW or NLC)`);
  const alignCorners = flag(op, 'alignCorners', opts.alignCorners);
  const antialias = flag(op, 'antialias', opts.antialias);
  if (mode === 'nearest' && alignCorners) throw new Error(`${op}: alignCorners applies only to bilinear and bicubic modes`);
  if (mode === 'nearest' && antialias) throw new Error(`${op}: antialias applies only to bilinear and bicubic modes`);

  let batch: number, channels: number, inH: number, inW: number;
  if (layout === 'NCHW') {
    if (x.shape.length !== 4) throw new Error(`${op}: layout NCHW needs a rank-4 tensor [N, C, H, W], got ${fmt(x.shape)}`);
    if (opts.grid !== undefined) throw new Error(`${op}: grid is only for layout NLC (an NCHW tensor carries its own H and W)`);
    checkNonEmpty(op, x, ['batch', 'channels', 'height', 'width']);
    [batch, channels, inH, inW] = x.shape;
  } else {
    if (x.shape.length !== 3) throw new Error(`${op}: layout NLC needs a rank-3 tensor [B, H*W, C], got ${fmt(x.shape)}`);
    if (opts.grid === undefined) throw new Error(`${op}: layout NLC needs grid = [H, W] for the ${x.shape[1]} tokens`);
    checkNonEmpty(op, x, ['batch', 'tokens', 'channels']);
    [inH, inW] = pair(op, 'grid', opts.grid);
    if (inH * inW !== x.shape[1])
      throw new Error(`${op}: grid [${inH}, ${inW}] does not match the token count ${x.shape[1]} of ${fmt(x.shape)}`);
    [batch, , channels] = x.shape;
  }
  let outH: number, outW: number;
  let factors: { factorH: number; factorW: number } | undefined;
  if (opts.scaleFactor !== undefined) {
    const [sh, sw] = scaleFactors(op, opts.scaleFactor);
    // PyTorch's output size for a scale factor: floor(in · s), in double.
    [outH, outW] = [Math.floor(inH * sh), Math.floor(inW * sw)];
    if (outH < 1 || outW < 1 || outH > 2 ** 31 - 1 || outW > 2 ** 31 - 1)
      throw new Error(`${op}: scaleFactor [${sh}, ${sw}] gives an output of ${outH}x${outW} from ${inH}x${inW}`);
    factors = { factorH: sh, factorW: sw };
  } else {
    [outH, outW] = pair(op, 'size', opts.size);
  }
  const outShape = layout === 'NCHW' ? [batch, channels, outH, outW] : [batch, outH * outW, channels];
  return resample(op, x, outShape, {
    layout, mode, alignCorners, antialias, ...factors, batch, channels, inH, inW, outH, outW, virtH: outH, virtW: outW,
  });
}

// posEmbed must be [1, G*G, D]; returns G and D.
function checkPosEmbed(op: string, pe: Tensor): { G: number; D: number } {
  checkMap(op, pe);
  if (pe.shape.length !== 3 || pe.shape[0] !== 1) throw new Error(`${op}: posEmbed must have shape [1, G*G, D], got ${fmt(pe.shape)}`);
  checkNonEmpty(op, pe, ['batch', 'positions', 'channels']);
  const G = Math.round(Math.sqrt(pe.shape[1]));
  if (G * G !== pe.shape[1]) throw new Error(`${op}: posEmbed has ${pe.shape[1]} positions, not a square grid G*G`);
  return { G, D: pe.shape[2] };
}

function gridOf(op: string, opts: { gridH: number; gridW: number }): [number, number] {
  if (!opts || typeof opts !== 'object') throw new Error(`${op}: options { gridH, gridW } are required`);
  return [positiveInt(op, 'gridH', opts.gridH), positiveInt(op, 'gridW', opts.gridW)];
}

/**
 * CPE position embeddings for a gridH × gridW patch grid at eval time (spec §1.4): posEmbed [1, G*G, D] resized
 * bilinearly to m × m, m = max(gridH, gridW), and cropped to its top-left gridH × gridW, in one kernel (the m × m
 * map is never made). Returns [1, gridH*gridW, D]; posEmbed's values unchanged when the grid is G × G.
 */
export function cpe(posEmbed: Tensor, opts: CpeOptions): Tensor {
  const op = 'cpe';
  const { G, D } = checkPosEmbed(op, posEmbed);
  const [gridH, gridW] = gridOf(op, opts);
  if (opts.alignCorners !== undefined && typeof opts.alignCorners !== 'boolean')
    throw new Error(`${op}: alignCorners must be a boolean, got ${JSON.stringify(opts.alignCorners)}`);
  if (gridH === G && gridW === G) return record(posEmbed.detach(), op, [posEmbed], (g) => [g.alias()]);
  const m = Math.max(gridH, gridW);
  return resample(op, posEmbed, [1, gridH * gridW, D], {
    layout: 'NLC', mode: 'bilinear', alignCorners: opts.alignCorners ?? false, batch: 1, channels: D,
    inH: G, inW: G, outH: gridH, outW: gridW, virtH: m, virtW: m,
  });
}

function checkCropParam(op: string, name: string, t: unknown, pe: Tensor, shape: number[]): Tensor {
  if (!(t instanceof Tensor)) throw new Error(`${op}: ${name} must be a Tensor ${fmt(shape)}`);
  t.native(op);
  if (t.dtype !== 'f32') throw new Error(`${op}: ${name} must be an f32 tensor, got ${t.dtype}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw new Error(`${op}: ${name} must have shape ${fmt(shape)}, got ${fmt(t.shape)}`);
  if (t.device !== pe.device) throw new Error(`${op}: ${name} is on ${t.device}, posEmbed on ${pe.device}`);
  return t;
}

/**
 * CPE position embeddings at training time (spec §1.4): for each sample b, a bilinear grid_sample (zeros padding,
 * align_corners true) of posEmbed over the crop x = (linspace(0,1,gridW)·sx + px), y likewise, and zero rows where
 * keep[b] = 0. Returns [B, gridH*gridW, D]. Gradients flow to posEmbed only.
 */
export function cpeTrain(posEmbed: Tensor, opts: CpeTrainOptions): Tensor {
  const op = 'cpeTrain';
  const { G, D } = checkPosEmbed(op, posEmbed);
  const [gridH, gridW] = gridOf(op, opts);
  // B = 0 crops is an empty result, as grid_sample gives for an empty batch.
  if (!(opts.scale instanceof Tensor) || opts.scale.shape.length !== 2)
    throw new Error(`${op}: scale must be a Tensor [B, 2]`);
  const B = opts.scale.shape[0];
  const crop = {
    scale: checkCropParam(op, 'scale', opts.scale, posEmbed, [B, 2]),
    offset: checkCropParam(op, 'offset', opts.offset, posEmbed, [B, 2]),
    keep: checkCropParam(op, 'keep', opts.keep, posEmbed, [B]),
  };
  return resample(op, posEmbed, [B, gridH * gridW, D], {
    layout: 'NLC', mode: 'gridSample', alignCorners: true, batch: B, channels: D,
    inH: G, inW: G, outH: gridH, outW: gridW, virtH: gridH, virtW: gridW,
  }, crop);
}
