// The one place that starts CUDA kernels. Under nvcc it is a real <<<>>> launch on the op's stream;
// under sim it runs the grid on the CPU emulator (native/sim). Errors name the kernel.
#pragma once
#include <stdexcept>
#include <string>

#include "kernel.cuh"
#include "launch_types.h"

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
#ifdef AMR_SIM
  (void)stream;
  ::amr::sim::run_grid(name, grid, block, dynamic_smem, [&]() { kernel(static_cast<Params>(args)...); });
#else
  if (dynamic_smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dynamic_smem);
    if (e != cudaSuccess) throw KernelError(name, cudaGetErrorString(e));
  }
  kernel<<<grid, block, dynamic_smem, static_cast<cudaStream_t>(stream.handle)>>>(static_cast<Params>(args)...);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw KernelError(name, cudaGetErrorString(e));
#endif
}

}  // inline namespace
}  // namespace amr
