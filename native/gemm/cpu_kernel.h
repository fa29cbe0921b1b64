// Single-threaded f32 products on the calling thread, for cpu kernels that already give each pool thread its own
// problems (attention's tiles, one (batch, head, window) each). It never calls the host BLAS: OpenBLAS would start
// its own threads under ours, and its answer would depend on what the user happened to install.
#pragma once
#include <cstdint>

namespace amr {
namespace gemm {
namespace cpu {

// C = alpha·op(A)·op(B) + beta·C, row-major with leading dimensions: op(A) is [m, k] (A is [k, m] when trans_a),
// op(B) is [k, n] (B is [n, k] when trans_b), C is [m, n]. beta == 0 overwrites C without reading it, so a poisoned
// (NaN) C gives no NaN.
void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
