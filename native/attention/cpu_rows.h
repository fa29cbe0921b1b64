// The cpu attention's row kernels: the element-wise work between the tile products (row maxima, the softmax's exp
// and sums, the scalings, the bias and relative-position terms, dS), along rows in fixed-width lanes so they vectorize
// under the build's IEEE order, plus the AVX-512 exp that runs where the GEMM's AVX-512 kernel does. Included by
// attention/cpu.cpp only (internal linkage, so no clone is exported from the addon).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../gemm/cpu_microkernel.h"
#include "../runtime/vector_clones.h"
#include "../runtime/vector_math.h"
#include "../runtime/vector_math_avx512.h"

namespace amr {
namespace attention {
namespace cpu {
namespace {
// Lanes of the row reductions: each lane sums (or maximizes) every kLanes-th element and the lanes are combined in
// one fixed order, which the compiler vectorizes without reassociating anything.
constexpr int64_t kLanes = 16;

// Written on 16-lane vectors because the compiler leaves a max reduction scalar under IEEE semantics even across
// independent lanes; the select below is what vmaxps computes, lane by lane, so every clone gives the same result.
typedef float F32x16 __attribute__((vector_size(64)));
typedef int32_t I32x16 __attribute__((vector_size(64)));

AMR_VECTOR_CLONES
float row_max(const float* x, int64_t n) {
  I32x16 lane_bits;
  {
    F32x16 init;
    for (int l = 0; l < kLanes; ++l) init[l] = -INFINITY;
    std::memcpy(&lane_bits, &init, sizeof init);
  }
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    F32x16 v, lane;
    std::memcpy(&v, x + j, sizeof v);
    std::memcpy(&lane, &lane_bits, sizeof lane);
    I32x16 v_bits;
    std::memcpy(&v_bits, &v, sizeof v);
    const I32x16 keep = lane > v;  // all ones where the lane stays
    lane_bits = (lane_bits & keep) | (v_bits & ~keep);
  }
  F32x16 lane;
  std::memcpy(&lane, &lane_bits, sizeof lane);
  float m = -INFINITY;
  for (int l = 0; l < kLanes; ++l) m = std::max(m, lane[l]);
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// x[j] = e^(x[j] − m) in place; returns Σ_j x[j] (lane sums, then the tail, in fixed order).
AMR_VECTOR_CLONES
float exp_shifted(float* x, int64_t n, float m) {
  float lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      x[j + l] = exp_nonpositive(x[j + l] - m);
      lane[l] += x[j + l];
    }
  float s = 0.f;
  for (int64_t l = 0; l < kLanes; ++l) s += lane[l];
  for (; j < n; ++j) {
    x[j] = exp_nonpositive(x[j] - m);
    s += x[j];
  }
  return s;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AMR_ATTENTION_AVX512 1
// exp_shifted on AVX-512 with fused multiply-adds and scalef: the same reduction and polynomial as exp_nonpositive,
// in about half the instructions (the portable clones keep IEEE order without fma, so the AVX-512 clone of the plain
// loop pays a multiply and an add per polynomial step, and four instructions for 2^n). It was about a quarter of the
// forward at 224 px. The tail is masked, so there is no scalar remainder; the lane sums are combined by one fixed
// order. Its bits differ from the portable clone's in the last place (fma rounds once), so it runs exactly when the
// GEMM's AVX-512 micro-kernel does, and forcing another kernel (debug.cpuGemmKernel) tests the portable path.
// (GCC 12's AVX-512 headers trip its own uninitialized-value warnings on max, roundscale and scalef: silenced here.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// e^v for v ≤ 0 on 16 lanes (v clamped at −87, where expf itself underflows): the reduction and polynomial of
// exp_nonpositive with fma and scalef.
__attribute__((target("avx512f"))) inline __m512 exp_nonpositive16(__m512 v) {
  v = _mm512_max_ps(v, _mm512_set1_ps(-87.f));
  const __m512 t = round_log2e16(v);
  const __m512 r = _mm512_fmadd_ps(t, _mm512_set1_ps(-1.42860682030941723e-6f),
                                   _mm512_fmadd_ps(t, _mm512_set1_ps(-0.693145751953125f), v));
  return exp_reduced16_scaled(r, t);
}

__attribute__((target("avx512f"))) float exp_shifted_avx512(float* x, int64_t n, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - j)) - 1);
    const __m512 e = exp_nonpositive16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vm));
    _mm512_mask_storeu_ps(x + j, k, e);
    acc = _mm512_mask_add_ps(acc, k, acc, e);
  }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  float sum = 0.f;
  for (int l = 0; l < 16; ++l) sum += lane[l];
  return sum;
}
#pragma GCC diagnostic pop
#endif

