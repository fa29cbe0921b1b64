// The one place that starts CUDA kernels. How a grid runs is the build's implementation of the device API
// (amr_device_launch.h, chosen like kernel.cuh's): under nvcc a real <<<>>> launch on the op's stream, under sim the
// grid run on the CPU emulator. Errors name the kernel.
#pragma once
#include <stdexcept>
#include <string>

#include "kernel.cuh"
#include "launch_types.h"
// Provides amr::AMR_GPU_NS::device::start_grid(name, kernel, grid, block, dynamic_smem, stream, params...): runs
// or queues the grid and returns nullptr, or returns why it could not start it.
#include <amr_device_launch.h>

namespace amr {

// The sim and cuda builds of this template have different bodies but would get the same mangled name; a
// per-backend inline namespace keeps the linker from folding one into the other.
#define AMR_LAUNCH_NS_(ns) launch_##ns
#define AMR_LAUNCH_NS(ns) AMR_LAUNCH_NS_(ns)
inline namespace AMR_LAUNCH_NS(AMR_GPU_NS) {

struct KernelError : std::runtime_error {
  KernelError(const char* kernel, const std::string& what)
      : std::runtime_error(std::string("kernel ") + kernel + ": " + what) {}
};

template <typename... Params, typename... Args>
inline void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem,
                   GpuStream stream, Args... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch: argument count does not match the kernel");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const char* error = ::amr::AMR_GPU_NS::device::start_grid<Params...>(name, kernel, grid, block, dynamic_smem, stream,
                                                                      static_cast<Params>(args)...);
  if (error) throw KernelError(name, error);
}

}  // inline namespace
}  // namespace amr
