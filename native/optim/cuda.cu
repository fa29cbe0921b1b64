#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "optim.h"

namespace amr {
namespace optim {
namespace AMR_GPU_NS {

namespace {

// One launch for every tensor: element i of the flattened step finds its tensor by binary search over the
// table's offsets (a model has a few hundred tensors, so that is a handful of cached loads).
__global__ void adamw_kernel(const AdamTensor* table, int64_t tensors, int64_t total, AdamHyper h) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t lo = 0, hi = tensors - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (table[mid].offset <= i) lo = mid;
      else hi = mid - 1;
    }
    const AdamTensor& d = table[lo];
    const int64_t j = i - d.offset;
    if (d.is_bf16) {
      const float g = bf16_to_f32(static_cast<const uint16_t*>(d.grad)[j]);
      const float p = adamw_update(d.master[j], g, d.m + j, d.v + j, h);
      d.master[j] = p;
      static_cast<uint16_t*>(d.param)[j] = f32_to_bf16(p);
    } else {
      float* p = static_cast<float*>(d.param);
      p[j] = adamw_update(p[j], static_cast<const float*>(d.grad)[j], d.m + j, d.v + j, h);
    }
  }
}

}  // namespace

void adamw_step(GpuStream s, const AdamTensor* table, int64_t tensors, int64_t total, const AdamHyper& h) {
  const int64_t blocks = (total + 255) / 256;
  launch("adamw", adamw_kernel, dim3((unsigned)(blocks < 65535 * 8 ? blocks : 65535 * 8)), dim3(256), 0, s, table,
         tensors, total, h);
}

}  // namespace AMR_GPU_NS
}  // namespace optim
}  // namespace amr
