#include "../runtime/thread_pool.h"
#include "activation.h"

namespace amr {
namespace activation {
namespace cpu {

void forward(GpuStream, Kind k, void* y, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) Elem<T>::store(static_cast<T*>(y), i, apply(k, Elem<T>::load(static_cast<const T*>(x), i)));
    });
  });
}

void backward(GpuStream, Kind k, void* dx, const void* dy, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        Elem<T>::store(static_cast<T*>(dx), i,
                       grad(k, Elem<T>::load(static_cast<const T*>(dy), i), Elem<T>::load(static_cast<const T*>(x), i)));
    });
  });
}

}  // namespace cpu
}  // namespace activation
}  // namespace amr
