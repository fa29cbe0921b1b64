#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "activation.h"

namespace amr {
namespace activation {
namespace AMR_GPU_NS {

namespace {

template <typename T>
__global__ void forward_kernel(Kind k, T* y, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(y, i, apply(k, Elem<T>::load(x, i)));
}

template <typename T>
__global__ void backward_kernel(Kind k, T* dx, const T* dy, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(dx, i, grad(k, Elem<T>::load(dy, i), Elem<T>::load(x, i)));
}

dim3 grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

}  // namespace

void forward(GpuStream s, Kind k, void* y, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("activation_forward", forward_kernel<T>, grid_for(n), dim3(256), 0, s, k, static_cast<T*>(y),
           static_cast<const T*>(x), n);
  });
}

void backward(GpuStream s, Kind k, void* dx, const void* dy, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("activation_backward", backward_kernel<T>, grid_for(n), dim3(256), 0, s, k, static_cast<T*>(dx),
           static_cast<const T*>(dy), static_cast<const T*>(x), n);
  });
}

}  // namespace AMR_GPU_NS
}  // namespace activation
}  // namespace amr
