// LayerNorm over the last dimension (rows × cols).
// Statistics are f32 whatever the storage. Each row is shifted by its first element before anything is summed:
// x − x₀ is exact for the values near x₀ (Sterbenz), so the kept mean is small and precise even where the row mean
// is large (an f32 mean of 1e4 alone is off by up to 5e-4), and the variance is taken around it (two passes).
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

// x minus its row mean, from the row's first element x0 and the mean of (x − x0) the forward keeps.
AMR_HD float centred(float x, float x0, float shifted_mean) { return (x - x0) - shifted_mean; }

// The affine parameters w, b (and their gradients dw, db) are stored either like x (dt) or in f32 (pdt), as mixed
// precision keeps them: bf16 holds a weight 1 + δ only to 2⁻⁸, which for the small δ of a trained norm is most of
// δ, and that rounding alone moved RADIO's deepest bf16 gradients by ~7e-3 (PyTorch's autocast keeps norms in f32
// for the same reason). Calls f with a null pointer of the parameters' element type.
template <typename T, typename F>
void with_param_type(DType pdt, F&& f) {
  if (pdt == DType::F32) f(static_cast<float*>(nullptr));
  else f(static_cast<T*>(nullptr));
}

// Why parameters stored as pdt cannot go with storage dt, or nullptr: like x, or f32 (the rule above; batchnorm's
// parameters and running statistics follow it too).
inline const char* param_dtype_unsupported(DType dt, DType pdt) {
  return pdt == dt || pdt == DType::F32 ? nullptr : "must be the input's dtype or f32";
}

// A LayerNorm call's sizes and storage: what the TypeScript op plans (LayerNormGeometry in ts/native.ts) and the
// binding reads. x, y, dx, dy are [rows, cols] in dtype; w, b and their gradients [cols] in param_dtype.
struct Geometry {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::F32, param_dtype = DType::F32;
};

// Why a LayerNorm cannot run, or nullptr: the one list of its limits, asked by the binding.
inline const char* unsupported(const Geometry& g) {
  if (double(g.rows) * double(g.cols) > 9.0e15) return "tensor too large";
  return param_dtype_unsupported(g.dtype, g.param_dtype) ? "weight and bias must be the input's dtype or f32" : nullptr;
}

#define AMR_NORM_FUNCS                                                                                          \
  /* y = centred(x) * rstd * w + b; mean (of x - x0, see centred) and rstd, f32 per row, kept for backward */  \
  void layer_norm_forward(GpuStream s, void* y, float* mean, float* rstd, const void* x, const void* w,         \
                          const void* b, int64_t rows, int64_t cols, float eps, DType dt, DType pdt);           \
  /* dx (per row) and dw, db (column sums over rows); scratch: column_sum_scratch_bytes(cols) */                 \
  void layer_norm_backward(GpuStream s, void* dx, void* dw, void* db, const void* dy, const void* x,             \
                           const void* w, const float* mean, const float* rstd, int64_t rows, int64_t cols,      \
                           DType dt, DType pdt, float* scratch);

namespace cpu { AMR_NORM_FUNCS }
namespace cuda { AMR_NORM_FUNCS }
namespace sim { AMR_NORM_FUNCS }

}  // namespace norm
}  // namespace amr
