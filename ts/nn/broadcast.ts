// Per-channel and per-row scaling, composed from gatherRows (a broadcast whose backward is the matching sum) and
// the elementwise product, so that both factors get their gradients from the ops' own backward passes.
import { gatherRows } from '../ops/tokens';
import { Tensor } from '../tensor';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function check(op: string, x: Tensor, s: Tensor): void {
  if (!(x instanceof Tensor) || !(s instanceof Tensor)) throw new Error(`${op}: expected Tensors`);
  if (s.shape.length !== 1) throw new Error(`${op}: the scale must be 1-D, got ${fmt(s.shape)}`);
}

/** x [..., C] ⊙ s [C], s broadcast over every leading index (LayerScale). */
export function scaleLastDim(x: Tensor, s: Tensor): Tensor {
  const op = 'scaleLastDim';
  check(op, x, s);
  const C = s.shape[0];
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== C)
    throw new Error(`${op}: scale ${fmt(s.shape)} does not match the last dimension of ${fmt(x.shape)}`);
  const rows = x.numel / C;
  const wide = gatherRows(s.reshape([1, 1, C]), new Int32Array(rows));
  const shaped = wide.reshape(x.shape);
  return x.mul(shaped);
}

/** diag(s) · x for x [R, C] and s [R]: row r scaled by s[r] (LayerScale folded into the weight before it). */
export function scaleRows(x: Tensor, s: Tensor): Tensor {
  const op = 'scaleRows';
  check(op, x, s);
  if (x.shape.length !== 2 || x.shape[0] !== s.shape[0]) throw new Error(`${op}: scale ${fmt(s.shape)} does not match the rows of ${fmt(x.shape)}`);
  const [R, C] = x.shape;
  const wide = gatherRows(s.reshape([R, 1, 1]), new Int32Array(C));
  return x.mul(wide.reshape([R, C]));
}
