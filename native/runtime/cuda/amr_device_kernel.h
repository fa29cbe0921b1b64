// The cuda build's implementation of native/runtime/kernel.cuh: nvcc's own headers and builtins. Found through
// the include directory CMakeLists.txt gives nvcc's compiles only.
#pragma once

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
