#include "../runtime/kernel.cuh"
#include "../runtime/block_sum.cuh"
#include "../runtime/launch.cuh"
#include "optim.h"

namespace amr {
namespace optim {
namespace AMR_GPU_NS {

using ::amr::AMR_GPU_NS::block_sum;

namespace {

// One launch for every tensor: element i of the flattened step finds its tensor by binary search over the
// table's offsets (a model has a few hundred tensors, so that is a handful of cached loads).
__global__ void adamw_kernel(const AdamTensor* table, int64_t tensors, int64_t total, AdamHyper h) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const AdamTensor& d = table[table_row(table, tensors, i)];
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

// Block b sums chunk b of the flattened gradients; thread t takes elements t, t + 256, ... of it.
__global__ void grad_norm_partial_kernel(const NormTensor* table, int64_t tensors, int64_t total, int64_t per,
                                         float* partial) {
  const int64_t begin = blockIdx.x * per;
  const int64_t end = begin + per < total ? begin + per : total;
  float acc = 0.f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kNormThreads) {
    const NormTensor& d = table[table_row(table, tensors, i)];
    const float g = norm_grad_at(d, i - d.offset);
    acc += g * g;
  }
  const float s = block_sum<kNormThreads>(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void grad_norm_final_kernel(const float* partial, int64_t blocks, float max_norm, float* out) {
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < blocks; i += kNormThreads) acc += partial[i];
  const float s = block_sum<kNormThreads>(acc);
  if (threadIdx.x == 0) {
    out[0] = s;
    out[1] = clip_coefficient(s, max_norm);
  }
}

__global__ void grad_scale_kernel(const NormTensor* table, int64_t tensors, int64_t total, const float* coef) {
  const float c = coef[0];
  if (c == 1.f) return;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const NormTensor& d = table[table_row(table, tensors, i)];
    const int64_t j = i - d.offset;
    if (d.is_bf16) {
      uint16_t* g = static_cast<uint16_t*>(d.grad);
      g[j] = f32_to_bf16(bf16_to_f32(g[j]) * c);
    } else {
      static_cast<float*>(d.grad)[j] *= c;
    }
  }
}

}  // namespace

void grad_norm(GpuStream s, const NormTensor* table, int64_t tensors, int64_t total, float max_norm, float* partial,
               float* out) {
  const int64_t blocks = norm_blocks(total), per = (total + blocks - 1) / blocks;
  launch("grad_norm_partial", grad_norm_partial_kernel, dim3((unsigned)blocks), dim3(kNormThreads), 0, s, table,
         tensors, total, per, partial);
  launch("grad_norm_final", grad_norm_final_kernel, dim3(1), dim3(kNormThreads), 0, s,
         static_cast<const float*>(partial), blocks, max_norm, out);
}

void grad_scale(GpuStream s, const NormTensor* table, int64_t tensors, int64_t total, const float* coef) {
  const int64_t blocks = (total + 255) / 256;
  launch("grad_scale", grad_scale_kernel, dim3((unsigned)(blocks < 65535 * 8 ? blocks : 65535 * 8)), dim3(256), 0, s,
         table, tensors, total, coef);
}

void adamw_step(GpuStream s, const AdamTensor* table, int64_t tensors, int64_t total, const AdamHyper& h) {
  const int64_t blocks = (total + 255) / 256;
  launch("adamw", adamw_kernel, dim3((unsigned)(blocks < 65535 * 8 ? blocks : 65535 * 8)), dim3(256), 0, s, table,
         tensors, total, h);
}

}  // namespace AMR_GPU_NS
}  // namespace optim
}  // namespace amr
