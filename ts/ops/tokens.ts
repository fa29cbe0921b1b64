// Token assembly for a ViT (spec §1.2–1.5, §1.7): patchify with the input conditioning fused, the
// [prefix, patches + position] concatenation, and row gathers. Three kernels in all: gatherRows (a sum over listed
// rows) is both the slicing op (summary rows, feature rows, ViTDet orders) and the backward of all three, since
// every one of their gradients is a sum of rows of the output gradient.
import { needsGrad } from '../autograd';
import { native } from '../native';
import type { DType, PatchifyGeometry } from '../native';
import { checkSame, emptyTensor, record, Tensor, zeros } from '../tensor';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export interface PatchifyOptions {
  /** Patch side P in pixels; H and W must be multiples of it. */
  patch: number;
  /** Per-channel mean and std, f32 [C] on the image's device: out = (x − mean) / std. */
  mean: Tensor;
  std: Tensor;
  /** Output dtype; default the image's. The conditioning is computed in f32 either way. */
  dtype?: DType;
}

function positiveInt(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${op}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function requireFloat(op: string, t: Tensor): void {
  if (t.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported (f32 or bf16)`);
}

/**
 * images [B, C, H, W] → patch rows [B, (H/P)·(W/P), C·P²] in RADIO's order (c, yy, xx), each value conditioned
 * as (x − mean[c]) / std[c]. The image gets no gradient: it is an input, never a parameter.
 */
export function patchify(images: Tensor, opts: PatchifyOptions): Tensor {
  const op = 'patchify';
  checkSame(op, [images]);
  requireFloat(op, images);
  if (needsGrad([images])) throw new Error(`${op}: the image cannot require a gradient (patchify has no image gradient)`);
  if (images.shape.length !== 4) throw new Error(`${op}: images have shape ${fmt(images.shape)}, expected [B, C, H, W]`);
  const [B, C, H, W] = images.shape;
  if (!opts || typeof opts !== 'object') throw new Error(`${op}: options { patch, mean, std } are required`);
  const P = positiveInt(op, 'patch', opts.patch);
  // Which images patchify cuts is the native family's rule (native/tokens/tokens.h), asked rather than copied.
  const geometry: PatchifyGeometry = { batch: B, channels: C, height: H, width: W, patch: P };
  const unsupported = native.patchifyUnsupported(geometry);
  if (unsupported) throw new Error(`${op}: ${unsupported}`);
  for (const [name, t] of [['mean', opts.mean], ['std', opts.std]] as const) {
    if (!(t instanceof Tensor)) throw new Error(`${op}: ${name} must be a Tensor`);
    if (t.dtype !== 'f32' || t.numel !== C || t.device !== images.device)
      throw new Error(`${op}: ${name} must be f32 with ${C} values on ${images.device}, got ${t}`);
  }
  const dtype = opts.dtype ?? images.dtype;
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`${op}: output dtype must be f32 or bf16, got ${JSON.stringify(dtype)}`);
  const out = emptyTensor([B, (H / P) * (W / P), C * P * P], dtype, images.device);
  // A zero in B, C, H or W leaves no patch values to write: the result is empty, as unfolding an empty image is.
  if (out.numel > 0)
    native.patchify({
      out: out.native(op), outDtype: dtype, x: images.native(op), xDtype: images.dtype, mean: opts.mean.native(op), std: opts.std.native(op),
      geometry,
    });
  return out;
}

/** Row lists for gatherRows: row r of the output sums the input rows sources[starts[r] .. starts[r + 1]). */
interface RowLists {
  starts: Int32Array;
  sources: Int32Array;
}

/** Every output row takes exactly one input row. */
function oneEach(sources: Int32Array): RowLists {
  return { starts: Int32Array.from({ length: sources.length + 1 }, (_, i) => i), sources };
}

/** Output row r of `rows` sums the inputs first(r) + k·step for k < count (a batch sum over a folded batch). */
function strided(rows: number, count: number, first: (r: number) => number, step: number): RowLists {
  const sources = new Int32Array(rows * count);
  for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) sources[r * count + k] = first(r) + k * step;
  return { starts: Int32Array.from({ length: rows + 1 }, (_, i) => i * count), sources };
}

/** The lists turned around: row t of the result sums every k with index[k] = t, in increasing k. */
function inverse(index: Int32Array, rows: number): RowLists {
  const starts = new Int32Array(rows + 1);
  for (const t of index) starts[t + 1]++;
  for (let t = 0; t < rows; t++) starts[t + 1] += starts[t];
  const next = starts.slice(0, rows);
  const sources = new Int32Array(index.length);
  index.forEach((t, k) => (sources[next[t]++] = k));
  return { starts, sources };
}

// x viewed as [batch, inRows, dim] → a new [batch, outRows, dim] tensor of the given shape.
function runGather(op: string, x: Tensor, lists: RowLists, batch: number, inRows: number, dim: number, shape: readonly number[]): Tensor {
  const outRows = lists.starts.length - 1;
  // Every output row sums no rows at all (a gradient of an empty selection): zeros, with no kernel over empty lists.
  if (lists.sources.length === 0) return zeros(shape, { dtype: x.dtype, device: x.device });
  const out = emptyTensor(shape, x.dtype, x.device);
  if (out.numel === 0) return out;
  native.gatherRows({ out: out.native(op), x: x.native(op), starts: lists.starts, sources: lists.sources, dtype: x.dtype, geometry: { batch, inRows, outRows, dim } });
  return out;
}

function checkTokens(op: string, name: string, t: Tensor): [number, number, number] {
  if (t.shape.length !== 3) throw new Error(`${op}: ${name} has shape ${fmt(t.shape)}, expected [B, T, D]`);
  return t.shape as [number, number, number];
}

/**
 * Rows of a token tensor: x [B, T, D] → [B, K, D] with out[:, k] = x[:, index[k]]. Indices may repeat (their
 * gradients add up, in a fixed order) and may be any permutation, so this is also the ViTDet window order.
 */
export function gatherRows(x: Tensor, index: readonly number[] | Int32Array): Tensor {
  const op = 'gatherRows';
  checkSame(op, [x]);
  requireFloat(op, x);
  const [B, T, D] = checkTokens(op, 'x', x);
  if (!Array.isArray(index) && !(index instanceof Int32Array)) throw new Error(`${op}: index must be an array or an Int32Array of row numbers`);
  for (const v of index) if (!Number.isInteger(v) || v < 0 || v >= T) throw new Error(`${op}: index ${v} is out of range for ${T} rows`);
  const idx = Int32Array.from(index as ArrayLike<number>);
  const out = runGather(op, x, oneEach(idx), B, T, D, [B, idx.length, D]);
  return record(out, op, [x], (g) => [runGather(`${op} backward`, g, inverse(idx, T), B, idx.length, D, x.shape)]);
}

/** Rows start .. end − 1 of x [B, T, D] (a gatherRows over a range). */
export function sliceRows(x: Tensor, start: number, end: number): Tensor {
  const T = checkTokens('sliceRows', 'x', x)[1];
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > T || start > end)
    throw new Error(`sliceRows: rows ${start}..${end} are out of range for ${T} rows`);
  return gatherRows(x, Int32Array.from({ length: end - start }, (_, i) => start + i));
}

/**
 * cat(prefix, patches + pos) along the rows: patches [B, N, D]; prefix [S, D] (shared by the batch, as RADIO's
 * cls/register tokens) or [B, S, D]; pos, optional, [N, D] or [1, N, D] (shared, the eval CPE) or [B, N, D] (a
 * per-sample training crop). → [B, S + N, D]. Differentiable in all three; shared inputs get the batch sum.
 */
export function assembleTokens(prefix: Tensor, patches: Tensor, pos?: Tensor): Tensor {
  const op = 'assembleTokens';
  const inputs = pos ? [prefix, patches, pos] : [prefix, patches];
  checkSame(op, inputs);
  requireFloat(op, patches);
  const [B, N, D] = checkTokens(op, 'patches', patches);
  const prefixBatched = prefix.shape.length === 3;
  const S = prefix.shape[prefix.shape.length - 2];
  if (!(prefix.shape.length === 2 || (prefixBatched && prefix.shape[0] === B)) || prefix.shape[prefix.shape.length - 1] !== D)
    throw new Error(`${op}: prefix has shape ${fmt(prefix.shape)}, expected [S, ${D}] or [${B}, S, ${D}]`);
  let posBatched = false;
  if (pos) {
    const lead = pos.shape.length === 3 ? pos.shape[0] : 1;
    if (pos.shape.length < 2 || pos.shape.length > 3 || (lead !== 1 && lead !== B) || pos.shape.at(-2) !== N || pos.shape.at(-1) !== D)
      throw new Error(`${op}: pos has shape ${fmt(pos.shape)}, expected [${N}, ${D}], [1, ${N}, ${D}] or [${B}, ${N}, ${D}]`);
    posBatched = lead === B && B > 1;
  }
  const T = S + N;
  const out = emptyTensor([B, T, D], patches.dtype, patches.device);
  if (out.numel > 0)
    native.assembleTokens({
      out: out.native(op), prefix: prefix.native(op), patches: patches.native(op), pos: pos?.native(op), dtype: patches.dtype,
      geometry: { batch: B, prefixRows: S, rows: N, dim: D, prefixBatched, posBatched },
    });
  return record(out, op, inputs, (g) => {
    // g viewed as one batch of B·T rows: every gradient is a set of its rows, summed over b for shared inputs.
    const bop = `${op} backward`;
    const rows = (lists: RowLists, shape: readonly number[]) => runGather(bop, g, lists, 1, B * T, D, shape);
    const perSample = (first: number, count: number) => strided(B * count, 1, (r) => Math.floor(r / count) * T + first + (r % count), 0);
    const dprefix = prefix.requiresGrad
      ? rows(prefixBatched ? perSample(0, S) : strided(S, B, (s) => s, T), prefix.shape)
      : null;
    const dpatches = patches.requiresGrad ? rows(perSample(S, N), patches.shape) : null;
    const dpos = pos?.requiresGrad ? rows(posBatched ? perSample(S, N) : strided(N, B, (n) => S + n, T), pos.shape) : null;
    return pos ? [dprefix, dpatches, dpos] : [dprefix, dpatches];
  });
}
