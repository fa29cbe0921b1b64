#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {
namespace cpu {

void sum(GpuStream, void* out, const void* a, DType dt, int64_t n, double alpha, void*) {
  if (dt == DType::I32) throw Error("sum: i32 tensors are not supported");
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

}  // namespace cpu
}  // namespace reduce
}  // namespace amr
