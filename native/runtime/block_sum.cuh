// Sum of one float per thread over a block of Threads threads (a power of two), by a tree whose pairing is fixed:
// the result depends only on the inputs, never on timing, so reductions built on it are bitwise reproducible.
// Every thread gets the total. Include after kernel.cuh (it uses AMR_SHARED so sim poisons the buffer).
#pragma once

namespace amr {
namespace AMR_GPU_NS {  // the cuda and sim builds each get their own copy

template <int Threads>
__device__ float block_sum(float v) {
  AMR_SHARED(float, buf, [Threads]);
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int stride = Threads / 2; stride > 0; stride /= 2) {
    if ((int)threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  const float total = buf[0];
  __syncthreads();  // a second call in the same kernel must not overwrite buf before every thread has read it
  return total;
}

}  // namespace AMR_GPU_NS
}  // namespace amr
