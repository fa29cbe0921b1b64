#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "../runtime/vector_math.h"
#include "../runtime/vector_math_avx512.h"
#include "activation.h"
#include "rows.h"
#include "../gemm/cpu_microkernel.h"
#include "../runtime/bf16_rows.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace amr {
namespace activation {
namespace cpu {

namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Each kind's loop stands alone, so the compiler vectorizes it with the kind decided outside.
AMR_VECTOR_CLONES void gelu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = 0.5f * v[j] * erfc_nonbranching(-v[j] * kSqrtHalf);
}
AMR_VECTOR_CLONES void relu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] < 0.f ? 0.f : v[j];  // NaN is not < 0: it passes
}
AMR_VECTOR_CLONES void silu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] * sigmoid_nonbranching(v[j]);
}
AMR_VECTOR_CLONES void sigmoid_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = sigmoid_nonbranching(v[j]);
}
AMR_VECTOR_CLONES void quick_gelu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] * sigmoid_nonbranching(1.702f * v[j]);
}
AMR_VECTOR_CLONES void gelu_tanh_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float x = v[j];
    v[j] = x * sigmoid_nonbranching(2.f * kGeluTanhBeta * (x + kGeluTanhKappa * x * x * x));
  }
}

// The derivatives, in activation.h's forms (PyTorch's backward formulas).
AMR_VECTOR_CLONES void gelu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float cdf = 0.5f * erfc_nonbranching(-x[j] * kSqrtHalf);
    // Past the density's cut (vector_math.h) it is 0, computed at x = 0 so no lane goes subnormal.
    const bool far = std::fabs(x[j]) > kGeluDensityCut;
    const float pdf = far ? 0.f : kInvSqrt2Pi * exp_neg_square(far ? 0.f : x[j], 0.5f);
    dx[j] = dy[j] * (cdf + x[j] * pdf);
  }
}
AMR_VECTOR_CLONES void relu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dx[j] = x[j] <= 0.f ? 0.f : dy[j];
}
AMR_VECTOR_CLONES void silu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(x[j]);
    dx[j] = dy[j] * (s * (1.f + x[j] * (1.f - s)));
  }
}
AMR_VECTOR_CLONES void sigmoid_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(x[j]);
    dx[j] = dy[j] * (s * (1.f - s));
  }
}
AMR_VECTOR_CLONES void quick_gelu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(1.702f * x[j]);
    dx[j] = dy[j] * (s * (1.f + 1.702f * x[j] * (1.f - s)));
  }
}
AMR_VECTOR_CLONES void gelu_tanh_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float x_sq = x[j] * x[j];
    const float s = sigmoid_nonbranching(2.f * kGeluTanhBeta * (x[j] + kGeluTanhKappa * x_sq * x[j]));
    const float du = kGeluTanhBeta * (1.f + 3.f * kGeluTanhKappa * x_sq);
    dx[j] = dy[j] * (s + x[j] * (2.f * s * (1.f - s)) * du);
  }
}

// Elements per chunk of the standalone op: a pool task's share, converted through a small f32 buffer for bf16.
constexpr int64_t kChunk = 4096;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AMR_ACTIVATION_AVX512 1
// GELU and its gradient on AVX-512 with fused multiply-adds: the same erfc and exp (vector_math.h) in about half the
// instructions, since the portable clones keep IEEE order without fma (each polynomial step a multiply and an add,
// a² split by Veltkamp's five-operation trick instead of one fms, 2^n in four operations instead of one scalef).
// GELU was about 6% of a ViT-B forward, most of it in fc1's epilogue. fma rounds once where the portable code rounds
// twice, so the bits differ from the clones' in the last place: these run exactly when the GEMM's AVX-512 kernel does,
// and forcing another kernel (debug.cpuGemmKernel) runs and tests the portable rows.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define AMR_AVX512F __attribute__((target("avx512f")))

// e^(x + y) for x + y <= 0 with x exact and y small (exp_sum_nonpositive): Cody–Waite by fma, scalef for 2^n
// (one rounding, gradual into the subnormals).
AMR_AVX512F inline __m512 exp_sum_nonpositive16(__m512 x, __m512 y) {
  const __m512 n = round_log2e16(_mm512_max_ps(_mm512_add_ps(x, y), _mm512_set1_ps(-104.f)));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), _mm512_add_ps(r, y));
  return exp_reduced16_scaled(r, n);
}

