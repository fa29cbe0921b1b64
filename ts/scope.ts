// Tensor scopes: deterministic release of the intermediates of a computation.
//
// Tensors are freed by dispose() or, eventually, by garbage collection. A forward pass makes many intermediates,
// and while autograd records, the graph keeps them (as op inputs and as values saved in backward closures, such as
// a LayerNorm's statistics or an attention's logsumexp) until backward has run. Nobody but a scope can free those
// deterministically: every Tensor made while a scope is open belongs to it, and closing the scope disposes all of
// them except the ones its function returned (which pass to the enclosing scope, or to nobody at the top level).
//
// Tensors that outlive a step are taken out of scopes with `escape`: module parameters and buffers, a leaf's
// accumulated `.grad`, optimizer state, a module's cached eval-time weights. Scopes nest and are for synchronous
// code: a scope open across an `await` would also collect the tensors of whatever else runs meanwhile.
import type { Tensor } from './tensor';

class Scope {
  readonly owned = new Set<Tensor>();
}

const stack: Scope[] = [];
const ownerOf = new WeakMap<Tensor, Scope>();

/** Called by the Tensor constructor: the open scope, if any, owns the new tensor. */
export function adopt(t: Tensor): void {
  const top = stack[stack.length - 1];
  if (!top) return;
  top.owned.add(t);
  ownerOf.set(t, top);
}

/** Takes t out of the scope that owns it, so that closing the scope leaves it alive. Returns t. */
export function escape<T extends Tensor | null | undefined>(t: T): T {
  if (t) {
    ownerOf.get(t)?.owned.delete(t);
    ownerOf.delete(t);
  }
  return t;
}

// Every tensor in a result: the value itself, or inside arrays, Maps, Sets and plain objects.
function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>, TensorClass: Function): void {
  if (value === null || typeof value !== 'object' || seen.has(value) || ArrayBuffer.isView(value)) return;
  seen.add(value);
  if (value instanceof TensorClass) {
    out.add(value as Tensor);
    return;
  }
  const items = Array.isArray(value) || value instanceof Set ? [...value] : value instanceof Map ? [...value.values()] : Object.values(value);
  for (const v of items) collect(v, out, seen, TensorClass);
}

let tensorClass: Function | null = null;

/** Registered by tensor.ts, so that this module needs no runtime import of it (tensor.ts imports this one). */
export function registerTensorClass(cls: Function): void {
  tensorClass = cls;
}

export interface TidyOptions {
  /**
   * Tensors that pass into the new scope, from whichever scope owned them (or none): they are disposed with the
   * rest unless fn returns them. For a chain of steps where each consumes the previous result and nothing else
   * (no recorded graph) still needs it, so that at most one step's intermediates are alive at a time.
   */
  consume?: readonly Tensor[];
}

/**
 * Runs fn inside a new scope and returns its result. Every tensor made during fn and not escaped is disposed
 * when fn returns (or throws), except the tensors fn returns, found inside arrays, Maps, Sets and plain objects;
 * those belong to the enclosing scope from then on. fn must be synchronous (a Promise result is an Error).
 */
export function tidy<T>(fn: () => T, opts: TidyOptions = {}): T {
  if (typeof fn !== 'function') throw new Error('tidy: expected a function');
  const scope = new Scope();
  for (const t of opts.consume ?? []) {
    escape(t);
    scope.owned.add(t);
    ownerOf.set(t, scope);
  }
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    close(scope, new Set());
    throw e;
  }
  const keep = new Set<Tensor>();
  if (result instanceof Promise) {
    close(scope, keep);
    throw new Error('tidy: fn returned a Promise; scopes are for synchronous code (await outside the scope)');
  }
  if (tensorClass) collect(result, keep, new Set(), tensorClass);
  close(scope, keep);
  return result;
}

function close(scope: Scope, keep: Set<Tensor>): void {
  const i = stack.lastIndexOf(scope);
  if (i >= 0) stack.splice(i, 1);
  const parent = stack[stack.length - 1];
  for (const t of scope.owned) {
    ownerOf.delete(t);
    if (keep.has(t)) {
      if (parent) {
        parent.owned.add(t);
        ownerOf.set(t, parent);
      }
    } else {
      t.dispose();
    }
  }
  scope.owned.clear();
}
