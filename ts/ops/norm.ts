// LayerNorm over the last dimension, differentiable.
import { LayerNormGeometry, native } from '../native';
import { checkSame, emptyTensor, numelOf, record, Tensor, zeros } from '../tensor';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function requireFloat(op: string, t: Tensor): void {
  if (t.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
}

/**
 * (x − mean) / sqrt(var + eps) · weight + bias over the last dimension; weight and bias have shape [C], and x's
 * dtype or f32 (mixed precision: bf16 activations with f32 norm parameters, as PyTorch's autocast runs norms).
 * The output has x's dtype; the parameters' gradients have theirs.
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6): Tensor {
  const op = 'layerNorm';
  checkSame(op, [x]);
  checkSame(op, [weight, bias]);
  requireFloat(op, x);
  if (weight.device !== x.device) throw new Error(`${op}: tensors are on different devices (${x.device} and ${weight.device})`);
  if (weight.dtype !== x.dtype && weight.dtype !== 'f32')
    throw new Error(`${op}: weight and bias are ${weight.dtype}, expected ${x.dtype === 'f32' ? 'f32' : `${x.dtype} (the input's dtype) or f32`}`);
  if (x.shape.length < 1) throw new Error(`${op}: input must have at least one dimension`);
  const cols = x.shape[x.shape.length - 1];
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const)
    if (t.shape.length !== 1 || t.shape[0] !== cols)
      throw new Error(`${op}: ${name} has shape ${fmt(t.shape)}, expected [${cols}] to match the last dimension of ${fmt(x.shape)}`);
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) throw new Error(`${op}: eps must be positive and finite, got ${eps}`);
  const rows = numelOf(x.shape.slice(0, -1));
  const geometry: LayerNormGeometry = { rows, cols, dtype: x.dtype, paramDtype: weight.dtype };
  const y = emptyTensor(x.shape, x.dtype, x.device);
  const mean = emptyTensor([rows], 'f32', x.device);
  const rstd = emptyTensor([rows], 'f32', x.device);
  // No rows or no columns: nothing to normalise, so the (empty) output needs no kernel.
  if (y.numel > 0)
    native.layerNormForward({
      y: y.native(op), mean: mean.native(op), rstd: rstd.native(op), x: x.native(op), weight: weight.native(op), bias: bias.native(op),
      eps, geometry,
    });
  return record(y, op, [x, weight, bias], (g) => {
    const bop = 'layerNorm backward';
    if (y.numel === 0) {
      // dweight and dbias are sums over the rows: zeros over no rows (empty when there are no columns).
      const like = { dtype: weight.dtype, device: x.device };
      return [emptyTensor(x.shape, x.dtype, x.device), zeros(weight.shape, like), zeros(bias.shape, like)];
    }
    const dx = emptyTensor(x.shape, x.dtype, x.device);
    const dw = emptyTensor(weight.shape, weight.dtype, x.device);
    const db = emptyTensor(bias.shape, weight.dtype, x.device);
    native.layerNormBackward({
      dx: dx.native(bop), dweight: dw.native(bop), dbias: db.native(bop), dy: g.native(bop), x: x.native(bop), weight: weight.native(bop),
      mean: mean.native(bop), rstd: rstd.native(bop), geometry,
    });
    return [dx, dw, db];
  });
}
