#include "bf16_rows.h"

#include "common.h"
#include "vector_clones.h"

namespace amr {

AMR_VECTOR_CLONES void bf16_row_to_f32(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = bf16_to_f32(src[j]);
}

AMR_VECTOR_CLONES void f32_row_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = f32_to_bf16(src[j]);
}

}  // namespace amr
