// The serial f32 product of cpu_kernel.h. Rows of C are updated along n with independent accumulators, so the
// compiler vectorizes the inner loop without reassociating any sum (the build keeps IEEE order).
#include "cpu_kernel.h"

#include <algorithm>
#include <vector>

#include "../runtime/vector_clones.h"

namespace amr {
namespace gemm {
namespace cpu {

namespace {

AMR_VECTOR_CLONES
void rows_update(float* c, int64_t ldc, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_row,
                 int64_t b_col, int64_t m, int64_t n, int64_t k, float alpha, std::vector<float>& brow) {
  brow.resize(static_cast<size_t>(n));
  for (int64_t p = 0; p < k; ++p) {
    // Row p of op(B), contiguous.
    const float* bp;
    if (b_col == 1) bp = b + p * b_row;
    else {
      for (int64_t j = 0; j < n; ++j) brow[j] = b[p * b_row + j * b_col];
      bp = brow.data();
    }
    for (int64_t i = 0; i < m; ++i) {
      const float aip = alpha * a[i * a_row + p * a_col];
      float* ci = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] += aip * bp[j];
    }
  }
}

}  // namespace

void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.f) std::fill(ci, ci + n, 0.f);
    else if (beta != 1.f)
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
  }
  if (k <= 0 || alpha == 0.f) return;
  std::vector<float> brow;
  // op(A)[i][p] = a[i·a_row + p·a_col]; op(B)[p][j] = b[p·b_row + j·b_col].
  rows_update(c, ldc, a, trans_a ? 1 : lda, trans_a ? lda : 1, b, trans_b ? 1 : ldb, trans_b ? ldb : 1, m, n, k,
              alpha, brow);
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
