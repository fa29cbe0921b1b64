#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "random.h"

namespace amr {
namespace random {
namespace AMR_GPU_NS {

namespace {

// One thread per group of four elements: one Philox call serves all four.
template <typename T>
__global__ void fill_kernel(T* out, int64_t n, Distribution dist, uint64_t seed) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < groups; g += (int64_t)gridDim.x * blockDim.x) {
    float v[4];
    sample4(dist, seed, static_cast<uint64_t>(g), v);
    for (int64_t k = 0; k < 4 && 4 * g + k < n; ++k) Elem<T>::store(out, 4 * g + k, v[k]);
  }
}

}  // namespace

void fill(GpuStream s, void* out, DType dt, int64_t n, Distribution dist, uint64_t seed) {
  if (const char* why = unsupported(dt)) throw Error(std::string("random fill: ") + why);
  const int64_t blocks = ((n + 3) / 4 + 255) / 256;
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) {
      launch("random_fill", fill_kernel<T>, dim3((unsigned)(blocks < 65535 * 8 ? blocks : 65535 * 8)), dim3(256), 0, s,
             static_cast<T*>(out), n, dist, seed);
    }
  });
}

}  // namespace AMR_GPU_NS
}  // namespace random
}  // namespace amr
