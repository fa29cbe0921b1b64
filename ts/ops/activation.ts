// Pointwise activations, differentiable: the exact (erf) GELU, ReLU, SiLU, sigmoid, and CLIP's and SigLIP's GELU
// approximations (quickGelu, geluTanh). NaN passes through all as in PyTorch, so a
// poisoned activation reaches the loss (and the trainer's non-finite check) instead of turning into 0.
import { ActivationKindName, native } from '../native';
import { checkSame, emptyTensor, record, Tensor } from '../tensor';

export type ActivationKind = ActivationKindName;

function activation(kind: ActivationKind, x: Tensor): Tensor {
  checkSame(kind, [x]);
  if (x.dtype === 'i32') throw new Error(`${kind}: i32 tensors are not supported`);
  const y = emptyTensor(x.shape, x.dtype, x.device);
  if (x.numel > 0) native.activationForward({ kind, y: y.native(kind), x: x.native(kind), n: x.numel, dtype: x.dtype });
  return record(y, kind, [x], (g) => [activationBackward(kind, g, x)]);
}

/** x · Φ(x), the exact (erf) GELU. */
export function gelu(x: Tensor): Tensor {
  return activation('gelu', x);
}

/** max(x, 0); NaN stays NaN. */
export function relu(x: Tensor): Tensor {
  return activation('relu', x);
}

/** x · σ(x) (SiLU, "swish"), YOLO's and E-RADIO's conv activation. */
export function silu(x: Tensor): Tensor {
  return activation('silu', x);
}

/** 1 / (1 + e^−x). */
export function sigmoid(x: Tensor): Tensor {
  return activation('sigmoid', x);
}

/** x · σ(1.702x), CLIP's quick_gelu. */
export function quickGelu(x: Tensor): Tensor {
  return activation('quickGelu', x);
}

/** 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³))): PyTorch's gelu(approximate='tanh'), SigLIP's gelu_pytorch_tanh. */
export function geluTanh(x: Tensor): Tensor {
  return activation('geluTanh', x);
}

/** g · f'(x) for f an activation: the gradient at x (also used by linear's fused activation epilogue). */
export function activationBackward(kind: ActivationKind, g: Tensor, x: Tensor): Tensor {
  const op = `${kind} backward`;
  const dx = emptyTensor(x.shape, x.dtype, x.device);
  if (x.numel > 0) native.activationBackward({ kind, dx: dx.native(op), dy: g.native(op), x: x.native(op), n: x.numel, dtype: x.dtype });
  return dx;
}
