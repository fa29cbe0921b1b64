#include <algorithm>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "../activation/rows.h"
#include "blas.h"
#include "cpu_bf16.h"
#include "gemm.h"

namespace amr {
namespace gemm {
namespace cpu {

namespace {

// op(X) as a contiguous f32 [rows, cols] matrix, whatever X's dtype and transposition.
template <typename T>
void pack(std::vector<float>& dst, const T* src, int64_t rows, int64_t cols, bool trans) {
  dst.resize(static_cast<size_t>(rows * cols));
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c)
        dst[r * cols + c] = Elem<T>::load(src, trans ? c * rows + r : r * cols + c);
  });
}

// C[M,N] = A[M,K] · B[K,N], all contiguous f32: rows of C in parallel, the inner loop runs along N so the
// compiler vectorizes it.
void blocked_gemm(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k) {
  constexpr int64_t kBlockK = 256;
  parallel_for(m, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) std::fill(c + i * n, c + (i + 1) * n, 0.f);
    for (int64_t k0 = 0; k0 < k; k0 += kBlockK) {
      const int64_t k1 = std::min(k, k0 + kBlockK);
      for (int64_t i = r0; i < r1; ++i) {
        float* ci = c + i * n;
        for (int64_t p = k0; p < k1; ++p) {
          const float aip = a[i * k + p];
          const float* bp = b + p * n;
          for (int64_t j = 0; j < n; ++j) ci[j] += aip * bp[j];
        }
      }
    }
  });
}

// C = act(acc + bias) + residual for batch entry e, from the f32 product acc (which may be C itself, in place),
// keeping the preactivation when asked.
template <typename T>
void apply_epilogue(const GemmArgs& g, int64_t e, const float* acc, T* C) {
  const T* bias = static_cast<const T*>(g.bias);
  const T* res = g.residual ? static_cast<const T*>(g.residual) + e * g.stride_c : nullptr;
  T* pre = g.preactivation ? static_cast<T*>(g.preactivation) + e * g.stride_c : nullptr;
  if (g.activation != Activation::None) {
    // Bias, preactivation, then the activation over the whole row at once (activation/rows.h), then the residual.
    parallel_for(g.m, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(static_cast<size_t>(g.n));
      for (int64_t i = r0; i < r1; ++i) {
        for (int64_t j = 0; j < g.n; ++j) {
          float v = acc[i * g.n + j];
          if (bias) v += Elem<T>::load(bias, j);
          if (pre) Elem<T>::store(pre, i * g.n + j, v);
          row[j] = v;
        }
        activation::cpu::apply_row(g.activation, row.data(), g.n);
        for (int64_t j = 0; j < g.n; ++j) Elem<T>::store(C, i * g.n + j, res ? row[j] + Elem<T>::load(res, i * g.n + j) : row[j]);
      }
    });
    return;
  }
  parallel_for(g.m, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        float v = acc[i * g.n + j];
        if (bias) v += Elem<T>::load(bias, j);
        if (pre) Elem<T>::store(pre, i * g.n + j, v);
        if (res) v += Elem<T>::load(res, i * g.n + j);
        Elem<T>::store(C, i * g.n + j, v);
      }
  });
}

// C = act(acc + bias) + residual over rows [i0, i1) and columns [j0, j1) of batch entry e, from f32 sums acc
// (ldacc apart, pointing at element (i0, j0)), keeping the preactivation when asked. Serial: the AMX product calls
// it on each finished block from inside its own parallel loop.
template <typename T>
void epilogue_block(const GemmArgs& g, int64_t e, const float* acc, int64_t ldacc, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) {
  const T* bias = static_cast<const T*>(g.bias);
  const T* res = g.residual ? static_cast<const T*>(g.residual) + e * g.stride_c : nullptr;
  T* pre = g.preactivation ? static_cast<T*>(g.preactivation) + e * g.stride_c : nullptr;
  T* C = static_cast<T*>(g.c) + e * g.stride_c;
  thread_local std::vector<float> row;
  if (int64_t(row.size()) < j1 - j0) row.resize(size_t(j1 - j0));
  float* v = row.data() - j0;
  for (int64_t i = i0; i < i1; ++i) {
    const float* a = acc + (i - i0) * ldacc - j0;
    for (int64_t j = j0; j < j1; ++j) {
      v[j] = bias ? a[j] + Elem<T>::load(bias, j) : a[j];
      if (pre) Elem<T>::store(pre, i * g.n + j, v[j]);
    }
    activation::cpu::apply_row(g.activation, row.data(), j1 - j0);
    for (int64_t j = j0; j < j1; ++j) Elem<T>::store(C, i * g.n + j, res ? v[j] + Elem<T>::load(res, i * g.n + j) : v[j]);
  }
}

