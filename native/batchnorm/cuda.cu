// BatchNorm2d and LayerNorm2d kernels (cuda, and sim on the CPU). Reductions: one block per (n, c) plane with
// block_sum's fixed tree into per-plane partials, then one thread per channel adds the planes in order of n, so
// the results never depend on timing. Elementwise work strides over the tensor with a capped grid.
#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "../runtime/block_sum.cuh"
#include "batchnorm.h"

namespace amr {
namespace batchnorm {
namespace AMR_GPU_NS {

namespace {

using ::amr::AMR_GPU_NS::block_sum;

constexpr int kThreads = 256;
// Enough blocks to fill a GPU; past it each thread takes several elements (and sim emulates fewer threads).
constexpr int64_t kMaxBlocks = 1024;

dim3 blocks_for(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks));
}
dim3 channel_blocks(int64_t c) { return dim3(static_cast<unsigned>((c + kThreads - 1) / kThreads)); }

#define AMR_GRID_STRIDE(i, total) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

// One block per plane q = (n, c): Σ (x − x0), or Σ (x − x0 − mean)² when square.
template <typename T>
__global__ void bn_plane_moment_kernel(float* partial, const T* x, const float* mean, int64_t c, int64_t hw, bool square) {
  const int64_t q = blockIdx.x, ch = q % c;
  const float x0 = Elem<T>::load(x, ch * hw), mu = square ? mean[ch] : 0.f;
  float s = 0.f;
  for (int64_t p = threadIdx.x; p < hw; p += kThreads) {
    const float d = centred(Elem<T>::load(x, q * hw + p), x0, mu);
    s += square ? d * d : d;
  }
  s = block_sum<kThreads>(s);
  if (threadIdx.x == 0) partial[q] = s;
}

__global__ void bn_channel_mean_kernel(float* mean, const float* partial, int64_t n, int64_t c, int64_t count) {
  const int64_t ch = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (ch < c) mean[ch] = sum_over_n(partial, n, c, ch) / count;
}

template <typename T, typename S>
__global__ void bn_channel_finish_kernel(float* invstd, const float* partial, const float* mean, const T* x, S* running_mean,
                                         S* running_var, int64_t n, int64_t c, int64_t hw, float eps, float momentum) {
  const int64_t ch = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (ch < c)
    invstd[ch] = finish_channel(sum_over_n(partial, n, c, ch), mean[ch], Elem<T>::load(x, ch * hw), ch, n * hw, eps,
                                momentum, running_mean, running_var);
}

template <typename S>
__global__ void bn_eval_stats_kernel(float* mean, float* invstd, const S* running_mean, const S* running_var, int64_t c,
                                     float eps) {
  const int64_t ch = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (ch < c) eval_channel(mean, invstd, running_mean, running_var, ch, eps);
}

template <typename T, typename P>
__global__ void bn_apply_kernel(T* y, const T* x, const P* w, const P* b, const float* mean, const float* invstd,
                                int64_t c, int64_t hw, int64_t total, bool training) {
  AMR_GRID_STRIDE(i, total) {
    const int64_t ch = (i / hw) % c;
    const float scale = invstd[ch] * param_or(w, ch, 1.f);
    Elem<T>::store(y, i, centred(Elem<T>::load(x, i), channel_shift(x, ch, hw, training), mean[ch]) * scale + param_or(b, ch, 0.f));
  }
}

// One block per plane: Σ dy and Σ dy·x̂, with x̂ from per-channel statistics (batch norm) or per-pixel ones
// (layerNorm2d, shifted by the pixel's channel-0 value).
template <typename T, bool PerPixel>
__global__ void plane_grad_sums_kernel(float* p_dy, float* p_dyxh, const T* dy, const T* x, const float* mean,
                                       const float* rs, int64_t c, int64_t hw, bool training) {
  const int64_t q = blockIdx.x, ch = q % c, img = q / c;
  float sd = 0.f, sdx = 0.f;
  for (int64_t p = threadIdx.x; p < hw; p += kThreads) {
    const float g = Elem<T>::load(dy, q * hw + p);
    const int64_t s = PerPixel ? img * hw + p : ch;
    const float x0 = PerPixel ? Elem<T>::load(x, img * c * hw + p) : channel_shift(x, ch, hw, training);
    sd += g;
    sdx += g * (centred(Elem<T>::load(x, q * hw + p), x0, mean[s]) * rs[s]);
  }
  sd = block_sum<kThreads>(sd);
  sdx = block_sum<kThreads>(sdx);
  if (threadIdx.x == 0) {
    p_dy[q] = sd;
    p_dyxh[q] = sdx;
  }
}

// The planes of each channel in order of n: into f32 sums (for dx) and/or dbias, dweight (any may be null).
template <typename P>
__global__ void channel_grad_sums_kernel(float* sum_dy, float* sum_dyxh, P* dweight, P* dbias, const float* p_dy,
                                         const float* p_dyxh, int64_t n, int64_t c) {
  const int64_t ch = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (ch >= c) return;
  const float sd = sum_over_n(p_dy, n, c, ch), sdx = sum_over_n(p_dyxh, n, c, ch);
  if (sum_dy) sum_dy[ch] = sd, sum_dyxh[ch] = sdx;
  if (dbias) Elem<P>::store(dbias, ch, sd);
  if (dweight) Elem<P>::store(dweight, ch, sdx);
}

template <typename T, typename P>
__global__ void bn_dx_kernel(T* dx, const T* dy, const T* x, const P* w, const float* mean, const float* invstd,
                             const float* sum_dy, const float* sum_dyxh, int64_t c, int64_t hw, int64_t count, int64_t total,
                             bool training) {
  AMR_GRID_STRIDE(i, total) {
    const int64_t ch = (i / hw) % c;
    const float is = invstd[ch];
    const float xh = centred(Elem<T>::load(x, i), channel_shift(x, ch, hw, training), mean[ch]) * is;
    const float sd = training ? sum_dy[ch] : 0.f, sdx = training ? sum_dyxh[ch] : 0.f;
    Elem<T>::store(dx, i, batch_norm_dx(Elem<T>::load(dy, i), param_or(w, ch, 1.f), xh, is, sd, sdx, count, training));
  }
}

// One thread per pixel, its channels in order (coalesced: neighbouring threads read neighbouring pixels).
template <typename T, typename P>
__global__ void ln2d_forward_kernel(T* y, float* mean, float* rstd, const T* x, const P* w, const P* b, int64_t c,
                                    int64_t hw, int64_t pixels, float eps) {
  AMR_GRID_STRIDE(i, pixels) {
    const int64_t o = (i / hw) * c * hw + i % hw;
    const float x0 = Elem<T>::load(x, o);
    float mu = 0.f, v = 0.f;
    for (int64_t ch = 0; ch < c; ++ch) mu += Elem<T>::load(x, o + ch * hw) - x0;
    mu /= c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float d = centred(Elem<T>::load(x, o + ch * hw), x0, mu);
      v += d * d;
    }
    const float rs = 1.f / sqrtf(v / c + eps);
    mean[i] = mu;
    rstd[i] = rs;
    for (int64_t ch = 0; ch < c; ++ch)
      Elem<T>::store(y, o + ch * hw, centred(Elem<T>::load(x, o + ch * hw), x0, mu) * rs * Elem<P>::load(w, ch) + Elem<P>::load(b, ch));
  }
}

template <typename T, typename P>
__global__ void ln2d_dx_kernel(T* dx, const T* dy, const T* x, const P* w, const float* mean, const float* rstd, int64_t c,
                               int64_t hw, int64_t pixels) {
  AMR_GRID_STRIDE(i, pixels) {
    const int64_t o = (i / hw) * c * hw + i % hw;
    const float x0 = Elem<T>::load(x, o), mu = mean[i], rs = rstd[i];
    float sg = 0.f, sgx = 0.f;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float g = Elem<T>::load(dy, o + ch * hw) * Elem<P>::load(w, ch);
      sg += g;
      sgx += g * (centred(Elem<T>::load(x, o + ch * hw), x0, mu) * rs);
    }
    sg /= c;
    sgx /= c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float g = Elem<T>::load(dy, o + ch * hw) * Elem<P>::load(w, ch);
      const float xh = centred(Elem<T>::load(x, o + ch * hw), x0, mu) * rs;
      Elem<T>::store(dx, o + ch * hw, layer_norm_dx(g, xh, rs, sg, sgx));
    }
  }
}

