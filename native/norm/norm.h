// LayerNorm over the last dimension (rows × cols), and the exact-erf GELU.
// Statistics are f32 whatever the storage; the variance is computed around the row mean (two passes over a row
// held in registers/cache), so large-mean inputs keep their precision.
#pragma once
#include <cmath>
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace norm {

// Rows are split into this many fixed chunks for the weight/bias gradient sums, so the summation order (and the
// bits) never depend on the device or thread count.
constexpr int64_t kColumnSumChunks = 64;
int64_t column_sum_scratch_bytes(int64_t cols);

#define AMR_NORM_FUNCS                                                                                          \
  /* y = (x - mean) * rstd * w + b; mean and rstd (f32, one per row) are kept for backward */                  \
  void layer_norm_forward(GpuStream s, void* y, float* mean, float* rstd, const void* x, const void* w,         \
                          const void* b, int64_t rows, int64_t cols, float eps, DType dt);                      \
  /* dx (per row) and dw, db (column sums over rows); scratch: column_sum_scratch_bytes(cols) */                 \
  void layer_norm_backward(GpuStream s, void* dx, void* dw, void* db, const void* dy, const void* x,             \
                           const void* w, const float* mean, const float* rstd, int64_t rows, int64_t cols,      \
                           DType dt, float* scratch);                                                           \
  void gelu_forward(GpuStream s, void* y, const void* x, int64_t n, DType dt);                                   \
  /* dx = dy * gelu'(x) */                                                                                      \
  void gelu_backward(GpuStream s, void* dx, const void* dy, const void* x, int64_t n, DType dt);                 \
  /* dx = dy where x > 0, else 0 */                                                                             \
  void relu_backward(GpuStream s, void* dx, const void* dy, const void* x, int64_t n, DType dt);

namespace cpu { AMR_NORM_FUNCS }
namespace cuda { AMR_NORM_FUNCS }
namespace sim { AMR_NORM_FUNCS }

// Φ(x) as erfc(-x/√2)/2: unlike 1 + erf(x/√2), it keeps its relative precision in the negative tail.
AMR_HD float gelu_value(float x) { return 0.5f * x * erfcf(-x * 0.70710678118654752f); }
AMR_HD float gelu_derivative(float x) {
  const float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

}  // namespace norm
}  // namespace amr
