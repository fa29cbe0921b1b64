// Pointwise activations: the exact-erf GELU and ReLU, forward and backward. The scalar formulas are the ones the
// GEMM epilogue fuses, so a fused linear + activation and a standalone activation give the same bits.
// NaN passes through both, as in PyTorch: relu(NaN) = NaN and its gradient there is the incoming one, so a
// poisoned value is never silently turned into 0 on its way to the loss.
#pragma once
#include <cmath>
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace activation {

enum class Kind : int { None = 0, Gelu = 1, Relu = 2 };

// Φ(x) as erfc(-x/√2)/2: unlike 1 + erf(x/√2), it keeps its relative precision in the negative tail.
AMR_HD float gelu_value(float x) { return 0.5f * x * erfcf(-x * 0.70710678118654752f); }
AMR_HD float gelu_derivative(float x) {
  const float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}
AMR_HD float relu_value(float x) { return x < 0.f ? 0.f : x; }
// PyTorch's threshold_backward: 0 where the input is ≤ 0, the incoming gradient elsewhere (NaN included).
AMR_HD float relu_grad(float dy, float x) { return x <= 0.f ? 0.f : dy; }

AMR_HD float apply(Kind k, float v) { return k == Kind::Gelu ? gelu_value(v) : k == Kind::Relu ? relu_value(v) : v; }
AMR_HD float grad(Kind k, float dy, float x) {
  return k == Kind::Gelu ? dy * gelu_derivative(x) : k == Kind::Relu ? relu_grad(dy, x) : dy;
}

#define AMR_ACTIVATION_FUNCS                                                                 \
  /* y = f(x) */                                                                             \
  void forward(GpuStream s, Kind k, void* y, const void* x, int64_t n, DType dt);            \
  /* dx = dy · f'(x) */                                                                      \
  void backward(GpuStream s, Kind k, void* dx, const void* dy, const void* x, int64_t n, DType dt);

namespace cpu { AMR_ACTIVATION_FUNCS }
namespace cuda { AMR_ACTIVATION_FUNCS }
namespace sim { AMR_ACTIVATION_FUNCS }

}  // namespace activation
}  // namespace amr
