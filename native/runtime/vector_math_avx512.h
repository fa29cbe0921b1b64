// The AVX-512 forms of vector_math.h's exp pieces, shared by the kernels whose AVX-512 rows run exactly when the
// GEMM's AVX-512 micro-kernel does (the softmax's exp in attention, GELU's erfc): fma for each polynomial step and
// scalef for 2^n. Internal to each including file (inline, target-attributed), so no clone is exported.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AMR_VECTOR_MATH_AVX512 1
#include <immintrin.h>

namespace amr {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// e^r·2^n on 16 lanes for a reduced r (|r| a little above ln2/2 at most) and an integral n: exp_reduced's degree-7
// Taylor polynomial, then 2^n by scalef (one rounding, gradual into the subnormals).
__attribute__((target("avx512f"))) inline __m512 exp_reduced16_scaled(__m512 r, __m512 n) {
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.f / 5040.f), r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// n = x·log2 e rounded to nearest, on 16 lanes.
__attribute__((target("avx512f"))) inline __m512 round_log2e16(__m512 x) {
  return _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#pragma GCC diagnostic pop

}  // namespace amr
#endif
