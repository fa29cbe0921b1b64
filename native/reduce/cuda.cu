#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {
namespace AMR_GPU_NS {

namespace {

// Tree reduction of one value per thread; the pairing is fixed, so the result does not depend on timing.
__device__ float block_sum(float v) {
  __shared__ float buf[kSumThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if ((int)threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  return buf[0];
}

template <typename T>
__global__ void partial_sum_kernel(const T* a, int64_t n, int64_t per_block, float* partial) {
  const int64_t begin = blockIdx.x * per_block;
  const int64_t end = begin + per_block < n ? begin + per_block : n;
  float acc = 0.f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kSumThreads) acc += Elem<T>::load(a, i);
  float total = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <typename T>
__global__ void final_sum_kernel(const float* partial, int64_t blocks, float alpha, T* out) {
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < blocks; i += kSumThreads) acc += partial[i];
  float total = block_sum(acc);
  if (threadIdx.x == 0) Elem<T>::store(out, 0, total * alpha);
}

}  // namespace

void sum(GpuStream s, void* out, const void* a, DType dt, int64_t n, double alpha, void* scratch) {
  if (dt == DType::I32) throw Error("sum: i32 tensors are not supported");
  const int64_t blocks = sum_blocks(n);
  const int64_t per_block = (n + blocks - 1) / blocks;
  float* partial = static_cast<float*>(scratch);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) {
      launch("sum_partial", partial_sum_kernel<T>, dim3((unsigned)blocks), dim3(kSumThreads), 0, s,
             static_cast<const T*>(a), n, per_block, partial);
      launch("sum_final", final_sum_kernel<T>, dim3(1), dim3(kSumThreads), 0, s, static_cast<const float*>(partial),
             blocks, static_cast<float>(alpha), static_cast<T*>(out));
    }
  });
}

}  // namespace AMR_GPU_NS
}  // namespace reduce
}  // namespace amr
