#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "optim.h"

namespace amr {
namespace optim {
namespace cpu {

namespace {
// The f32 update over a range as its own loop, so it vectorizes in the AVX-512 and AVX2 clones (the update reads
// and writes four arrays: at memory bandwidth that way, not at the SSE2 baseline's four lanes).
AMR_VECTOR_CLONES void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamHyper& h) {
  for (int64_t i = 0; i < n; ++i) p[i] = adamw_update(p[i], g[i], m + i, v + i, h);
}
}  // namespace

void adamw_step(GpuStream, const AdamTensor* table, int64_t tensors, int64_t, const AdamHyper& h) {
  for (int64_t t = 0; t < tensors; ++t) {
    const AdamTensor& d = table[t];
    parallel_for(d.n, 1 << 14, [&](int64_t b, int64_t e) {
      if (!d.is_bf16) {
        adamw_f32(static_cast<float*>(d.param) + b, static_cast<const float*>(d.grad) + b, d.m + b, d.v + b, e - b, h);
        return;
      }
      for (int64_t i = b; i < e; ++i) {
        const float g = bf16_to_f32(static_cast<const uint16_t*>(d.grad)[i]);
        d.master[i] = adamw_update(d.master[i], g, d.m + i, d.v + i, h);
        static_cast<uint16_t*>(d.param)[i] = f32_to_bf16(d.master[i]);
      }
    });
  }
}

void grad_norm(GpuStream, const NormTensor* table, int64_t tensors, int64_t total, float max_norm, float* partial,
               float* out) {
  const int64_t blocks = norm_blocks(total), per = (total + blocks - 1) / blocks;
  // The same chunks as the gpu kernel; each summed in double here (the cpu backend is the readable reference).
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * per, end = begin + per < total ? begin + per : total;
      double acc = 0;
      int64_t t = begin < end ? table_row(table, tensors, begin) : 0;
      for (int64_t i = begin; i < end; ++i) {
        while (i >= table[t].offset + table[t].n) ++t;  // skips empty tensors too
        const double g = norm_grad_at(table[t], i - table[t].offset);
        acc += g * g;
      }
      partial[b] = static_cast<float>(acc);
    }
  });
  double s = 0;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b];
  out[0] = static_cast<float>(s);
  out[1] = clip_coefficient(out[0], max_norm);
}

void grad_scale(GpuStream, const NormTensor* table, int64_t tensors, int64_t, const float* coef) {
  const float c = coef[0];
  if (c == 1.f) return;
  for (int64_t t = 0; t < tensors; ++t) {
    const NormTensor& d = table[t];
    parallel_for(d.n, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if (d.is_bf16) {
          uint16_t* g = static_cast<uint16_t*>(d.grad);
          g[i] = f32_to_bf16(bf16_to_f32(g[i]) * c);
        } else {
          static_cast<float*>(d.grad)[i] *= c;
        }
      }
    });
  }
}

}  // namespace cpu
}  // namespace optim
}  // namespace amr
