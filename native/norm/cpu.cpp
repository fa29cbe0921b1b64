#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../runtime/bf16_rows.h"
#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "norm.h"

namespace amr {
namespace norm {
namespace cpu {

namespace {

// The f32 rows of every ViT block's two norms as loops that vectorize (AVX-512 or AVX2 clones): the row sums go
// into kLanes double accumulators, each a fixed stride of the row, added in order at the end, so the sums keep the
// double precision of the generic path and every clone gives the same bits.
constexpr int64_t kLanes = 8;

// Eight floats and eight doubles: written on GCC vectors because the plain lane loop, with its float-to-double
// conversion, stayed scalar in every clone (the norms were ~5 cycles an element, most of a ViT block's non-GEMM
// time).
typedef float F32x8 __attribute__((vector_size(32)));
typedef double F64x8 __attribute__((vector_size(64)));

// Σ d and Σ d² over the row, d = x − x0 (a float subtraction, then double), in one pass: the variance is then
// Σd²/n − (Σd/n)² in double. Shifting by the row's first element keeps that difference from cancelling (x0 is
// within a few deviations of the mean), and one pass instead of two (the sums, then the centred squares) was a third
// of the op. The lane sums are added in one fixed order, so every clone gives the same bits.
AMR_VECTOR_CLONES void shifted_sums(const float* x, int64_t n, float x0, double* sum, double* sum_sq) {
  F64x8 acc = {0, 0, 0, 0, 0, 0, 0, 0}, acc_sq = {0, 0, 0, 0, 0, 0, 0, 0};
  F32x8 vx0;
  for (int64_t j = 0; j < kLanes; ++j) vx0[j] = x0;
  const int64_t whole = n / kLanes * kLanes;
  for (int64_t c = 0; c < whole; c += kLanes) {
    F32x8 v;
    std::memcpy(&v, x + c, sizeof v);
    const F64x8 d = __builtin_convertvector(v - vx0, F64x8);
    acc += d;
    acc_sq += d * d;
  }
  double s = 0, s2 = 0;
  for (int64_t j = 0; j < kLanes; ++j) {
    s += acc[j];
    s2 += acc_sq[j];
  }
  for (int64_t c = whole; c < n; ++c) {
    const double d = x[c] - x0;
    s += d;
    s2 += d * d;
  }
  *sum = s;
  *sum_sq = s2;
}

// A row's mean (of x − x0, see centred) and 1/sqrt(variance + eps), from shifted_sums.
void row_stats(const float* xr, int64_t cols, float eps, float* mean, float* rstd) {
  double s, s2;
  shifted_sums(xr, cols, xr[0], &s, &s2);
  const double shift_mean = s / cols;
  const double var = std::max(0.0, s2 / cols - shift_mean * shift_mean);
  *mean = static_cast<float>(shift_mean);
  *rstd = 1.0f / std::sqrt(static_cast<float>(var) + eps);
}

AMR_VECTOR_CLONES void normalize_row(float* y, const float* x, const float* w, const float* b, int64_t n, float x0, float mu, float rs) {
  for (int64_t c = 0; c < n; ++c) y[c] = centred(x[c], x0, mu) * rs * w[c] + b[c];
}

// Σ g and Σ g·x̂ of a row, g = dy·w, in lanes as shifted_sums (g and x̂ in float, their sums in double).
AMR_VECTOR_CLONES void backward_sums(const float* dy, const float* x, const float* w, int64_t n, float x0, float mu, float rs, double* sum_g, double* sum_gx) {
  F64x8 ag = {0, 0, 0, 0, 0, 0, 0, 0}, agx = {0, 0, 0, 0, 0, 0, 0, 0};
  F32x8 vx0, vmu, vrs;
  for (int64_t j = 0; j < kLanes; ++j) {
    vx0[j] = x0;
    vmu[j] = mu;
    vrs[j] = rs;
  }
  const int64_t whole = n / kLanes * kLanes;
  for (int64_t c = 0; c < whole; c += kLanes) {
    F32x8 vdy, vx, vw;
    std::memcpy(&vdy, dy + c, sizeof vdy);
    std::memcpy(&vx, x + c, sizeof vx);
    std::memcpy(&vw, w + c, sizeof vw);
    const F32x8 g = vdy * vw;
    const F32x8 xh = ((vx - vx0) - vmu) * vrs;
    ag += __builtin_convertvector(g, F64x8);
    agx += __builtin_convertvector(g * xh, F64x8);
  }
  double sg = 0, sgx = 0;
  for (int64_t j = 0; j < kLanes; ++j) {
    sg += ag[j];
    sgx += agx[j];
  }
  for (int64_t c = whole; c < n; ++c) {
    const float g = dy[c] * w[c];
    const float xh = centred(x[c], x0, mu) * rs;
    sg += g;
    sgx += g * xh;
  }
  *sum_g = sg;
  *sum_gx = sgx;
}

AMR_VECTOR_CLONES void input_grad_row(float* dx, const float* dy, const float* x, const float* w, int64_t n, float x0, float mu, float rs, float mg, float mgx) {
  for (int64_t c = 0; c < n; ++c) {
    const float g = dy[c] * w[c];
    const float xh = centred(x[c], x0, mu) * rs;
    dx[c] = rs * (g - mg - xh * mgx);
  }
}

}  // namespace


void layer_norm_forward(GpuStream, void* y, float* mean, float* rstd, const void* x, const void* w, const void* b,
                        int64_t rows, int64_t cols, float eps, DType dt, DType pdt) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) with_param_type<T>(pdt, [&](auto* ptag) {
      using P = std::remove_pointer_t<decltype(ptag)>;
      const T* X = static_cast<const T*>(x);
      const P* W = static_cast<const P*>(w);
      const P* B = static_cast<const P*>(b);
      T* Y = static_cast<T*>(y);
      if constexpr (std::is_same<T, float>::value && std::is_same<P, float>::value) {
        parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const float* xr = X + r * cols;
            row_stats(xr, cols, eps, &mean[r], &rstd[r]);
            normalize_row(Y + r * cols, xr, W, B, cols, xr[0], mean[r], rstd[r]);
          }
        });
        return;
      }
      if constexpr (std::is_same<T, uint16_t>::value) {
        // bf16 rows through the f32 row functions: the row converted once to f32, normalized there, rounded once on
        // the way back (the element-wise path below, with its two passes over Elem loads, was 3x the f32 op).
        parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
          thread_local std::vector<float> xf, yf, wf, bf;
          xf.resize(size_t(cols));
          yf.resize(size_t(cols));
          const float *wr = nullptr, *br = nullptr;
          if constexpr (std::is_same<P, float>::value) {
            wr = W;
            br = B;
          } else {
            wf.resize(size_t(cols));
            bf.resize(size_t(cols));
            bf16_row_to_f32(wf.data(), W, cols);
            bf16_row_to_f32(bf.data(), B, cols);
            wr = wf.data();
            br = bf.data();
          }
          for (int64_t r = r0; r < r1; ++r) {
            bf16_row_to_f32(xf.data(), X + r * cols, cols);
            row_stats(xf.data(), cols, eps, &mean[r], &rstd[r]);
            normalize_row(yf.data(), xf.data(), wr, br, cols, xf[0], mean[r], rstd[r]);
            f32_row_to_bf16(Y + r * cols, yf.data(), cols);
          }
        });
        return;
      }
      parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t o = r * cols;
          const float x0 = Elem<T>::load(X, o);
          double s = 0;
          for (int64_t c = 0; c < cols; ++c) s += Elem<T>::load(X, o + c) - x0;
          const float mu = static_cast<float>(s / cols);
          double v = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const double d = centred(Elem<T>::load(X, o + c), x0, mu);
            v += d * d;
          }
          const float rs = 1.0f / std::sqrt(static_cast<float>(v / cols) + eps);
          mean[r] = mu;
          rstd[r] = rs;
          for (int64_t c = 0; c < cols; ++c)
            Elem<T>::store(Y, o + c, centred(Elem<T>::load(X, o + c), x0, mu) * rs * Elem<P>::load(W, c) + Elem<P>::load(B, c));
        }
      });
    });
  });
}

