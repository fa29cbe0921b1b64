// The module layer (`import { nn } from 'am-radio'`): a tree of modules that own parameters and buffers under the
// dotted names a PyTorch checkpoint uses ("blocks.0.attn.qkv.weight"), with train/eval modes and state dicts.
//
// Lifetimes. A module owns its parameters and buffers: they stay out of tensor scopes and live until dispose().
// Everything a forward pass makes belongs to the open tensor scope (`tidy`, ts/scope.ts), never to the module: in
// training, wrap a step (forward, loss, backward) in `tidy` and every activation, and every value the autograd graph
// saved for backward, is freed when it returns, while the parameters' `.grad` survive (leaf gradients are taken out
// of scopes). Without a scope the garbage collector frees them, later. Values a module derives from its parameters
// and caches across calls (folded eval-time weights) are escaped from scopes too, and dropped by `stateChanged()`,
// which train()/eval(), loadStateDict(), to() and dispose() call on every module of the tree.
import { noGrad } from '../autograd';
import { native } from '../native';
import type { Device } from '../native';
import { escape } from '../scope';
import { Tensor } from '../tensor';
import { Parameter } from './parameter';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export type StateDict = Map<string, Tensor> | Record<string, Tensor>;

export interface LoadStateDictOptions {
  /** Default true: a missing or an unexpected key is an Error listing every one of them. */
  strict?: boolean;
}

export abstract class Module {
  /** Training mode (true) or eval mode; set for the whole tree by train() and eval(). */
  training = true;
  private readonly params = new Map<string, Parameter>();
  private readonly buffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  private disposedFlag = false;

