#pragma once
#include <string>

#include "gemm.h"

namespace amr {
namespace gemm {
namespace cpu {

// cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) with CBLAS's enum values.
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

// The sgemm to use now, or nullptr for the built-in kernel.
SgemmFn host_sgemm();

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