void layer_norm_backward(GpuStream, void* dx, void* dw, void* db, const void* dy, const void* x, const void* w,
                         const float* mean, const float* rstd, int64_t rows, int64_t cols, DType dt, DType pdt,
                         float* scratch) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) with_param_type<T>(pdt, [&](auto* ptag) {
      using P = std::remove_pointer_t<decltype(ptag)>;
      const T* X = static_cast<const T*>(x);
      const P* W = static_cast<const P*>(w);
      const T* DY = static_cast<const T*>(dy);
      T* DX = static_cast<T*>(dx);
      if constexpr (std::is_same<T, float>::value && std::is_same<P, float>::value) {
        parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t o = r * cols;
            double sum_g, sum_gx;
            backward_sums(DY + o, X + o, W, cols, X[o], mean[r], rstd[r], &sum_g, &sum_gx);
            input_grad_row(DX + o, DY + o, X + o, W, cols, X[o], mean[r], rstd[r], static_cast<float>(sum_g / cols), static_cast<float>(sum_gx / cols));
          }
        });
      } else
      parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t o = r * cols;
          const float x0 = Elem<T>::load(X, o);
          double sum_g = 0, sum_gx = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const float g = Elem<T>::load(DY, o + c) * Elem<P>::load(W, c);
            const float xh = centred(Elem<T>::load(X, o + c), x0, mean[r]) * rstd[r];
            sum_g += g;
            sum_gx += g * xh;
          }
          const float mg = static_cast<float>(sum_g / cols), mgx = static_cast<float>(sum_gx / cols);
          for (int64_t c = 0; c < cols; ++c) {
            const float g = Elem<T>::load(DY, o + c) * Elem<P>::load(W, c);
            const float xh = centred(Elem<T>::load(X, o + c), x0, mean[r]) * rstd[r];
            Elem<T>::store(DX, o + c, rstd[r] * (g - mg - xh * mgx));
          }
        }
      });
      // Column sums in fixed row chunks, then the chunks in order.
      float* pw = scratch;
      float* pb = scratch + kColumnSumChunks * cols;
      const int64_t per = (rows + kColumnSumChunks - 1) / kColumnSumChunks;
      parallel_for(kColumnSumChunks, 1, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          for (int64_t c = 0; c < cols; ++c) pw[k * cols + c] = pb[k * cols + c] = 0.f;
          const int64_t end = (k + 1) * per < rows ? (k + 1) * per : rows;
          for (int64_t r = k * per; r < end; ++r)
            for (int64_t c = 0; c < cols; ++c) {
              const float g = Elem<T>::load(DY, r * cols + c);
              pw[k * cols + c] += g * centred(Elem<T>::load(X, r * cols + c), Elem<T>::load(X, r * cols), mean[r]) * rstd[r];
              pb[k * cols + c] += g;
            }
        }
      });
      parallel_for(cols, 256, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          float sw = 0, sb = 0;
          for (int64_t k = 0; k < kColumnSumChunks; ++k) {
            sw += pw[k * cols + c];
            sb += pb[k * cols + c];
          }
          Elem<P>::store(static_cast<P*>(dw), c, sw);
          Elem<P>::store(static_cast<P*>(db), c, sb);
        }
      });
    });
  });
}

}  // namespace cpu
}  // namespace norm
}  // namespace amr
