#include <cmath>

#include "../runtime/thread_pool.h"
#include "elementwise.h"

namespace amr {
namespace elementwise {
namespace cpu {

namespace {
constexpr int64_t kGrain = 1 << 15;
}

void fill(GpuStream, void* out, DType dt, int64_t n, double value) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) Elem<T>::store(o, i, static_cast<decltype(Elem<T>::load(o, 0))>(value));
    });
  });
}

void binary(GpuStream, BinaryOp op, void* out, const void* a, const void* b, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(a);
    const T* y = static_cast<const T*>(b);
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) Elem<T>::store(o, i, apply_binary(op, Elem<T>::load(x, i), Elem<T>::load(y, i)));
    });
  });
}

void scale(GpuStream, void* out, const void* a, double alpha, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using V = decltype(Elem<T>::load(static_cast<T*>(nullptr), 0));
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(a);
    const V s = static_cast<V>(alpha);
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) Elem<T>::store(o, i, Elem<T>::load(x, i) * s);
    });
  });
}

void broadcast_scalar(GpuStream, void* out, const void* scalar, double alpha, DType dt, int64_t n) {
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using V = decltype(Elem<T>::load(static_cast<T*>(nullptr), 0));
    T* o = static_cast<T*>(out);
    const V v = Elem<T>::load(static_cast<const T*>(scalar), 0) * static_cast<V>(alpha);
    parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) Elem<T>::store(o, i, v);
    });
  });
}

void cast(GpuStream, void* out, DType out_dt, const void* a, DType a_dt, int64_t n) {
  with_dtype(out_dt, [&](auto* otag) {
    using O = std::remove_pointer_t<decltype(otag)>;
    using OV = decltype(Elem<O>::load(static_cast<O*>(nullptr), 0));
    with_dtype(a_dt, [&](auto* itag) {
      using I = std::remove_pointer_t<decltype(itag)>;
      O* o = static_cast<O*>(out);
      const I* x = static_cast<const I*>(a);
      parallel_for(n, kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) Elem<O>::store(o, i, static_cast<OV>(Elem<I>::load(x, i)));
      });
    });
  });
}

}  // namespace cpu
}  // namespace elementwise
}  // namespace amr
