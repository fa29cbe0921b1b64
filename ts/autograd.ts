// Tape-based reverse-mode autograd. Every differentiable op that sees an input requiring a gradient records a
// GradNode on its output; backward() walks the recorded graph from a scalar in reverse topological order.
import { escape } from './scope';
import type { Tensor } from './tensor';

export interface GradNode {
  /** The op's name, used in error messages. */
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Gradients for each input (null where an input needs none), given the gradient of the output. */
  backward(gradOutput: Tensor): Array<Tensor | null>;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording anything for autograd (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

export function needsGrad(inputs: readonly Tensor[]): boolean {
  return gradEnabled && inputs.some((t) => t.requiresGrad);
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep graphs (a long training step) must not overflow the JS stack.
  const stack: Array<{ t: Tensor; expanded: boolean }> = [{ t: root, expanded: false }];
  while (stack.length) {
    const top = stack.pop()!;
    if (top.expanded) {
      order.push(top.t);
      continue;
    }
    if (seen.has(top.t)) continue;
    seen.add(top.t);
    stack.push({ t: top.t, expanded: true });
    for (const input of top.t.gradNode?.inputs ?? []) if (input.requiresGrad && !seen.has(input)) stack.push({ t: input, expanded: false });
  }
  return order.reverse();
}

export function runBackward(root: Tensor, seed: Tensor): void {
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, seed);
  noGrad(() => {
    for (const t of topologicalOrder(root)) {
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.gradNode;
      if (!node) {
        t.accumulateGrad(g);
        // A leaf's gradient belongs to the leaf, not to the scope backward runs in.
        escape(t.grad);
        if (g !== seed) g.dispose();
        continue;
      }
      const inputGrads = node.backward(g);
      if (g !== seed) g.dispose();
      node.inputs.forEach((input, i) => {
        const gi = inputGrads[i];
        if (!gi || !input.requiresGrad) {
          gi?.dispose();
          return;
        }
        const prev = grads.get(input);
        if (prev) {
          grads.set(input, prev.add(gi));
          prev.dispose();
          gi.dispose();
        } else {
          grads.set(input, gi);
        }
      });
    }
  });
}
