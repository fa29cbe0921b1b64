// Parameter: a Tensor that a module owns and (unless frozen) trains. It is an autograd leaf, it never belongs to
// a tensor scope (it outlives every step), and it counts its in-place updates so that values derived from it, such
// as a module's folded eval-time weights, know when they are stale.
import type { NativeBuffer } from '../native';
import { escape } from '../scope';
import { Tensor } from '../tensor';

export class Parameter extends Tensor {
  /** Bumped by every in-place write (an optimizer step, loadStateDict). */
  version = 0;

  constructor(buffer: NativeBuffer, shape: readonly number[], dtype: Tensor['dtype'], device: Tensor['device'], requiresGrad = true) {
    super(buffer, shape, dtype, device, requiresGrad);
    escape(this);
  }

  /** A parameter holding t's memory; t is disposed (the parameter takes its place). */
  static from(t: Tensor, requiresGrad = true): Parameter {
    if (!(t instanceof Tensor)) throw new Error('Parameter.from: expected a Tensor');
    if (t.dtype === 'i32') throw new Error('Parameter.from: i32 tensors cannot be parameters');
    const p = new Parameter(t.native('Parameter.from').alias(), t.shape, t.dtype, t.device, requiresGrad);
    t.dispose();
    return p;
  }

  /** Records that the values changed in place. */
  markModified(): void {
    this.version++;
  }

  override toString(): string {
    return `Parameter(${this.shape.join(', ')}; ${this.dtype}, ${this.device}${this.requiresGrad ? '' : ', frozen'})`;
  }
}

/** Marks every Parameter among ts as modified in place (optimizers call this after a step). */
export function markModified(ts: readonly Tensor[]): void {
  for (const t of ts) if (t instanceof Parameter) t.markModified();
}