template <typename T, typename P, typename S>
void bn_forward(GpuStream s, const BatchNormForward& a, float* partial) {
  const T* x = static_cast<const T*>(a.x);
  if (a.training) {
    const dim3 planes(static_cast<unsigned>(a.n * a.c));
    launch("batch_norm_plane_mean", bn_plane_moment_kernel<T>, planes, dim3(kThreads), 0, s, partial, x,
           static_cast<const float*>(nullptr), a.c, a.hw, false);
    launch("batch_norm_channel_mean", bn_channel_mean_kernel, channel_blocks(a.c), dim3(kThreads), 0, s, a.mean,
           static_cast<const float*>(partial), a.n, a.c, a.n * a.hw);
    launch("batch_norm_plane_var", bn_plane_moment_kernel<T>, planes, dim3(kThreads), 0, s, partial, x,
           static_cast<const float*>(a.mean), a.c, a.hw, true);
    launch("batch_norm_channel_var", bn_channel_finish_kernel<T, S>, channel_blocks(a.c), dim3(kThreads), 0, s, a.invstd,
           static_cast<const float*>(partial), static_cast<const float*>(a.mean), x, static_cast<S*>(a.running_mean),
           static_cast<S*>(a.running_var), a.n, a.c, a.hw, a.eps, a.momentum);
  } else {
    launch("batch_norm_eval_stats", bn_eval_stats_kernel<S>, channel_blocks(a.c), dim3(kThreads), 0, s, a.mean, a.invstd,
           static_cast<const S*>(a.running_mean), static_cast<const S*>(a.running_var), a.c, a.eps);
  }
  const int64_t total = a.n * a.c * a.hw;
  launch("batch_norm_apply", bn_apply_kernel<T, P>, blocks_for(total), dim3(kThreads), 0, s, static_cast<T*>(a.y), x,
         static_cast<const P*>(a.weight), static_cast<const P*>(a.bias), static_cast<const float*>(a.mean),
         static_cast<const float*>(a.invstd), a.c, a.hw, total, a.training);
}

