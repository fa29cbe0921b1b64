#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "elementwise.h"

namespace amr {
namespace elementwise {
namespace AMR_GPU_NS {

namespace {

constexpr int kThreads = 256;

dim3 grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

template <typename T>
using Value = decltype(Elem<T>::load(static_cast<T*>(nullptr), 0));

template <typename T>
__global__ void fill_kernel(T* out, Value<T> v, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, v);
}

template <typename T>
__global__ void binary_kernel(BinaryOp op, T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, apply_binary(op, Elem<T>::load(a, i), Elem<T>::load(b, i)));
}

template <typename T>
__global__ void scale_kernel(T* out, const T* a, Value<T> s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, Elem<T>::load(a, i) * s);
}

template <typename T>
__global__ void broadcast_scalar_kernel(T* out, const T* scalar, Value<T> alpha, int64_t n) {
  const Value<T> v = Elem<T>::load(scalar, 0) * alpha;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, v);
}

template <typename O, typename I>
__global__ void cast_kernel(O* out, const I* a, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<O>::store(out, i, static_cast<Value<O>>(Elem<I>::load(a, i)));
}

}  // namespace

void fill(GpuStream s, void* out, DType dt, int64_t n, double value) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("fill", fill_kernel<T>, grid_for(n), dim3(kThreads), 0, s, static_cast<T*>(out),
           static_cast<Value<T>>(value), n);
  });
}

void binary(GpuStream s, BinaryOp op, void* out, const void* a, const void* b, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("binary", binary_kernel<T>, grid_for(n), dim3(kThreads), 0, s, op, static_cast<T*>(out),
           static_cast<const T*>(a), static_cast<const T*>(b), n);
  });
}

void scale(GpuStream s, void* out, const void* a, double alpha, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("scale", scale_kernel<T>, grid_for(n), dim3(kThreads), 0, s, static_cast<T*>(out),
           static_cast<const T*>(a), static_cast<Value<T>>(alpha), n);
  });
}

void broadcast_scalar(GpuStream s, void* out, const void* scalar, double alpha, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("broadcast_scalar", broadcast_scalar_kernel<T>, grid_for(n), dim3(kThreads), 0, s, static_cast<T*>(out),
           static_cast<const T*>(scalar), static_cast<Value<T>>(alpha), n);
  });
}

void cast(GpuStream s, void* out, DType out_dt, const void* a, DType a_dt, int64_t n) {
  with_dtype(out_dt, [&](auto* otag) {
    using O = std::remove_pointer_t<decltype(otag)>;
    with_dtype(a_dt, [&](auto* itag) {
      using I = std::remove_pointer_t<decltype(itag)>;
      launch("cast", cast_kernel<O, I>, grid_for(n), dim3(kThreads), 0, s, static_cast<O*>(out),
             static_cast<const I*>(a), n);
    });
  });
}

}  // namespace AMR_GPU_NS
}  // namespace elementwise
}  // namespace amr
