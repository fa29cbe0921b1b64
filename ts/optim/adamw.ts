// AdamW (Loshchilov & Hutter): decoupled weight decay and bias-corrected moments, one fused step for all params.
import { native } from '../native';
import { noGrad } from '../autograd';
import { markModified } from '../nn/parameter';
import { escape } from '../scope';
import { Tensor, zeros } from '../tensor';

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

interface ParamState {
  m: Tensor;
  v: Tensor;
  /** f32 copy of a bf16 parameter: updates accumulate here and are rounded once into the parameter. */
  master?: Tensor;
}

export class AdamW {
  readonly params: readonly Tensor[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private stepCount = 0;
  private readonly state = new Map<Tensor, ParamState>();

  constructor(params: Tensor[], opts: AdamWOptions) {
    if (!Array.isArray(params) || params.some((p) => !(p instanceof Tensor))) throw new Error('AdamW: params must be an array of Tensors');
    const devices = new Set(params.map((p) => p.device));
    if (devices.size > 1) throw new Error(`AdamW: params are on different devices (${[...devices].join(', ')})`);
    for (const [i, p] of params.entries()) {
      if (p.dtype === 'i32') throw new Error(`AdamW: parameter ${i} is i32`);
      if (!p.requiresGrad) throw new Error(`AdamW: parameter ${i} does not require a gradient`);
    }
    this.params = [...params];
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    if (!(this.lr >= 0)) throw new Error(`AdamW: lr must be non-negative, got ${opts.lr}`);
    for (const b of this.betas) if (!(b >= 0 && b < 1)) throw new Error(`AdamW: betas must be in [0, 1), got ${JSON.stringify(this.betas)}`);
  }

  /** Updates every parameter that has a gradient, in one fused launch. */
  step(): void {
    const withGrad = this.params.filter((p) => p.grad);
    if (withGrad.length === 0) return;
    this.stepCount++;
    const entries = withGrad.map((p) => {
      const s = this.stateFor(p);
      return {
        param: p.native('AdamW.step'),
        grad: p.grad!.native('AdamW.step'),
        m: s.m.native('AdamW.step'),
        v: s.v.native('AdamW.step'),
        master: s.master?.native('AdamW.step'),
        n: p.numel,
        dtype: p.dtype,
      };
    });
    native.adamwStep(entries, {
      lr: this.lr,
      beta1: this.betas[0],
      beta2: this.betas[1],
      eps: this.eps,
      weightDecay: this.weightDecay,
      step: this.stepCount,
    });
    // Values derived from the parameters (a module's folded eval weights) must see the change.
    markModified(withGrad);
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  private stateFor(p: Tensor): ParamState {
    let s = this.state.get(p);
    if (!s) {
      // Optimizer state lives as long as the optimizer, whatever tensor scope the first step runs in.
      s = noGrad(() => ({
        m: escape(zeros(p.shape, { device: p.device })),
        v: escape(zeros(p.shape, { device: p.device })),
        master: escape(p.dtype === 'bf16' ? p.cast('f32') : undefined),
      }));
      this.state.set(p, s);
    }
    return s;
  }
}