template <typename T, typename P>
void bn_backward(GpuStream s, const BatchNormBackward& a, float* scratch) {
  const int64_t planes = a.n * a.c, total = planes * a.hw;
  float* p_dy = scratch;
  float* p_dyxh = scratch + planes;
  float* sum_dy = scratch + 2 * planes;
  float* sum_dyxh = sum_dy + a.c;
  // The eval-mode dx needs no sums; dweight and dbias are those sums.
  if (a.training || a.dweight || a.dbias) {
    launch("batch_norm_plane_grad_sums", plane_grad_sums_kernel<T, false>, dim3(static_cast<unsigned>(planes)),
           dim3(kThreads), 0, s, p_dy, p_dyxh, static_cast<const T*>(a.dy), static_cast<const T*>(a.x), a.mean, a.invstd,
           a.c, a.hw, a.training);
    launch("batch_norm_channel_grad_sums", channel_grad_sums_kernel<P>, channel_blocks(a.c), dim3(kThreads), 0, s,
           sum_dy, sum_dyxh, static_cast<P*>(a.dweight), static_cast<P*>(a.dbias), static_cast<const float*>(p_dy),
           static_cast<const float*>(p_dyxh), a.n, a.c);
  }
  if (!a.dx) return;
  launch("batch_norm_dx", bn_dx_kernel<T, P>, blocks_for(total), dim3(kThreads), 0, s, static_cast<T*>(a.dx),
         static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<const P*>(a.weight), a.mean, a.invstd,
         static_cast<const float*>(sum_dy), static_cast<const float*>(sum_dyxh), a.c, a.hw, a.n * a.hw, total, a.training);
}

template <typename T, typename P>
void ln_forward(GpuStream s, const LayerNorm2dForward& a) {
  const int64_t pixels = a.n * a.hw;
  launch("layer_norm2d_forward", ln2d_forward_kernel<T, P>, blocks_for(pixels), dim3(kThreads), 0, s, static_cast<T*>(a.y),
         a.mean, a.rstd, static_cast<const T*>(a.x), static_cast<const P*>(a.weight), static_cast<const P*>(a.bias), a.c,
         a.hw, pixels, a.eps);
}

template <typename T, typename P>
void ln_backward(GpuStream s, const LayerNorm2dBackward& a, float* scratch) {
  const int64_t planes = a.n * a.c, pixels = a.n * a.hw;
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  launch("layer_norm2d_dx", ln2d_dx_kernel<T, P>, blocks_for(pixels), dim3(kThreads), 0, s, static_cast<T*>(a.dx), dy, x,
         static_cast<const P*>(a.weight), a.mean, a.rstd, a.c, a.hw, pixels);
  float* p_dy = scratch;
  float* p_dyxh = scratch + planes;
  launch("layer_norm2d_plane_grad_sums", plane_grad_sums_kernel<T, true>, dim3(static_cast<unsigned>(planes)),
         dim3(kThreads), 0, s, p_dy, p_dyxh, dy, x, a.mean, a.rstd, a.c, a.hw, true);
  launch("layer_norm2d_channel_grad_sums", channel_grad_sums_kernel<P>, channel_blocks(a.c), dim3(kThreads), 0, s,
         static_cast<float*>(nullptr), static_cast<float*>(nullptr), static_cast<P*>(a.dweight), static_cast<P*>(a.dbias),
         static_cast<const float*>(p_dy), static_cast<const float*>(p_dyxh), a.n, a.c);
}

}  // namespace

AMR_BATCHNORM_ENTRY_POINTS

}  // namespace AMR_GPU_NS
}  // namespace batchnorm
}  // namespace amr
