// Pointwise activations: the exact-erf GELU, ReLU, SiLU, sigmoid, and the two GELU approximations teachers use
// (CLIP's quick_gelu, SigLIP's gelu_pytorch_tanh), forward and backward. The scalar formulas are the ones the
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

// The GEMM epilogue fuses None, Gelu, Relu, QuickGelu and GeluTanh (its binding refuses the others); every kind
// runs standalone.
enum class Kind : int { None = 0, Gelu = 1, Relu = 2, Silu = 3, Sigmoid = 4, QuickGelu = 5, GeluTanh = 6 };

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

// σ(x) = 1/(1 + e^−x), written so that e^x never overflows: for x < 0 it is e^x/(1 + e^x), whose e^x is ≤ 1.
// (1/(1 + e^−x) would be fine too in f32, e^−x → inf → σ → 0, but this form keeps the tail's relative precision.)
AMR_HD float sigmoid_value(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}
// σ' = σ(1 − σ); SiLU = x·σ(x), SiLU' = σ(1 + x(1 − σ)): PyTorch's sigmoid_backward and silu_backward formulas.
AMR_HD float sigmoid_grad(float dy, float x) {
  const float s = sigmoid_value(x);
  return dy * (s * (1.f - s));
}
AMR_HD float silu_value(float x) { return x * sigmoid_value(x); }
AMR_HD float silu_grad(float dy, float x) {
  const float s = sigmoid_value(x);
  return dy * (s * (1.f + x * (1.f - s)));
}

// CLIP's quick_gelu, x·σ(1.702x); its derivative σ(1.702x)·(1 + 1.702x·(1 − σ(1.702x))).
AMR_HD float quick_gelu_value(float x) { return x * sigmoid_value(1.702f * x); }
AMR_HD float quick_gelu_grad(float dy, float x) {
  const float s = sigmoid_value(1.702f * x);
  return dy * (s * (1.f + 1.702f * x * (1.f - s)));
}

// PyTorch's gelu(approximate='tanh') (SigLIP's gelu_pytorch_tanh): 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715x³),
// computed as the identical x·σ(2u): 1 + tanh(u) cancels in the negative tail (all digits gone by x ≈ −5), while
// the stable σ keeps them, so the result is PyTorch's up to PyTorch's own rounding. The derivative in the same form:
// σ(2u) + x·2σ(2u)(1 − σ(2u))·u', u' = √(2/π)·(1 + 3·0.044715x²).
constexpr float kGeluTanhBeta = 0.79788456080286536f;  // √(2/π)
constexpr float kGeluTanhKappa = 0.044715f;
AMR_HD float gelu_tanh_value(float x) {
  return x * sigmoid_value(2.f * kGeluTanhBeta * (x + kGeluTanhKappa * x * x * x));
}
AMR_HD float gelu_tanh_grad(float dy, float x) {
  const float x_sq = x * x;
  const float s = sigmoid_value(2.f * kGeluTanhBeta * (x + kGeluTanhKappa * x_sq * x));
  const float du = kGeluTanhBeta * (1.f + 3.f * kGeluTanhKappa * x_sq);
  return dy * (s + x * (2.f * s * (1.f - s)) * du);
}

AMR_HD float apply(Kind k, float v) {
  switch (k) {
    case Kind::Gelu: return gelu_value(v);
    case Kind::Relu: return relu_value(v);
    case Kind::Silu: return silu_value(v);
    case Kind::Sigmoid: return sigmoid_value(v);
    case Kind::QuickGelu: return quick_gelu_value(v);
    case Kind::GeluTanh: return gelu_tanh_value(v);
    default: return v;
  }
}
AMR_HD float grad(Kind k, float dy, float x) {
  switch (k) {
    case Kind::Gelu: return dy * gelu_derivative(x);
    case Kind::Relu: return relu_grad(dy, x);
    case Kind::Silu: return silu_grad(dy, x);
    case Kind::Sigmoid: return sigmoid_grad(dy, x);
    case Kind::QuickGelu: return quick_gelu_grad(dy, x);
    case Kind::GeluTanh: return gelu_tanh_grad(dy, x);
    default: return dy;
  }
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
