// conv2d on cuda (and, compiled by the host compiler, on sim): im2col / col2im / layout kernels around the GEMM
// family's product, which picks the tensor-core tiles for bf16 when the shapes allow (K and N·Ho·Wo multiples
// of 8) and its SIMT kernel otherwise. Scratch is in the storage dtype, so bf16 columns feed the tensor cores.
#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "../runtime/block_sum.cuh"
#include "conv.h"

namespace amr {
namespace conv {
namespace AMR_GPU_NS {

namespace {

constexpr int kThreads = 256;

dim3 grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

#define AMR_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <typename T>
__global__ void im2col_kernel(Geometry g, int64_t group, T* col, const T* x) {
  const int64_t Q = col_cols(g);
  AMR_GRID_STRIDE(t, col_rows(g) * Q) {
    const int64_t src = col_source(g, group, t / Q, t % Q);
    col[t] = src < 0 ? T(0) : x[src];
  }
}

template <typename T>
__global__ void col2im_kernel(Geometry g, int64_t group, T* dx, const T* dcol, const T* bias) {
  const int64_t Cg = group_in(g);
  AMR_GRID_STRIDE(t, int64_t(g.batch) * Cg * g.in_h * g.in_w) {
    const int64_t ix = t % g.in_w, iy = (t / g.in_w) % g.in_h, cl = (t / (int64_t(g.in_w) * g.in_h)) % Cg;
    const int64_t n = t / (int64_t(g.in_w) * g.in_h * Cg), c = group * Cg + cl;
    float acc = gather_columns(g, cl, n, iy, ix, dcol);
    if (bias) acc += Elem<T>::load(bias, c);
    Elem<T>::store(dx, ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix, acc);
  }
}

// [N, O, HW] → [O, N·HW].
template <typename T>
__global__ void channel_major_kernel(Geometry g, T* dst, const T* src) {
  const int64_t HW = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  AMR_GRID_STRIDE(t, output_elements(g)) {
    const int64_t p = t % HW, o = (t / HW) % g.out_c, n = t / (HW * g.out_c);
    dst[o * Q + n * HW + p] = src[t];
  }
}

// y [N, O, HW] from the channel-major product [O, N·HW], with the fused bias, activation and residual.
template <typename T>
__global__ void epilogue_kernel(Geometry g, Epilogue e, T* y, const T* rows) {
  const int64_t HW = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  AMR_GRID_STRIDE(t, output_elements(g)) {
    const int64_t p = t % HW, o = (t / HW) % g.out_c, n = t / (HW * g.out_c);
    store_output(e, y, t, o, Elem<T>::load(rows, o * Q + n * HW + p));
  }
}

// Direct (depthwise-style) convs: one thread per output, per input pixel, and a block per weight element.
template <typename T>
__global__ void direct_forward_kernel(Geometry g, Epilogue e, T* y, const T* x, const T* w) {
  const int64_t HW = int64_t(g.out_h) * g.out_w;
  AMR_GRID_STRIDE(t, output_elements(g)) {
    const int64_t p = t % HW, o = (t / HW) % g.out_c, n = t / (HW * g.out_c);
    store_output(e, y, t, o, direct_output(g, x, w, n, o, p / g.out_w, p % g.out_w));
  }
}

template <typename T>
__global__ void direct_input_kernel(Geometry g, T* dx, const T* dy, const T* w, const T* bias) {
  const int64_t HW = int64_t(g.in_h) * g.in_w;
  AMR_GRID_STRIDE(t, input_elements(g)) {
    const int64_t p = t % HW, c = (t / HW) % g.in_c, n = t / (HW * g.in_c);
    float v = direct_input_grad(g, dy, w, n, c, p / g.in_w, p % g.in_w);
    if (bias) v += Elem<T>::load(bias, c);
    Elem<T>::store(dx, t, v);
  }
}

template <typename T>
__global__ void direct_weight_kernel(Geometry g, T* dw, const T* x, const T* dy) {
  const int64_t e = blockIdx.x;
  const int taps = g.kh * g.kw, t = int(e % taps);
  const float part = direct_weight_grad(g, x, dy, e / taps, t / g.kw, t % g.kw, threadIdx.x, kThreads);
  const float total = ::amr::AMR_GPU_NS::block_sum<kThreads>(part);
  if (threadIdx.x == 0) Elem<T>::store(dw, e, total);
}

// Each group's weight [Og, K] as [K, Og], so the input gradient's product needs no transposed A (which the
// tensor-core path does not take).
template <typename T>
__global__ void transpose_weight_kernel(Geometry g, T* wt, const T* w) {
  const int64_t K = col_rows(g), Og = group_out(g);
  AMR_GRID_STRIDE(t, weight_elements(g)) {
    const int64_t r = t % K, o = (t / K) % Og, grp = t / (K * Og);
    wt[(grp * K + r) * Og + o] = w[t];
  }
}

// One block per channel: a fixed per-thread stride, then block_sum's fixed tree.
template <typename T>
__global__ void channel_sum_kernel(T* out, const T* t, int64_t n, int64_t c, int64_t hw) {
  const int64_t ch = blockIdx.x;
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < n * hw; i += kThreads) acc += Elem<T>::load(t, ((i / hw) * c + ch) * hw + i % hw);
  const float total = ::amr::AMR_GPU_NS::block_sum<kThreads>(acc);
  if (threadIdx.x == 0) Elem<T>::store(out, ch, total);
}

}  // namespace

void forward(GpuStream s, const Geometry& g, const Epilogue& e, void* y, const void* x, const void* w, DType dt,
             void* workspace) {
  with_float_dtype(dt, "conv2d", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g);
    if (direct(g)) {
      launch("conv2d_direct", direct_forward_kernel<T>, grid_for(output_elements(g)), dim3(kThreads), 0, s, g, e,
             static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(w));
      return;
    }
    Scratch<T> sc(g, workspace);
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      launch("conv2d_im2col", im2col_kernel<T>, grid_for(K * Q), dim3(kThreads), 0, s, g, grp, sc.col,
             static_cast<const T*>(x));
      gemm::AMR_GPU_NS::gemm(s, product(Og, Q, K, static_cast<const T*>(w) + grp * Og * K, sc.col, sc.rows + grp * Og * Q, dt));
    }
    launch("conv2d_epilogue", epilogue_kernel<T>, grid_for(output_elements(g)), dim3(kThreads), 0, s, g, e,
           static_cast<T*>(y), static_cast<const T*>(sc.rows));
  });
}

