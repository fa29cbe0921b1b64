#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {
namespace cpu {

void sum(GpuStream, void* out, const void* a, DType dt, int64_t n, double alpha, void*) {
  if (const char* why = unsupported(dt)) throw Error(std::string("sum: ") + why);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* x = static_cast<const T*>(a);
    // Double partials over fixed chunks, added in chunk order: as accurate as the float64 reference allows,
    // and independent of the thread count.
    const int64_t chunk = 1 << 16;
    const int64_t chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(static_cast<size_t>(chunks > 0 ? chunks : 1), 0.0);
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        double acc = 0;
        const int64_t hi = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < hi; ++i) acc += Elem<T>::load(x, i);
        partial[c] = acc;
      }
    });
    double total = 0;
    for (double p : partial) total += p;
    Elem<T>::store(static_cast<T*>(out), 0, static_cast<float>(total * alpha));
  });
}

void sum_rows(GpuStream, void* out, const void* a, DType dt, int64_t rows, int64_t cols, void* scratch) {
  with_float_dtype(dt, "sum over rows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* x = static_cast<const T*>(a);
    float* partial = static_cast<float*>(scratch);
    const int64_t per = (rows + kRowChunks - 1) / kRowChunks;
    parallel_for(kRowChunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        float* p = partial + k * cols;
        for (int64_t c = 0; c < cols; ++c) p[c] = 0.f;
        const int64_t end = (k + 1) * per < rows ? (k + 1) * per : rows;
        for (int64_t r = k * per; r < end; ++r)
          for (int64_t c = 0; c < cols; ++c) p[c] += Elem<T>::load(x, r * cols + c);
      }
    });
    parallel_for(cols, 256, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float s = 0.f;
        for (int64_t k = 0; k < kRowChunks; ++k) s += partial[k * cols + c];
        Elem<T>::store(static_cast<T*>(out), c, s);
      }
    });
  });
}

}  // namespace cpu
}  // namespace reduce
}  // namespace amr
