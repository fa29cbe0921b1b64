// The cpu backend's activations over contiguous f32 rows, as loops that vectorize (runtime/vector_math.h) instead of
// a libm call per element: the erfc of every ViT MLP's GELU alone used to cost as much as the GEMM before it. The
// GEMM and conv epilogues and the standalone op all run through these, so on cpu a fused linear or conv +
// activation and a standalone activation give the same bits. (cuda and sim keep the scalar rules of activation.h.)
#pragma once
#include <cstdint>

#include "activation.h"

namespace amr {
namespace activation {
namespace cpu {

// v[j] = f(v[j]) in place.
void apply_row(Kind k, float* v, int64_t n);
// dx[j] = dy[j] · f'(x[j]); dx may be dy.
void grad_row(Kind k, float* dx, const float* dy, const float* x, int64_t n);

}  // namespace cpu
}  // namespace activation
}  // namespace amr