void backward_input(GpuStream s, const Geometry& g, void* dx, const void* dy, const void* w, const void* bias,
                    DType dt, void* workspace) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g);
    const int64_t in_group = int64_t(g.batch) * group_in(g) * g.in_h * g.in_w;
    if (direct(g)) {
      launch("conv2d_direct_backward_input", direct_input_kernel<T>, grid_for(input_elements(g)), dim3(kThreads), 0, s, g,
             static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<const T*>(bias));
      return;
    }
    Scratch<T> sc(g, workspace);
    launch("conv2d_channel_major", channel_major_kernel<T>, grid_for(output_elements(g)), dim3(kThreads), 0, s, g,
           sc.rows, static_cast<const T*>(dy));
    launch("conv2d_transpose_weight", transpose_weight_kernel<T>, grid_for(weight_elements(g)), dim3(kThreads), 0, s,
           g, sc.weight, static_cast<const T*>(w));
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      gemm::AMR_GPU_NS::gemm(s, product(K, Q, Og, sc.weight + grp * K * Og, sc.rows + grp * Og * Q, sc.col, dt));
      launch("conv2d_col2im", col2im_kernel<T>, grid_for(in_group), dim3(kThreads), 0, s, g, grp,
             static_cast<T*>(dx), static_cast<const T*>(sc.col), static_cast<const T*>(bias));
    }
  });
}

void backward_weight(GpuStream s, const Geometry& g, void* dw, const void* x, const void* dy, DType dt,
                     void* workspace) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g);
    if (direct(g)) {
      launch("conv2d_direct_backward_weight", direct_weight_kernel<T>, dim3(static_cast<unsigned>(weight_elements(g))), dim3(kThreads), 0,
             s, g, static_cast<T*>(dw), static_cast<const T*>(x), static_cast<const T*>(dy));
      return;
    }
    Scratch<T> sc(g, workspace);
    launch("conv2d_channel_major", channel_major_kernel<T>, grid_for(output_elements(g)), dim3(kThreads), 0, s, g,
           sc.rows, static_cast<const T*>(dy));
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      launch("conv2d_im2col", im2col_kernel<T>, grid_for(K * Q), dim3(kThreads), 0, s, g, grp, sc.col,
             static_cast<const T*>(x));
      gemm::AMR_GPU_NS::gemm(s, product(Og, K, Q, sc.rows + grp * Og * Q, sc.col, static_cast<T*>(dw) + grp * Og * K, dt, false, true));
    }
  });
}

void channel_sum(GpuStream s, void* out, const void* t, int64_t n, int64_t c, int64_t hw, DType dt) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("conv2d_channel_sum", channel_sum_kernel<T>, dim3(static_cast<unsigned>(c)), dim3(kThreads), 0, s,
           static_cast<T*>(out), static_cast<const T*>(t), n, c, hw);
  });
}

}  // namespace AMR_GPU_NS
}  // namespace conv
}  // namespace amr
