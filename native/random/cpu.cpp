#include <type_traits>

#include "../runtime/thread_pool.h"
#include "random.h"

namespace amr {
namespace random {
namespace cpu {

void fill(GpuStream, void* out, DType dt, int64_t n, Distribution dist, uint64_t seed) {
  if (const char* why = unsupported(dt)) throw Error(std::string("random fill: ") + why);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) {
      T* o = static_cast<T*>(out);
      const int64_t groups = (n + 3) / 4;
      parallel_for(groups, 1 << 12, [&](int64_t b, int64_t e) {
        float v[4];
        for (int64_t g = b; g < e; ++g) {
          sample4(dist, seed, static_cast<uint64_t>(g), v);
          for (int64_t k = 0; k < 4 && 4 * g + k < n; ++k) Elem<T>::store(o, 4 * g + k, v[k]);
        }
      });
    }
  });
}

}  // namespace cpu
}  // namespace random
}  // namespace amr
