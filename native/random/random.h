// Random fills (normal, uniform) that give the same bits on every backend for the same seed.
#pragma once
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"
#include "philox.h"

namespace amr {
namespace random {

// Why a fill of dtype dt cannot run, or nullptr: the one list of its limits, asked by the binding and by every
// backend's fill (a native caller may skip the binding). Samples are floats.
inline const char* unsupported(DType dt) { return dt == DType::I32 ? "i32 tensors are not supported" : nullptr; }

#define AMR_RANDOM_FUNCS \
  void fill(GpuStream s, void* out, DType dt, int64_t n, Distribution dist, uint64_t seed);

namespace cpu { AMR_RANDOM_FUNCS }
namespace cuda { AMR_RANDOM_FUNCS }
namespace sim { AMR_RANDOM_FUNCS }

}  // namespace random
}  // namespace amr
