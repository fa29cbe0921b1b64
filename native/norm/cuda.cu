#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "norm.h"

namespace amr {
namespace norm {
namespace AMR_GPU_NS {

namespace {

constexpr int kRowThreads = 256;

// Sum over the block, same pairing every time: warp shuffles, then the warp totals in order.
__device__ float block_sum(float v) {
  AMR_SHARED(float, warp_totals, [kRowThreads / 32]);
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // warp_totals may still be read by a previous call
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < kRowThreads / 32; ++i) total += warp_totals[i];
  return total;
}

template <typename T, typename P>
__global__ void layer_norm_forward_kernel(T* y, float* mean, float* rstd, const T* x, const P* w, const P* b,
                                          int64_t cols, float eps) {
  const int64_t o = blockIdx.x * cols;
  const float x0 = Elem<T>::load(x, o);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) s += Elem<T>::load(x, o + c) - x0;
  const float mu = block_sum(s) / cols;
  float v = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) {
    const float d = centred(Elem<T>::load(x, o + c), x0, mu);
    v += d * d;
  }
  const float rs = rsqrtf(block_sum(v) / cols + eps);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = rs;
  }
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads)
    Elem<T>::store(y, o + c, centred(Elem<T>::load(x, o + c), x0, mu) * rs * Elem<P>::load(w, c) + Elem<P>::load(b, c));
}

template <typename T, typename P>
__global__ void layer_norm_dx_kernel(T* dx, const T* dy, const T* x, const P* w, const float* mean, const float* rstd,
                                     int64_t cols) {
  const int64_t r = blockIdx.x, o = r * cols;
  const float mu = mean[r], rs = rstd[r], x0 = Elem<T>::load(x, o);
  float sg = 0.f, sgx = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) {
    const float g = Elem<T>::load(dy, o + c) * Elem<P>::load(w, c);
    sg += g;
    sgx += g * centred(Elem<T>::load(x, o + c), x0, mu) * rs;
  }
  const float mg = block_sum(sg) / cols;
  const float mgx = block_sum(sgx) / cols;
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) {
    const float g = Elem<T>::load(dy, o + c) * Elem<P>::load(w, c);
    const float xh = centred(Elem<T>::load(x, o + c), x0, mu) * rs;
    Elem<T>::store(dx, o + c, rs * (g - mg - xh * mgx));
  }
}

// One thread per column and row chunk: neighbouring threads read neighbouring columns (coalesced).
template <typename T>
__global__ void layer_norm_column_partials_kernel(float* pw, float* pb, const T* dy, const T* x, const float* mean,
                                                  const float* rstd, int64_t rows, int64_t cols, int64_t per) {
  const int64_t c = blockIdx.y * (int64_t)blockDim.x + threadIdx.x;
  const int64_t k = blockIdx.x;
  if (c >= cols) return;
  const int64_t end = (k + 1) * per < rows ? (k + 1) * per : rows;
  float sw = 0.f, sb = 0.f;
  for (int64_t r = k * per; r < end; ++r) {
    const float g = Elem<T>::load(dy, r * cols + c);
    sw += g * centred(Elem<T>::load(x, r * cols + c), Elem<T>::load(x, r * cols), mean[r]) * rstd[r];
    sb += g;
  }
  pw[k * cols + c] = sw;
  pb[k * cols + c] = sb;
}

template <typename P>
__global__ void column_sum_kernel(P* dw, P* db, const float* pw, const float* pb, int64_t cols) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float sw = 0.f, sb = 0.f;
  for (int64_t k = 0; k < kColumnSumChunks; ++k) {
    sw += pw[k * cols + c];
    sb += pb[k * cols + c];
  }
  Elem<P>::store(dw, c, sw);
  Elem<P>::store(db, c, sb);
}

}  // namespace

void layer_norm_forward(GpuStream s, void* y, float* mean, float* rstd, const void* x, const void* w, const void* b,
                        int64_t rows, int64_t cols, float eps, DType dt, DType pdt) {
  with_float_dtype(dt, "layerNorm", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    with_param_type<T>(pdt, [&](auto* ptag) {
      using P = std::remove_pointer_t<decltype(ptag)>;
      launch("layer_norm_forward", layer_norm_forward_kernel<T, P>, dim3((unsigned)rows), dim3(kRowThreads), 0, s,
             static_cast<T*>(y), mean, rstd, static_cast<const T*>(x), static_cast<const P*>(w),
             static_cast<const P*>(b), cols, eps);
    });
  });
}

void layer_norm_backward(GpuStream s, void* dx, void* dw, void* db, const void* dy, const void* x, const void* w,
                         const float* mean, const float* rstd, int64_t rows, int64_t cols, DType dt, DType pdt,
                         float* scratch) {
  with_float_dtype(dt, "layerNorm backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    with_param_type<T>(pdt, [&](auto* ptag) {
      using P = std::remove_pointer_t<decltype(ptag)>;
      launch("layer_norm_dx", layer_norm_dx_kernel<T, P>, dim3((unsigned)rows), dim3(kRowThreads), 0, s,
             static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const P*>(w), mean,
             rstd, cols);
      float* pw = scratch;
      float* pb = scratch + kColumnSumChunks * cols;
      const int64_t per = (rows + kColumnSumChunks - 1) / kColumnSumChunks;
      launch("layer_norm_column_partials", layer_norm_column_partials_kernel<T>,
             dim3((unsigned)kColumnSumChunks, (unsigned)((cols + 255) / 256)), dim3(256), 0, s, pw, pb,
             static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd, rows, cols, per);
      launch("layer_norm_column_sum", column_sum_kernel<P>, dim3((unsigned)((cols + 255) / 256)), dim3(256), 0, s,
             static_cast<P*>(dw), static_cast<P*>(db), static_cast<const float*>(pw), static_cast<const float*>(pb), cols);
    });
  });
}

}  // namespace AMR_GPU_NS
}  // namespace norm
}  // namespace amr
