// Elementwise ops over contiguous tensors of n elements: fill, add/sub/mul, scale, scalar broadcast, cast.
// bf16 is loaded to f32, computed, and rounded once on store; i32 stays integer.
#pragma once
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace elementwise {

enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2 };

#define AMR_ELEMENTWISE_FUNCS                                                                    \
  void fill(GpuStream s, void* out, DType dt, int64_t n, double value);                         \
  void binary(GpuStream s, BinaryOp op, void* out, const void* a, const void* b, DType dt, int64_t n); \
  void scale(GpuStream s, void* out, const void* a, double alpha, DType dt, int64_t n);          \
  /* out[i] = alpha * scalar[0], the backward of a full reduction */                           \
  void broadcast_scalar(GpuStream s, void* out, const void* scalar, double alpha, DType dt, int64_t n); \
  void cast(GpuStream s, void* out, DType out_dt, const void* a, DType a_dt, int64_t n);

namespace cpu { AMR_ELEMENTWISE_FUNCS }
namespace cuda { AMR_ELEMENTWISE_FUNCS }
namespace sim { AMR_ELEMENTWISE_FUNCS }

// The scalar rule every backend applies, so results agree to the bit.
template <typename V>
AMR_HD V apply_binary(BinaryOp op, V a, V b) {
  return op == BinaryOp::Add ? a + b : op == BinaryOp::Sub ? a - b : a * b;
}

}  // namespace elementwise
}  // namespace amr
