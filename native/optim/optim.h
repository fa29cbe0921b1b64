// AdamW (decoupled weight decay, bias correction) over many tensors in one pass. bf16 parameters keep an f32
// master copy: the update is applied to the master and rounded once into the bf16 parameter.
#pragma once
#include <cmath>
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace optim {

// One tensor's slice of the step. Plain data: it is copied to the device as a table.
struct AdamTensor {
  void* param;         // f32 or bf16
  const void* grad;    // same dtype as param
  float* m;            // f32 first moment
  float* v;            // f32 second moment
  float* master;       // f32 master weights (bf16 params), else nullptr
  int64_t n;
  int64_t offset;      // first element of this tensor in the flattened step (prefix sum of n)
  int32_t is_bf16;
  int32_t pad;
};

struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^t
};

AMR_HD float adamw_update(float p, float g, float* m, float* v, const AdamHyper& h) {
  p -= h.lr * h.weight_decay * p;
  const float m1 = h.beta1 * *m + (1.f - h.beta1) * g;
  const float v1 = h.beta2 * *v + (1.f - h.beta2) * g * g;
  *m = m1;
  *v = v1;
  const float denom = sqrtf(v1 / h.bias_correction2) + h.eps;
  return p - h.lr * (m1 / h.bias_correction1) / denom;
}

#define AMR_OPTIM_FUNCS \
  void adamw_step(GpuStream s, const AdamTensor* table, int64_t tensors, int64_t total, const AdamHyper& h);

namespace cpu { AMR_OPTIM_FUNCS }
namespace cuda { AMR_OPTIM_FUNCS }
namespace sim { AMR_OPTIM_FUNCS }

}  // namespace optim
}  // namespace amr
