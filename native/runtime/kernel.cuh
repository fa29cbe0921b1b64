// Included first by every native/<family>/cuda.cu: the CUDA-facing API that kernels are written against. The same
// source is compiled twice, and the build decides which implementation of this API each compile sees, by the
// include directory it adds (CMakeLists.txt):
//  - nvcc, for the cuda backend: native/runtime/cuda/ (the real CUDA headers and builtins, AMR_GPU_NS = cuda);
//  - the host C++ compiler, for the sim backend: native/sim/device/ (the emulator's stand-ins, AMR_GPU_NS = sim,
//    AMR_SIM defined), which runs each CUDA thread as a fiber.
// Nothing in native/runtime names the emulator: sim depends on this API (it implements it), not the other way.
//
// What each implementation's amr_device_kernel.h provides, and so all that kernel code may use:
//  - the CUDA builtins listed in native/sim/sim_cuda.h and sim_types.h (qualifiers, thread coordinates, barriers,
//    warp shuffles and votes, atomics, __nv_bfloat16 / __half and their conversions, math intrinsics);
//  - AMR_GPU_NS, the namespace of this build (cuda or sim), so that one process links both builds of a family;
//  - AMR_SHARED(T, name, dims) and AMR_DYNAMIC_SMEM(T, name) for static and dynamic shared memory (never plain
//    __shared__: sim could not poison it).
// Beyond that: native/runtime/tensor_core.cuh for mma/ldmatrix/cp.async, and amr::launch (launch.cuh) as the only
// way to start a kernel.
#pragma once

#include <amr_device_kernel.h>

#if !defined(AMR_GPU_NS) || !defined(AMR_SHARED) || !defined(AMR_DYNAMIC_SMEM)
#error "amr_device_kernel.h must define AMR_GPU_NS, AMR_SHARED and AMR_DYNAMIC_SMEM (see native/runtime/kernel.cuh)"
#endif