  protected registerParameter(name: string, p: Parameter): Parameter {
    this.checkName(name);
    if (!(p instanceof Parameter)) throw new Error(`registerParameter '${name}': expected a Parameter`);
    this.params.set(name, p);
    return p;
  }

  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.checkName(name);
    if (!(t instanceof Tensor)) throw new Error(`registerBuffer '${name}': expected a Tensor`);
    this.buffers.set(name, escape(t));
    return t;
  }

  protected registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    if (!(m instanceof Module)) throw new Error(`registerModule '${name}': expected a Module`);
    this.children.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (typeof name !== 'string' || name === '' || name.includes('.')) throw new Error(`module member name ${JSON.stringify(name)} must be non-empty without dots`);
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) throw new Error(`module member '${name}' is registered twice`);
  }

  /** This module's own parameter `name` (the current object: to() replaces parameters). */
  protected param(name: string): Parameter {
    const p = this.params.get(name);
    if (!p) throw new Error(`${this.constructor.name}: no parameter '${name}'`);
    this.checkAlive();
    return p;
  }

  protected buffer(name: string): Tensor {
    const b = this.buffers.get(name);
    if (!b) throw new Error(`${this.constructor.name}: no buffer '${name}'`);
    this.checkAlive();
    return b;
  }

  protected hasParameter(name: string): boolean {
    return this.params.has(name);
  }

  protected checkAlive(): void {
    if (this.disposedFlag) throw new Error(`${this.constructor.name}: the module was disposed`);
  }

  /** [name, module] for this module ('' or prefix) and every descendant, depth first, in registration order. */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix, this]];
    for (const [k, m] of this.children) out.push(...m.namedModules(prefix ? `${prefix}.${k}` : k));
    return out;
  }

  /** Every parameter of the tree with its checkpoint key, frozen ones included. */
  namedParameters(prefix = ''): Array<[string, Parameter]> {
    return this.namedModules(prefix).flatMap(([mk, m]) => [...m.params].map(([k, p]): [string, Parameter] => [mk ? `${mk}.${k}` : k, p]));
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** The parameters that train (requiresGrad): what an optimizer takes. */
  trainableParameters(): Parameter[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  namedBuffers(prefix = ''): Array<[string, Tensor]> {
    return this.namedModules(prefix).flatMap(([mk, m]) => [...m.buffers].map(([k, b]): [string, Tensor] => [mk ? `${mk}.${k}` : k, b]));
  }

  /** Sets training mode on the whole tree (true: training, false: eval). */
  train(mode = true): this {
    if (typeof mode !== 'boolean') throw new Error(`train: mode must be a boolean, got ${JSON.stringify(mode)}`);
    for (const [, m] of this.namedModules()) {
      m.training = mode;
      m.stateChanged();
    }
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops whatever this module caches from its state; subclasses with caches override it. */
  protected stateChanged(): void {}

  private notifyAll(): void {
    for (const [, m] of this.namedModules()) m.stateChanged();
  }

  /**
   * Parameters and buffers by checkpoint key. The values share memory with the module (detached handles): they
   * change when the module trains, and disposing them leaves the module intact.
   */
  stateDict(): Map<string, Tensor> {
    this.checkAlive();
    const out = new Map<string, Tensor>();
    for (const [k, t] of [...this.namedParameters(), ...this.namedBuffers()]) out.set(k, t.detach());
    return out;
  }

  /**
   * Copies values into the existing parameters and buffers (in place, so optimizers holding them stay valid),
   * converting dtype and device as needed. Everything is checked before anything is written: with strict (the
   * default) missing and unexpected keys are an Error listing all of them; a shape mismatch always is.
   */
  loadStateDict(state: StateDict, opts: LoadStateDictOptions = {}): { missing: string[]; unexpected: string[] } {
    this.checkAlive();
    const strict = opts.strict ?? true;
    const entries = state instanceof Map ? state : state && typeof state === 'object' ? new Map(Object.entries(state)) : null;
    if (!entries) throw new Error('loadStateDict: expected a Map or an object of Tensors');
    const own = new Map<string, Tensor>([...this.namedParameters(), ...this.namedBuffers()]);
    const missing = [...own.keys()].filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !own.has(k));
    if (strict && (missing.length || unexpected.length)) {
      const parts = [];
      if (missing.length) parts.push(`missing keys (${missing.length}): ${missing.join(', ')}`);
      if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
      throw new Error(`loadStateDict: ${parts.join('; ')}`);
    }
    const pairs: Array<[Tensor, Tensor]> = [];
    for (const [k, dst] of own) {
      const src = entries.get(k);
      if (src === undefined) continue;
      if (!(src instanceof Tensor)) throw new Error(`loadStateDict: '${k}' is not a Tensor`);
      src.native(`loadStateDict '${k}'`);
      if (fmt(src.shape) !== fmt(dst.shape)) throw new Error(`loadStateDict: '${k}' has shape ${fmt(src.shape)}, expected ${fmt(dst.shape)}`);
      if ((src.dtype === 'i32') !== (dst.dtype === 'i32')) throw new Error(`loadStateDict: '${k}' is ${src.dtype}, expected ${dst.dtype}`);
      pairs.push([dst, src]);
    }
    noGrad(() => {
      for (const [dst, src] of pairs) {
        const onDevice = src.device === dst.device ? src : src.to(dst.device);
        native.cast({ out: dst.native('loadStateDict'), outDtype: dst.dtype, a: onDevice.native('loadStateDict'), aDtype: onDevice.dtype, n: dst.numel });
        if (onDevice !== src) onDevice.dispose();
        if (dst instanceof Parameter) dst.markModified();
      }
    });
    this.notifyAll();
    return { missing, unexpected };
  }

  /** Moves every parameter and buffer to device. Parameters are new objects afterwards (make optimizers after). */
  to(device: Device): this {
    this.checkAlive();
    noGrad(() => {
      for (const [, m] of this.namedModules()) {
        for (const [k, p] of m.params) {
          if (p.device === device) continue;
          const moved = p.to(device);
          m.params.set(k, Parameter.from(moved, p.requiresGrad));
          p.zeroGrad();
          p.dispose();
        }
        for (const [k, b] of m.buffers) {
          if (b.device === device) continue;
          m.buffers.set(k, escape(b.to(device)));
          b.dispose();
        }
      }
    });
    this.notifyAll();
    return this;
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Frees every parameter, buffer and cache of the tree now; using the module afterwards is an Error. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      m.stateChanged();
      for (const p of m.params.values()) {
        p.zeroGrad();
        p.dispose();
      }
      for (const b of m.buffers.values()) b.dispose();
      m.disposedFlag = true;
    }
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Children named 0, 1, 2, ... (PyTorch's ModuleList and, with forward, Sequential). */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[];

  constructor(modules: readonly M[] = []) {
    super();
    this.items = [];
    for (const m of modules) this.push(m);
  }

  push(m: M): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }

  at(i: number): M {
    const m = this.items[i];
    if (!m) throw new Error(`ModuleList: index ${i} is out of range for ${this.items.length} modules`);
    return m;
  }

  get length(): number {
    return this.items.length;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** Children under given names (PyTorch's ModuleDict), in insertion order. */
export class ModuleDict<M extends Module = Module> extends Module {
  private readonly items = new Map<string, M>();

  constructor(modules: Record<string, M> | Array<[string, M]> = {}) {
    super();
    for (const [k, m] of Array.isArray(modules) ? modules : Object.entries(modules)) this.set(k, m);
  }

  set(name: string, m: M): this {
    this.registerModule(name, m);
    this.items.set(name, m);
    return this;
  }

  get(name: string): M {
    const m = this.items.get(name);
    if (!m) throw new Error(`ModuleDict: no module '${name}'`);
    return m;
  }

  has(name: string): boolean {
    return this.items.has(name);
  }

  entries(): Array<[string, M]> {
    return [...this.items];
  }
}

/** A module that maps one tensor to one tensor. */
export interface TensorModule extends Module {
  forward(x: Tensor): Tensor;
}

/** Applies its children in order, output to input. */
export class Sequential extends ModuleList<TensorModule> {
  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this) y = m.forward(y);
    return y;
  }
}
