// Global-norm gradient clipping (PyTorch's clip_grad_norm_) in one fused pass over every gradient on the device:
// the sum of squares, the clip factor and the scaling all stay there, so clipping costs two launches and no
// read-back per tensor. Only `clipGradNorm`'s returned norm is read, once, for logging and for skipping steps
// whose gradients are not finite.
import { native } from '../native';
import { emptyTensor, Tensor } from '../tensor';

function gradEntries(op: string, params: readonly Tensor[]): { grads: Tensor[]; device: Tensor['device'] | null } {
  if (!Array.isArray(params)) throw new Error(`${op}: params must be an array of Tensors`);
  const grads: Tensor[] = [];
  let device: Tensor['device'] | null = null;
  for (const [i, p] of params.entries()) {
    if (!(p instanceof Tensor)) throw new Error(`${op}: params[${i}] is not a Tensor`);
    const g = p.grad;
    if (!g) continue;  // like PyTorch: parameters without a gradient take no part
    if (g.dtype === 'i32') throw new Error(`${op}: params[${i}] has an i32 gradient`);
    if (device && g.device !== device) throw new Error(`${op}: gradients are on different devices (${device} and ${g.device})`);
    device = g.device;
    grads.push(g);
  }
  return { grads, device };
}

function run(op: string, params: readonly Tensor[], maxNorm: number, apply: boolean): Tensor | null {
  const { grads, device } = gradEntries(op, params);
  if (!device) return null;
  const out = emptyTensor([2], 'f32', device);
  native.gradNorm({ entries: grads.map((g) => ({ grad: g.native(op), n: g.numel, dtype: g.dtype })), out: out.native(op), maxNorm, apply });
  return out;
}

async function readNorm(out: Tensor | null): Promise<number> {
  if (!out) return 0;
  try {
    const [sumSq] = await out.toArray();
    return Math.sqrt(sumSq);
  } finally {
    out.dispose();
  }
}

/** ‖all gradients‖₂ (one fused pass, one read); parameters without a gradient take no part; 0 when none has one. */
export async function gradNorm(params: readonly Tensor[]): Promise<number> {
  return readNorm(run('gradNorm', params, 0, false));
}

/**
 * Scales every gradient by min(1, maxNorm / (‖g‖ + 1e-6)), ‖g‖ the global 2-norm over all of them, and resolves to
 * that norm before clipping. When the norm is not finite (a NaN or Inf anywhere) the gradients are left unchanged
 * and the result is NaN or Infinity: skip the optimizer step then. maxNorm Infinity only measures.
 */
export async function clipGradNorm(params: readonly Tensor[], maxNorm: number): Promise<number> {
  if (typeof maxNorm !== 'number' || !(maxNorm > 0))
    throw new Error(`clipGradNorm: maxNorm must be a number > 0 (Infinity: measure only), got ${String(maxNorm)}`);
  if (maxNorm === Infinity) return readNorm(run('clipGradNorm', params, 0, false));
  return readNorm(run('clipGradNorm', params, maxNorm, true));
}