// f32 through the host BLAS straight from and into the caller's buffers: the transpositions go to sgemm, C is
// written by it and the epilogue (when there is one) runs over C in place, so no operand or result is copied.
// Not when the residual is C itself (sgemm would overwrite it before it is read).
bool direct_f32(const GemmArgs& g, SgemmFn sgemm) {
  return sgemm && g.dtype == DType::F32 && g.m > 0 && g.n > 0 && g.k > 0 && (!g.residual || g.residual != g.c);
}

void gemm_f32_blas(const GemmArgs& g, SgemmFn sgemm) {
  const bool epilogue = g.bias || g.residual || g.preactivation || g.activation != Activation::None;
  for (int64_t e = 0; e < g.batch; ++e) {
    const float* A = static_cast<const float*>(g.a) + e * g.stride_a;
    const float* B = static_cast<const float*>(g.b) + e * g.stride_b;
    float* C = static_cast<float*>(g.c) + e * g.stride_c;
    sgemm(kCblasRowMajor, g.trans_a ? kCblasTrans : kCblasNoTrans, g.trans_b ? kCblasTrans : kCblasNoTrans, (int)g.m,
          (int)g.n, (int)g.k, 1.f, A, (int)(g.trans_a ? g.m : g.k), B, (int)(g.trans_b ? g.k : g.n), 0.f, C, (int)g.n);
    if (epilogue) apply_epilogue(g, e, C, C);
  }
}

}  // namespace

void gemm(GpuStream, const GemmArgs& g) {
  if (SgemmFn sgemm = host_sgemm(); direct_f32(g, sgemm)) return gemm_f32_blas(g, sgemm);
  with_float_dtype(g.dtype, "matmul", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (bf16_amx_enabled()) {
        // The epilogue writes each finished block straight from the AMX sums: no m × n f32 product is kept.
        for (int64_t e = 0; e < g.batch; ++e)
          bf16_amx_product(static_cast<const T*>(g.a) + e * g.stride_a, static_cast<const T*>(g.b) + e * g.stride_b, g.m,
                           g.n, g.k, g.trans_a, g.trans_b,
                           [&](const float* acc, int64_t ld, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
                             epilogue_block<T>(g, e, acc, ld, i0, i1, j0, j1);
                           });
        return;
      }
    }
    std::vector<float> a, b, c(static_cast<size_t>(g.m * g.n));
    for (int64_t e = 0; e < g.batch; ++e) {
      const T* A = static_cast<const T*>(g.a) + e * g.stride_a;
      const T* B = static_cast<const T*>(g.b) + e * g.stride_b;
      pack(a, A, g.m, g.k, g.trans_a);
      if (SgemmFn sgemm = host_sgemm()) {
        // BLAS takes the transposition itself; only bf16 needs converting.
        const float* bf;
        if (std::is_same<T, float>::value) bf = reinterpret_cast<const float*>(B);
        else {
          pack(b, B, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, false);
          bf = b.data();
        }
        if (g.m > 0 && g.n > 0)
          sgemm(kCblasRowMajor, kCblasNoTrans, g.trans_b ? kCblasTrans : kCblasNoTrans, (int)g.m, (int)g.n, (int)g.k,
                1.f, a.data(), (int)std::max<int64_t>(g.k, 1), bf, (int)std::max<int64_t>(g.trans_b ? g.k : g.n, 1),
                0.f, c.data(), (int)std::max<int64_t>(g.n, 1));
      } else {
        pack(b, B, g.k, g.n, g.trans_b);
        blocked_gemm(c.data(), a.data(), b.data(), g.m, g.n, g.k);
      }
      apply_epilogue(g, e, c.data(), static_cast<T*>(g.c) + e * g.stride_c);
    }
  });
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
