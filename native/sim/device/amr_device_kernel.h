// The sim build's implementation of native/runtime/kernel.cuh: the emulator's stand-ins for the CUDA builtins
// (native/sim/sim_cuda.h). Found through the include directory CMakeLists.txt gives the sim compiles only.
#pragma once

// Kernels and the emulator's own sources test AMR_SIM where the two builds need different code (e.g. no unroll
// pragmas under sim); defined here, with the choice of implementation, so that it cannot disagree with it.
#ifndef AMR_SIM
#define AMR_SIM 1
#endif

#include "../sim_cuda.h"

#define AMR_GPU_NS sim
