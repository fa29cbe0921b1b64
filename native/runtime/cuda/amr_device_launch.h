// The cuda build's grid start for native/runtime/launch.cuh: a <<<>>> launch on the op's stream.
#pragma once
#include <cstddef>

#include "../launch_types.h"

namespace amr {
namespace cuda {
namespace device {

// nullptr once the launch is queued, else the CUDA runtime's reason.
template <typename... Params>
inline const char* start_grid(const char*, void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem,
                              GpuStream stream, Params... params) {
  if (dynamic_smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dynamic_smem);
    if (e != cudaSuccess) return cudaGetErrorString(e);
  }
  kernel<<<grid, block, dynamic_smem, static_cast<cudaStream_t>(stream.handle)>>>(params...);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace device
}  // namespace cuda
}  // namespace amr