// erfc_nonbranching on 16 lanes: a² = hi + lo exactly by one fms.
AMR_AVX512F inline __m512 erfc16(__m512 z) {
  const __m512 a_in = _mm512_abs_ps(z);
  // Lanes past kErfcTailCut (vector_math.h) compute erfc(0) and are masked to 0: their e^(−a²) would be near or
  // below the subnormals, and every vector with one such lane paid a microcode assist.
  const __mmask16 past = _mm512_cmp_ps_mask(a_in, _mm512_set1_ps(kErfcTailCut), _CMP_GT_OQ);
  const __m512 a = _mm512_mask_blend_ps(past, a_in, _mm512_setzero_ps());
  // t = 1/(1 + a/2) by the 14-bit reciprocal and one Newton step (relative error about 2^-28, below f32's half ulp
  // but for rare last-place ties): vdivps on 16 lanes is a long microcoded op that alone took a third of the row.
  const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), a, _mm512_set1_ps(1.f));
  const __m512 t0 = _mm512_rcp14_ps(d);
  const __m512 t = _mm512_fmadd_ps(t0, _mm512_fnmadd_ps(d, t0, _mm512_set1_ps(1.f)), t0);
  static constexpr float kP[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                   -0.18628806f, 0.09678418f,  0.37409196f, 1.00002368f,  -1.26551223f};
  __m512 p = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < 10; ++i) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(kP[i]));
  const __m512 hi = _mm512_mul_ps(a, a), lo = _mm512_fmsub_ps(a, a, hi);
  const __m512 e = _mm512_mul_ps(t, exp_sum_nonpositive16(_mm512_sub_ps(_mm512_setzero_ps(), hi), _mm512_sub_ps(p, lo)));
  // Past the cut the tail is 0 (a NaN compares false and stays NaN); erfc(−a) = 2 − erfc(a).
  const __m512 tail = _mm512_mask_blend_ps(past, e, _mm512_setzero_ps());
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ),
                              _mm512_sub_ps(_mm512_set1_ps(2.f), tail), tail);
}

// y = GELU(x) (y may be x). Two vectors per step: each is one long dependent chain (the erfc polynomial, then the
// exp's), and two independent ones in flight keep both vector pipes busy where one left them waiting on latency.
AMR_AVX512F inline __m512 gelu16(__m512 x) {
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), erfc16(_mm512_mul_ps(x, _mm512_set1_ps(-kSqrtHalf))));
}

AMR_AVX512F void gelu_row_avx512(float* y, const float* x, int64_t n) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512 a = gelu16(_mm512_loadu_ps(x + j)), b = gelu16(_mm512_loadu_ps(x + j + 16));
    _mm512_storeu_ps(y + j, a);
    _mm512_storeu_ps(y + j + 16, b);
  }
  for (; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - j)) - 1);
    _mm512_mask_storeu_ps(y + j, k, gelu16(_mm512_maskz_loadu_ps(k, x + j)));
  }
}

AMR_AVX512F void gelu_grad_row_avx512(float* dx, const float* dy, const float* x_, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = n - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - j)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(k, x_ + j), g = _mm512_maskz_loadu_ps(k, dy + j);
    const __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfc16(_mm512_mul_ps(x, _mm512_set1_ps(-kSqrtHalf))));
    // e^(−x²/2) from x² = hi + lo exactly (exp_neg_square); past kGeluDensityCut it is taken as 0 (x itself as 0 in
    // the exp, then the lane masked), sparing the near-subnormal exp its microcode assist.
    const __mmask16 far = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(kGeluDensityCut), _CMP_GT_OQ);
    const __m512 xe = _mm512_mask_blend_ps(far, x, _mm512_setzero_ps());
    const __m512 hi = _mm512_mul_ps(xe, xe), lo = _mm512_fmsub_ps(xe, xe, hi);
    const __m512 half = _mm512_set1_ps(-0.5f);
    const __m512 pdf = _mm512_maskz_mul_ps(__mmask16(~far), _mm512_set1_ps(kInvSqrt2Pi),
                                           exp_sum_nonpositive16(_mm512_mul_ps(half, hi), _mm512_mul_ps(half, lo)));
    _mm512_mask_storeu_ps(dx + j, k, _mm512_mul_ps(g, _mm512_fmadd_ps(x, pdf, cdf)));
  }
}
#pragma GCC diagnostic pop

