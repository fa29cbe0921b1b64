// Branch-free scalar math that a loop vectorizes in every AMR_VECTOR_CLONES clone (libm's expf and erfcf are calls
// the compiler cannot vectorize without fast-math): the cpu kernels' exp of softmax arguments, and the sigmoid and
// erfc behind the activations (activation/rows.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace amr {

// e^r for |r| a little above ln2/2 at most, by its degree-7 Taylor polynomial (relative error < 3e-8 at ln2/2).
inline float exp_reduced(float r) {
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  return p * r + 1.f;
}

// 2^n for an integral n in [−126, 127], put into the exponent bits.
inline float pow2_int(int32_t n) {
  const int32_t e = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return scale;
}

// n = x·log2 e rounded to nearest, by the 1.5·2^23 shift (exact for |x·log2 e| < 2^22; nearbyint would not vectorize
// on SSE2).
inline float round_log2e(float x) { return (x * 1.44269504088896341f + 12582912.f) - 12582912.f; }

// e^x for x <= 0: x = n·ln2 + r with |r| <= ln2/2 (ln2 in two parts, Cody–Waite), e^r·2^n. x is clamped at −87
// (e^−87 ≈ 1.6e-38, the smallest normal range), where expf itself underflows towards 0.
inline float exp_nonpositive(float x) {
  x = x < -87.f ? -87.f : x;
  const float n = round_log2e(x);
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  return exp_reduced(r) * pow2_int(static_cast<int32_t>(n));
}

// σ(z) = 1/(1 + e^−z) from e = e^−|z| <= 1 on both sides (e/(1 + e) for z < 0), so nothing overflows and the
// negative tail keeps its relative precision, as the scalar rule in activation.h does with expf.
inline float sigmoid_nonbranching(float z) {
  const float e = exp_nonpositive(-std::fabs(z));
  const float inv = 1.f / (1.f + e);
  return z >= 0.f ? inv : e * inv;
}

// e^(x + y) for x + y <= 0, where x is exact and may be large (−a² for erfc's tail) and y is small: n·ln2 is taken
// off x before y is added (x − n·ln2_hi is exact, Cody–Waite), so y's digits survive, where rounding x + y first
// would cost |x|·2^-24 of relative precision (5e-6 at erfc(9)). Results down to the smallest subnormal: 2^n is
// applied as two halves, so the exponent field of neither overflows, and the last multiply rounds gradually.
inline float exp_sum_nonpositive(float x, float y) {
  float s = x + y;
  s = s < -104.f ? -104.f : s;  // e^-104 is below f32's smallest subnormal
  const float n = round_log2e(s);
  // |r| can exceed ln2/2 slightly (n is rounded from the sum); exp_reduced's polynomial covers that.
  const float r = ((x - n * 0.693145751953125f) + y) - n * 1.42860682030941723e-6f;
  const int32_t ni = static_cast<int32_t>(n), n1 = ni >> 1;
  return (exp_reduced(r) * pow2_int(n1)) * pow2_int(ni - n1);
}

// a² as hi + lo exactly (Veltkamp's split; the build keeps IEEE order and has no fma to lean on).
inline void square_split(float a, float& hi, float& lo) {
  hi = a * a;
  const float c = 4097.f * a;
  const float ah = c - (c - a), al = a - ah;
  lo = ((ah * ah - hi) + 2.f * ah * al) + al * al;
}

// e^(−k·a²) for k >= 0 (GELU's density takes k = 1/2), without losing a²'s rounding (see exp_sum_nonpositive).
inline float exp_neg_square(float a, float k) {
  float hi, lo;
  square_split(a, hi, lo);
  return exp_sum_nonpositive(-k * hi, -k * lo);
}

// erfc(z) for every z: for a = |z|, erfc(a) = t·e^(−a² + P(t)), t = 1/(1 + a/2), P the degree-9 Chebyshev fit whose
// fractional error is below 1.2e-7 for all a >= 0 (Press et al., Numerical Recipes §6.2), and erfc(−a) = 2 − erfc(a).
// The relative precision holds in the tail, where GELU's negative side lives (erfc(9) ≈ 4e-37): measured against
// float64 over [−15, 10], GELU built on it is within 3.4e-7 of the exact value once the argument's own condition
// number is taken out, as erfcf is. Past a = kErfcTailCut the tail is taken as 0 (and erfc(−∞) = 2, NaN stays NaN).
//
// kErfcTailCut: from here on erfc (< 6.7e-38) and everything GELU builds on it (0.5·x·erfc, below 4.3e-37 = 2^-121.2;
// its density term below 4.4e-37) would come near or under f32's normal range (1.2e-38), where every vector holding
// one such lane pays a microcode assist per subnormal operation: a GEMM with a GELU epilogue whose pre-activations
// reach |x| ≈ 13 ran 1.5x slower for it. Such lanes compute at a = 0 and are masked to 0, which is within 2^-120 of
// the exact GELU value. Its density's cut is the same point in x: |x| > kErfcTailCut·√2.
constexpr float kErfcTailCut = 9.1f;
constexpr float kGeluDensityCut = 12.8693f;  // kErfcTailCut·√2, rounded down

inline float erfc_nonbranching(float z) {
  const float a_in = std::fabs(z);
  const float a = a_in > kErfcTailCut ? 0.f : a_in;
  const float t = 1.f / (1.f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float hi, lo;
  square_split(a, hi, lo);
  const float e = t * exp_sum_nonpositive(-hi, p - lo);
  const float tail = a_in > kErfcTailCut ? 0.f : e;
  return z >= 0.f ? tail : 2.f - tail;
}

}  // namespace amr
