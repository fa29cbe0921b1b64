// Fused attention over a timm-ordered qkv tensor, global or in ViTDet windows, differentiable in qkv, bias and SAM's
// decomposed relative position terms.
import { AttentionGeometry, native } from '../native';
import { checkSame, emptyTensor, record, Tensor, zeros } from '../tensor';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export interface AttentionOptions {
  heads: number;
  /** Softmax scale; default headDim^-0.5. */
  scale?: number;
  /** Leading tokens (cls + registers); default 0. In window mode they take no part and their output rows are zero. */
  prefix?: number;
  /** ViTDet windows of size × size over the T − prefix patch tokens (raster order, gridH × gridW). */
  window?: { size: number; gridH: number; gridW: number };
  /** Additive bias [heads, L, L], L = size² in window mode, else T. */
  bias?: Tensor;
  /**
   * SAM's decomposed relative position terms (segment-anything's add_decomposed_rel_pos), global mode without prefix
   * tokens: the tokens are a grid [gh, gw] in raster order and score (q, k) gets h[b, head, q, k / gw] +
   * w[b, head, q, k % gw]; h [B, heads, T, gh], w [B, heads, T, gw], in qkv's dtype. The [T, T] bias they stand
   * for is never formed.
   */
  relPos?: { h: Tensor; w: Tensor; grid: [number, number] };
}

