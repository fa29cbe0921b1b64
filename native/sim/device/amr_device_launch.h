// The sim build's grid start for native/runtime/launch.cuh: the whole grid runs on the calling thread, in the
// emulator (sim_runtime.cpp), before this returns. The emulator reports a failing kernel by throwing
// amr::KernelError itself, so this never returns an error.
#pragma once
#include <cstddef>

#include "../../runtime/launch_types.h"

namespace amr {
namespace sim {
namespace device {

template <typename... Params>
inline const char* start_grid(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem,
                              GpuStream, Params... params) {
  ::amr::sim::run_grid(name, grid, block, dynamic_smem, [&]() { kernel(params...); });
  return nullptr;
}

}  // namespace device
}  // namespace sim
}  // namespace amr
