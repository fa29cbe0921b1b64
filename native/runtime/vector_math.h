// Branch-free scalar math that a loop vectorizes in every AMR_VECTOR_CLONES clone (libm's expf is a call the
// compiler cannot vectorize without fast-math): the cpu kernels' exp of softmax arguments and the sigmoid behind
// the exp-based activations of the GEMM epilogue.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace amr {

// e^x for x <= 0: x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7
// there), 2^n put into the exponent bits. x is clamped at −87 (e^−87 ≈ 1.6e-38, the smallest normal range), where
// expf itself underflows towards 0.
inline float exp_nonpositive(float x) {
  x = x < -87.f ? -87.f : x;
  // Round to nearest by the 1.5·2^23 shift (exact for |x·log2 e| < 2^22; nearbyint would not vectorize on SSE2).
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}

// σ(z) = 1/(1 + e^−z) from e = e^−|z| <= 1 on both sides (e/(1 + e) for z < 0), so nothing overflows and the
// negative tail keeps its relative precision, as the scalar rule in activation.h does with expf.
inline float sigmoid_nonbranching(float z) {
  const float e = exp_nonpositive(-std::fabs(z));
  const float inv = 1.f / (1.f + e);
  return z >= 0.f ? inv : e * inv;
}

}  // namespace amr