// Whether the AVX-512 rows run: exactly when the GEMM's AVX-512 micro-kernel does.
bool wide_rows() { return std::strcmp(gemm::cpu::micro_kernel().name, "avx512") == 0; }
#endif

}  // namespace

void apply_row(Kind k, float* v, int64_t n) {
  switch (k) {
    case Kind::Gelu:
#ifdef AMR_ACTIVATION_AVX512
      if (wide_rows()) return gelu_row_avx512(v, v, n);
#endif
      return gelu_row(v, n);
    case Kind::Relu: return relu_row(v, n);
    case Kind::Silu: return silu_row(v, n);
    case Kind::Sigmoid: return sigmoid_row(v, n);
    case Kind::QuickGelu: return quick_gelu_row(v, n);
    case Kind::GeluTanh: return gelu_tanh_row(v, n);
    default: return;
  }
}

void grad_row(Kind k, float* dx, const float* dy, const float* x, int64_t n) {
  switch (k) {
    case Kind::Gelu:
#ifdef AMR_ACTIVATION_AVX512
      if (wide_rows()) return gelu_grad_row_avx512(dx, dy, x, n);
#endif
      return gelu_grad_row(dx, dy, x, n);
    case Kind::Relu: return relu_grad_row(dx, dy, x, n);
    case Kind::Silu: return silu_grad_row(dx, dy, x, n);
    case Kind::Sigmoid: return sigmoid_grad_row(dx, dy, x, n);
    case Kind::QuickGelu: return quick_gelu_grad_row(dx, dy, x, n);
    case Kind::GeluTanh: return gelu_tanh_grad_row(dx, dy, x, n);
    default:
      if (dx != dy) std::copy(dy, dy + n, dx);
      return;
  }
}

void forward(GpuStream, Kind k, void* y, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for((n + kChunk - 1) / kChunk, 4, [&](int64_t c0, int64_t c1) {
      float buf[kChunk];
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b = c * kChunk, m = std::min(kChunk, n - b);
        if constexpr (std::is_same_v<T, float>) {
          // f32 works in the output itself: the element-wise staging copies were a quarter of the op's time.
          float* out = static_cast<float*>(y) + b;
          const float* in = static_cast<const float*>(x) + b;
#ifdef AMR_ACTIVATION_AVX512
          // GELU reads its input straight: the copy before it was a fifth of the op.
          if (k == Kind::Gelu && wide_rows()) {
            gelu_row_avx512(out, in, m);
            continue;
          }
#endif
          if (out != in) std::memcpy(out, in, size_t(m) * sizeof(float));
          apply_row(k, out, m);
        } else {
          // bf16: converted by rows (runtime/bf16_rows.h), rounded once on the way back.
          bf16_row_to_f32(buf, static_cast<const T*>(x) + b, m);
          apply_row(k, buf, m);
          f32_row_to_bf16(static_cast<T*>(y) + b, buf, m);
        }
      }
    });
  });
}

void backward(GpuStream, Kind k, void* dx, const void* dy, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for((n + kChunk - 1) / kChunk, 4, [&](int64_t c0, int64_t c1) {
      float gb[kChunk], xb[kChunk];
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b = c * kChunk, m = std::min(kChunk, n - b);
        if constexpr (std::is_same_v<T, float>) {
          grad_row(k, static_cast<float*>(dx) + b, static_cast<const float*>(dy) + b, static_cast<const float*>(x) + b, m);
        } else {
          bf16_row_to_f32(gb, static_cast<const T*>(dy) + b, m);
          bf16_row_to_f32(xb, static_cast<const T*>(x) + b, m);
          grad_row(k, gb, gb, xb, m);
          f32_row_to_bf16(static_cast<T*>(dx) + b, gb, m);
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace activation
}  // namespace amr
