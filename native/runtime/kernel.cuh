// Included first by every native/<family>/cuda.cu. The same source is compiled twice:
//  - by nvcc for the cuda backend (AMR_GPU_NS = cuda), with the real CUDA builtins;
//  - by the host C++ compiler for the sim backend (AMR_SIM defined, AMR_GPU_NS = sim), where
//    native/sim/sim_cuda.h provides the builtins and runs each CUDA thread as a fiber.
// Kernel code therefore uses only what both provide: the CUDA builtins listed in sim_cuda.h,
// AMR_SHARED / AMR_DYNAMIC_SMEM for shared memory (never plain __shared__: sim could not poison it), native/runtime/tensor_core.cuh for mma/ldmatrix/cp.async,
// and amr::launch (launch.cuh) as the only way to start a kernel.
#pragma once

#ifdef AMR_SIM
#include "../sim/sim_cuda.h"
#define AMR_GPU_NS sim
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define AMR_GPU_NS cuda
// On hardware dynamic shared memory is a plain pointer; under sim it is a bounds-checked pointer.
#define AMR_DYNAMIC_SMEM(T, name)                                   \
  extern __shared__ __align__(16) unsigned char amr_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(amr_dynamic_smem_)
// Static shared memory. Under sim it starts poisoned (NaN) in every block, so a read before the write shows.
#define AMR_SHARED(T, name, dims) __shared__ T name dims
#endif
