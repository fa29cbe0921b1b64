// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the norm over every gradient is summed on the
// device and read back once, as one scalar; the gradients are then scaled by min(1, max/(norm + 1e-6)).
import { noGrad } from '../autograd';
import { escape, tidy } from '../scope';
import type { Tensor } from '../tensor';

/**
 * Returns the global L2 norm of the gradients of params (those that have one), computed in f32. When it is finite
 * and above maxNorm the gradients are scaled in place of the old ones; a NaN or infinite norm leaves them as they
 * are (the caller skips the step). maxNorm Infinity only measures.
 */
export async function clipGradNorm(params: readonly Tensor[], maxNorm: number): Promise<number> {
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm) || maxNorm <= 0) throw new Error(`clipGradNorm: maxNorm must be a number > 0 (Infinity: measure only), got ${maxNorm}`);
  const withGrad = params.filter((p) => p.grad && p.grad.numel > 0);
  if (withGrad.length === 0) return 0;
  const sumSq = noGrad(() =>
    tidy(() => {
      let acc: Tensor | null = null;
      for (const p of withGrad) {
        const g = p.grad!.dtype === 'f32' ? p.grad! : p.grad!.cast('f32');
        const s = g.mul(g).sum();
        acc = acc ? acc.add(s) : s;
      }
      return acc!;
    }),
  );
  let total: number;
  try {
    total = Math.sqrt(await sumSq.item());
  } finally {
    sumSq.dispose();
  }
  if (!Number.isFinite(total)) return total;
  const factor = maxNorm / (total + 1e-6);
  if (factor < 1)
    noGrad(() => {
      for (const p of withGrad) {
        const scaled = escape(p.grad!.scale(factor));
        p.grad!.dispose();
        p.grad = scaled;
      }
    });
  return total;
}