// The exp pass of the softmax rows, chosen once per call: AVX-512 where the GEMM runs its AVX-512 kernel, else the
// portable clones.
using ExpFn = float (*)(float*, int64_t, float);
ExpFn softmax_exp() {
#ifdef AMR_ATTENTION_AVX512
  if (std::strcmp(gemm::cpu::micro_kernel().name, "avx512") == 0) return exp_shifted_avx512;
#endif
  return exp_shifted;
}

// Whether the gradient rows go out by streaming stores: with the AVX-512 rows (the bits are the same either way).
bool streaming_stores() {
#ifdef AMR_ATTENTION_AVX512
  return std::strcmp(gemm::cpu::micro_kernel().name, "avx512") == 0;
#else
  return false;
#endif
}

// Σ_j x[j] in kLanes lanes combined in order, then the tail.
AMR_VECTOR_CLONES
float row_sum(const float* x, int64_t n) {
  float lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lane[l] += x[j + l];
  float s = 0.f;
  for (int64_t l = 0; l < kLanes; ++l) s += lane[l];
  for (; j < n; ++j) s += x[j];
  return s;
}

// Σ_d a[d]·b[d] over n (a multiple of 8, as every head dim is) in 8 lanes combined in order: delta's row sums, which
// a running scalar sum would make latency-bound.
AMR_VECTOR_CLONES
float dot(const float* a, const float* b, int64_t n) {
  float lane[8] = {};
  for (int64_t d = 0; d < n; d += 8)
    for (int l = 0; l < 8; ++l) lane[l] += a[d + l] * b[d + l];
  float s = 0.f;
  for (int l = 0; l < 8; ++l) s += lane[l];
  return s;
}

AMR_VECTOR_CLONES
void scale_row(float* x, int64_t n, float a) {
  for (int64_t j = 0; j < n; ++j) x[j] *= a;
}

// y[j] = a·x[j] into a gradient row of dqkv. Streaming stores where the CPU has AVX-512 and the row is whole cache
// lines: dqkv is written once here, and ordinary stores first read every line of it into the core's cache only to
// overwrite it (the backward's own store loops were about a tenth of it at 224 px; measured 4-7% faster fwd+bwd
// with streaming, about 1% on a whole block's step, where the qkv projection's backward then reads dqkv back).
AMR_VECTOR_CLONES
void store_scaled_row_portable(float* y, const float* x, int64_t n, float a) {
  for (int64_t j = 0; j < n; ++j) y[j] = a * x[j];
}

#ifdef AMR_ATTENTION_AVX512
__attribute__((target("avx512f"))) void store_scaled_row_stream(float* y, const float* x, int64_t n, float a) {
  const __m512 va = _mm512_set1_ps(a);
  for (int64_t j = 0; j < n; j += 16) _mm512_stream_ps(y + j, _mm512_mul_ps(va, _mm512_loadu_ps(x + j)));
}
#endif

// Streaming stores are weakly ordered: fenced before the pool reports the task done, so no thread reads dqkv ahead
// of them.
inline void stream_fence(bool stream) {
#ifdef AMR_ATTENTION_AVX512
  if (stream) _mm_sfence();
#endif
  (void)stream;
}

inline bool streamable(const float* y, int64_t n, bool stream) {
  return stream && n % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 64 == 0;
}

inline void store_scaled_row(float* y, const float* x, int64_t n, float a, bool stream) {
#ifdef AMR_ATTENTION_AVX512
  if (streamable(y, n, stream)) return store_scaled_row_stream(y, x, n, a);
#endif
  (void)stream;
  store_scaled_row_portable(y, x, n, a);
}


AMR_VECTOR_CLONES
void add_row(float* x, const float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] += y[j];
}

// x[c] += h + w[c]: one key row's span of the relative position terms.
AMR_VECTOR_CLONES
void add_rel_span(float* x, float h, const float* w, int64_t n) {
  for (int64_t c = 0; c < n; ++c) x[c] += h + w[c];
}

// dS = P ∘ (dP − delta), into dp.
AMR_VECTOR_CLONES
void softmax_grad_row(float* dp, const float* p, int64_t n, float delta) {
  for (int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - delta);
}

}  // namespace
}  // namespace cpu
}  // namespace attention
}  // namespace amr
