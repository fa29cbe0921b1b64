#include <type_traits>

#include "../runtime/thread_pool.h"
#include "random.h"

namespace amr {
namespace random {
namespace cpu {

void fill(GpuStream, void* out, DType dt, int64_t n, Distribution dist, uint64_t seed) {
  if (dt == DType::I32) throw Error("random fill: i32 tensors are not supported");
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) {
      T* o = static_cast<T*>(out);
      parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) Elem<T>::store(o, i, sample(dist, seed, static_cast<uint64_t>(i)));
      });
    }
  });
}

}  // namespace cpu
}  // namespace random
}  // namespace amr