const isInt = (v: unknown, min: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;

/**
 * softmax(q·kᵀ·scale + bias)·v per head, from qkv [B, T, 3·D] (last dim ordered (3, heads, headDim)) to [B, T, D].
 * Window mode attends within size × size windows of the patch grid, read straight from the raster layout.
 */
export function attention(qkv: Tensor, opts: AttentionOptions): Tensor {
  const op = 'attention';
  if (!opts || typeof opts !== 'object') throw new Error(`${op}: options { heads } are required`);
  const relPos = opts.relPos;
  if (relPos !== undefined && (typeof relPos !== 'object' || relPos === null || !Array.isArray(relPos.grid)))
    throw new Error(`${op}: relPos must be { h, w, grid: [gh, gw] }`);
  const inputs = [qkv, ...(opts.bias ? [opts.bias] : []), ...(relPos ? [relPos.h, relPos.w] : [])];
  checkSame(op, inputs);
  if (qkv.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (qkv.shape.length !== 3) throw new Error(`${op}: qkv has shape ${fmt(qkv.shape)}, expected [B, T, 3*D]`);
  const [B, T, C] = qkv.shape;
  // Zero tokens means an image without patches, a caller's mistake in a ViT, so it is refused by name rather than
  // returned empty; a batch of zero samples is simply an empty result.
  if (T === 0) throw new Error(`${op}: tokens must be > 0 (got qkv ${fmt(qkv.shape)})`);
  if (C % 3 !== 0) throw new Error(`${op}: qkv's last dim ${C} is not 3*D (not divisible by 3)`);
  const D = C / 3;
  const heads = opts.heads;
  if (!isInt(heads, 1)) throw new Error(`${op}: heads must be a positive integer, got ${heads}`);
  if (D % heads !== 0) throw new Error(`${op}: heads ${heads} does not divide D ${D}`);
  const headDim = D / heads;
  if (headDim === 0) throw new Error(`${op}: head dim must be > 0 (got qkv ${fmt(qkv.shape)})`);
  const prefix = opts.prefix ?? 0;
  if (!isInt(prefix, 0) || prefix > T) throw new Error(`${op}: prefix ${prefix} is out of range for ${T} tokens`);
  // The native family decides which head dims and combinations it runs (one answer for every backend), so no list
  // is kept here.
  const unsupported = native.attentionUnsupported(headDim, qkv.dtype, { window: !!opts.window, prefix: prefix > 0, relPos: !!relPos });
  if (unsupported) throw new Error(`${op}: ${unsupported}`);
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  if (!Number.isFinite(scale)) throw new Error(`${op}: scale must be finite, got ${scale}`);
  let size = 0;
  let gridH = 0;
  let gridW = 0;
  if (opts.window) {
    if (typeof opts.window !== 'object') throw new Error(`${op}: window must be { size, gridH, gridW }, got ${JSON.stringify(opts.window)}`);
    ({ size, gridH, gridW } = opts.window);
    if (!isInt(size, 1) || !isInt(gridH, 1) || !isInt(gridW, 1))
      throw new Error(`${op}: window size and grid must be positive integers`);
    if (gridH * gridW !== T - prefix)
      throw new Error(`${op}: window grid ${gridH}x${gridW} does not cover the ${T - prefix} patch tokens`);
    if (gridH % size !== 0 || gridW % size !== 0)
      throw new Error(`${op}: window size ${size} does not divide the grid ${gridH}x${gridW}`);
  }
  const L = size ? size * size : T;
  const windows = size ? (gridH / size) * (gridW / size) : 1;
  const bias = opts.bias;
  if (bias && (bias.shape.length !== 3 || bias.shape[0] !== heads || bias.shape[1] !== L || bias.shape[2] !== L))
    throw new Error(`${op}: bias has shape ${fmt(bias.shape)}, expected [${heads}, ${L}, ${L}]`);
  let relGridH = 0;
  let relGridW = 0;
  if (relPos) {
    const [gh, gw] = relPos.grid;
    if (relPos.grid.length !== 2 || !isInt(gh, 1) || !isInt(gw, 1))
      throw new Error(`${op}: relPos.grid must be two positive integers [gh, gw], got ${JSON.stringify(relPos.grid)}`);
    if (gh * gw !== T) throw new Error(`${op}: relPos grid ${gh}x${gw} does not cover the ${T} tokens`);
    for (const [name, t, n] of [['h', relPos.h, gh], ['w', relPos.w, gw]] as const) {
      const want = [B, heads, T, n];
      if (t.shape.length !== 4 || t.shape.some((d, i) => d !== want[i]))
        throw new Error(`${op}: relPos.${name} has shape ${fmt(t.shape)}, expected ${fmt(want)}`);
    }
    [relGridH, relGridW] = [gh, gw];
  }
  const geometry: AttentionGeometry = { batch: B, tokens: T, heads, headDim, prefix, window: size, gridH, gridW, scale, relGridH, relGridW };
  const out = emptyTensor([B, T, D], qkv.dtype, qkv.device);
  const lse = emptyTensor([Math.max(B * heads * windows * L, 1)], 'f32', qkv.device);
  if (B > 0)
    native.attentionForward({
      out: out.native(op), lse: lse.native(op), qkv: qkv.native(op), bias: bias?.native(op), relH: relPos?.h.native(op),
      relW: relPos?.w.native(op), dtype: qkv.dtype, geometry,
    });
  return record(out, op, inputs, (g) => {
    const bop = 'attention backward';
    // Gradients in the order of inputs: dqkv, dbias, dh, dw.
    const grads = (dqkv: Tensor, dbias: Tensor | null, dh: Tensor | null, dw: Tensor | null) =>
      [dqkv, ...(dbias ? [dbias] : []), ...(dh && dw ? [dh, dw] : [])];
    const empty = (t: Tensor) => emptyTensor(t.shape, t.dtype, t.device);
    // No samples: dqkv, dh and dw are empty and dbias, a sum over the batch, is zero.
    if (B === 0)
      return grads(empty(qkv), bias ? zeros(bias.shape, { dtype: bias.dtype, device: bias.device }) : null,
        relPos ? empty(relPos.h) : null, relPos ? empty(relPos.w) : null);
    const dqkv = empty(qkv);
    const dbias = bias ? empty(bias) : null;
    const [dh, dw] = relPos ? [empty(relPos.h), empty(relPos.w)] : [null, null];
    native.attentionBackward({
      dqkv: dqkv.native(bop), dbias: dbias?.native(bop), drelH: dh?.native(bop), drelW: dw?.native(bop), dout: g.native(bop),
      qkv: qkv.native(bop), out: out.native(bop), lse: lse.native(bop), bias: bias?.native(bop), relH: relPos?.h.native(bop),
      relW: relPos?.w.native(bop), dtype: qkv.dtype, geometry,
    });
    return grads(dqkv, dbias, dh, dw);
  });
}
