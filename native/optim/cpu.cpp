#include "../runtime/thread_pool.h"
#include "optim.h"

namespace amr {
namespace optim {
namespace cpu {

void adamw_step(GpuStream, const AdamTensor* table, int64_t tensors, int64_t, const AdamHyper& h) {
  for (int64_t t = 0; t < tensors; ++t) {
    const AdamTensor& d = table[t];
    parallel_for(d.n, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if (d.is_bf16) {
          const float g = bf16_to_f32(static_cast<const uint16_t*>(d.grad)[i]);
          d.master[i] = adamw_update(d.master[i], g, d.m + i, d.v + i, h);
          static_cast<uint16_t*>(d.param)[i] = f32_to_bf16(d.master[i]);
        } else {
          float* p = static_cast<float*>(d.param);
          p[i] = adamw_update(p[i], static_cast<const float*>(d.grad)[i], d.m + i, d.v + i, h);
        }
      }
    });
  }
}

}  // namespace cpu
}  // namespace optim
}  // namespace amr
