// AdamW (Loshchilov & Hutter): decoupled weight decay and bias-corrected moments, one fused step for all params.
import { native } from '../native';
import { noGrad } from '../autograd';
import { markModified } from '../nn/parameter';
import { escape } from '../scope';
import { tensor, Tensor, zeros } from '../tensor';

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
    if (params.length === 0) throw new Error('AdamW: params is empty (the optimizer has nothing to update)');
    const devices = new Set(params.map((p) => p.device));
    if (devices.size > 1) throw new Error(`AdamW: params are on different devices (${[...devices].join(', ')})`);
    const seen = new Map<Tensor, number>();
    for (const [i, p] of params.entries()) {
      if (p.dtype === 'i32') throw new Error(`AdamW: parameter ${i} is i32`);
      if (!p.requiresGrad) throw new Error(`AdamW: parameter ${i} does not require a gradient`);
      // Listed twice, a parameter would take two updates per step from one gradient.
      const first = seen.get(p);
      if (first !== undefined) throw new Error(`AdamW: parameter ${i} is the same tensor as parameter ${first}`);
      seen.set(p, i);
    }
    if (typeof opts !== 'object' || opts === null) throw new Error('AdamW: options { lr } are required');
    this.params = [...params];
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.checkHyperParameters();
  }

  /** Updates every parameter that has a gradient, in one fused launch. */
  step(): void {
    // lr is reassigned by schedules (and the others may be, from JS): checked on every step, before anything changes.
    this.checkHyperParameters();
    for (const [i, p] of this.params.entries()) {
      const g = p.grad;
      if (!g) continue;
      if (!(g instanceof Tensor)) throw new Error(`AdamW: the gradient of parameter ${i} is not a Tensor`);
      if (g.dtype !== p.dtype || g.device !== p.device || g.shape.length !== p.shape.length || g.shape.some((d, j) => d !== p.shape[j]))
        throw new Error(`AdamW: the gradient of parameter ${i} is ${g}, expected [${p.shape.join(', ')}] ${p.dtype} on ${p.device}`);
    }
    const withGrad = this.params.filter((p) => p.grad);
    if (withGrad.length === 0) return;
    this.stepCount++;
    // An empty parameter has nothing to update, and the fused kernel is never given a zero-size entry.
    const entries = withGrad.filter((p) => p.numel > 0).map((p) => {
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
    if (entries.length === 0) return;
    native.adamwStep({
      entries,
      settings: { lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay, step: this.stepCount },
    });
    // Values derived from the parameters (a module's folded eval weights) must see the change.
    markModified(withGrad);
  }

  // The ranges PyTorch's AdamW accepts, with non-finite values refused too: any of them would turn every weight NaN.
  private checkHyperParameters(): void {
    const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
    if (!finite(this.lr) || this.lr < 0) throw new Error(`AdamW: lr must be a finite number >= 0, got ${this.lr}`);
    if (!finite(this.eps) || this.eps < 0) throw new Error(`AdamW: eps must be a finite number >= 0, got ${this.eps}`);
    if (!finite(this.weightDecay) || this.weightDecay < 0)
      throw new Error(`AdamW: weightDecay must be a finite number >= 0, got ${this.weightDecay}`);
    const b = this.betas;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((v) => finite(v) && v >= 0 && v < 1))
      throw new Error(`AdamW: betas must be in [0, 1), got ${Array.isArray(b) ? `[${b.join(', ')}]` : String(b)}`);
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Steps taken: the count the bias corrections use. */
  get steps(): number {
    return this.stepCount;
  }

  /** Per parameter, in params order: its moments and f32 master (the live tensors), or null before its first update. For checkpoints. */
  stateTensors(): Array<{ m: Tensor; v: Tensor; master?: Tensor } | null> {
    return this.params.map((p) => this.state.get(p) ?? null);
  }

  /**
   * Continues from a checkpoint: the step count and, per parameter in params order, its moments and f32 master
   * (null: not updated yet). Everything is checked before anything changes.
   */
  loadState(steps: number, state: ReadonlyArray<{ m: ArrayLike<number>; v: ArrayLike<number>; master?: ArrayLike<number> } | null>): void {
    if (!Number.isSafeInteger(steps) || steps < 0) throw new Error(`AdamW.loadState: steps must be a non-negative integer, got ${steps}`);
    if (!Array.isArray(state) || state.length !== this.params.length)
      throw new Error(`AdamW.loadState: expected the state of ${this.params.length} parameters, got ${Array.isArray(state) ? state.length : typeof state}`);
    state.forEach((s, i) => {
      if (s === null) return;
      const p = this.params[i];
      for (const k of ['m', 'v', ...(p.dtype === 'bf16' ? ['master'] : [])] as const) {
        const a = s[k as 'm'];
        if (!a || a.length !== p.numel) throw new Error(`AdamW.loadState: parameter ${i} [${p.shape.join(', ')}]: ${k} has ${a?.length ?? 'no'} values, expected ${p.numel}`);
      }
    });
    for (const old of this.state.values()) for (const t of [old.m, old.v, old.master]) t?.dispose();
    this.state.clear();
    noGrad(() =>
      state.forEach((s, i) => {
        if (s === null) return;
        const p = this.params[i];
        const make = (a: ArrayLike<number>) => escape(tensor(a, p.shape, { device: p.device }));
        this.state.set(p, { m: make(s.m), v: make(s.v), master: p.dtype === 'bf16' ? make(s.master!) : undefined });
      }),
    );
    this.stepCount = steps;
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
