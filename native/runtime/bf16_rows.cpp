#include "bf16_rows.h"

#include "common.h"
#include "vector_clones.h"

namespace amr {

namespace {

// The clones stay in this file: target_clones on a function with external linkage exports its ifunc and resolver
// from the addon whatever the visibility, and the addon exports only its Node-API entry points.
AMR_VECTOR_CLONES void to_f32(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = bf16_to_f32(src[j]);
}

AMR_VECTOR_CLONES void to_bf16(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = f32_to_bf16(src[j]);
}

}  // namespace

void bf16_row_to_f32(float* dst, const uint16_t* src, int64_t n) { to_f32(dst, src, n); }

void f32_row_to_bf16(uint16_t* dst, const float* src, int64_t n) { to_bf16(dst, src, n); }

}  // namespace amr
