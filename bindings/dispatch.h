// Picks an op family's implementation for the backend it runs on. The cuda and sim versions are the same
// source (native/<family>/cuda.cu) compiled by nvcc and by the host compiler.
#pragma once
#include "../native/runtime/backend.h"

#ifdef AMR_WITH_CUDA
#define AMR_IF_CUDA(call) call
#else
#define AMR_IF_CUDA(call) throw ::amr::Error("the addon was built without CUDA")
#endif
#ifdef AMR_WITH_SIM
#define AMR_IF_SIM(call) call
#else
#define AMR_IF_SIM(call) throw ::amr::Error("the addon was built without the sim backend")
#endif

// AMR_DISPATCH(backend, family, fn, args...) calls family::{cpu,cuda,sim}::fn(stream, args...).
#define AMR_DISPATCH(be, family, fn, ...)                                       \
  do {                                                                          \
    ::amr::GpuStream amr_stream_ = (be).gpu_stream();                           \
    switch ((be).kind()) {                                                      \
      case ::amr::BackendKind::Cpu:                                             \
        ::amr::family::cpu::fn(amr_stream_, __VA_ARGS__);                       \
        break;                                                                  \
      case ::amr::BackendKind::Sim:                                             \
        AMR_IF_SIM(::amr::family::sim::fn(amr_stream_, __VA_ARGS__));           \
        break;                                                                  \
      case ::amr::BackendKind::Cuda:                                            \
        AMR_IF_CUDA(::amr::family::cuda::fn(amr_stream_, __VA_ARGS__));         \
        break;                                                                  \
    }                                                                           \
  } while (0)
