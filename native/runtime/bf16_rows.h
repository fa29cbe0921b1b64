// Contiguous rows converted between bf16 (raw bits, common.h's rounding) and f32 in the vector clones: the cpu
// kernels that compute bf16 in f32 (LayerNorm, attention's gathered operands) convert a row at a time through
// these instead of element-wise Elem<uint16_t> loads and stores, which stayed scalar.
#pragma once
#include <cstdint>

namespace amr {

// dst[j] = bf16_to_f32(src[j]).
void bf16_row_to_f32(float* dst, const uint16_t* src, int64_t n);
// dst[j] = f32_to_bf16(src[j]) (nearest even, NaN kept quiet).
void f32_row_to_bf16(uint16_t* dst, const float* src, int64_t n);

}  // namespace amr
