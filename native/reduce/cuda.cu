#include "../runtime/kernel.cuh"
#include "../runtime/block_sum.cuh"
#include "../runtime/launch.cuh"
#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {
namespace AMR_GPU_NS {

using ::amr::AMR_GPU_NS::block_sum;

namespace {

template <typename T>
__global__ void partial_sum_kernel(const T* a, int64_t n, int64_t per_block, float* partial) {
  const int64_t begin = blockIdx.x * per_block;
  const int64_t end = begin + per_block < n ? begin + per_block : n;
  float acc = 0.f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kSumThreads) acc += Elem<T>::load(a, i);
  float total = block_sum<kSumThreads>(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <typename T>
__global__ void final_sum_kernel(const float* partial, int64_t blocks, float alpha, T* out) {
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < blocks; i += kSumThreads) acc += partial[i];
  float total = block_sum<kSumThreads>(acc);
  if (threadIdx.x == 0) Elem<T>::store(out, 0, total * alpha);
}

// One thread per (row chunk, column): neighbouring threads read neighbouring columns.
template <typename T>
__global__ void row_chunk_sum_kernel(float* partial, const T* a, int64_t rows, int64_t cols, int64_t per) {
  const int64_t c = blockIdx.y * (int64_t)blockDim.x + threadIdx.x, k = blockIdx.x;
  if (c >= cols) return;
  const int64_t end = (k + 1) * per < rows ? (k + 1) * per : rows;
  float s = 0.f;
  for (int64_t r = k * per; r < end; ++r) s += Elem<T>::load(a, r * cols + c);
  partial[k * cols + c] = s;
}

template <typename T>
__global__ void chunk_total_kernel(T* out, const float* partial, int64_t cols) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.f;
  for (int64_t k = 0; k < kRowChunks; ++k) s += partial[k * cols + c];
  Elem<T>::store(out, c, s);
}

}  // namespace

void sum_rows(GpuStream s, void* out, const void* a, DType dt, int64_t rows, int64_t cols, void* scratch) {
  with_float_dtype(dt, "sum over rows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    float* partial = static_cast<float*>(scratch);
    const int64_t per = (rows + kRowChunks - 1) / kRowChunks;
    const unsigned col_blocks = (unsigned)((cols + 255) / 256);
    launch("row_chunk_sum", row_chunk_sum_kernel<T>, dim3((unsigned)kRowChunks, col_blocks), dim3(256), 0, s, partial,
           static_cast<const T*>(a), rows, cols, per);
    launch("row_chunk_total", chunk_total_kernel<T>, dim3(col_blocks), dim3(256), 0, s, static_cast<T*>(out),
           static_cast<const float*>(partial), cols);
  });
}

void sum(GpuStream s, void* out, const void* a, DType dt, int64_t n, double alpha, void* scratch) {
  if (const char* why = unsupported(dt)) throw Error(std::string("sum: ") + why);
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
