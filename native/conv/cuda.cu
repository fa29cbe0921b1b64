// conv2d on cuda (and, compiled by the host compiler, on sim). bf16 forward with K a multiple of 8 is an implicit
// GEMM on the GEMM family's tensor-core tile (below); everything else is im2col / col2im / layout kernels around
// the GEMM family's product (tensor cores when its shapes allow, SIMT otherwise), with scratch in the storage dtype.
#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "../runtime/block_sum.cuh"
#include "../gemm/mma_tile.cuh"
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

// Implicit GEMM for bf16 (the tensor-core path): the column matrix is never written. The GEMM tile pulls its B
// chunks (8 consecutive output pixels of one (channel, tap) row) straight from x by col_source, and the epilogue
// writes NCHW y with the bias, activation and residual: no scratch, no epilogue pass, one launch per group.
struct ConvColumns {
  Geometry g;
  int64_t group;
  const uint16_t* x;
  template <int kBK, int kBN, int kPitch, int kThreads>
  __device__ __forceinline__ void load(__nv_bfloat16* bs, int k0, int n0, int N, int K, int tid) const {
    uint16_t* dst = reinterpret_cast<uint16_t*>(bs);
    for (int c = tid; c < kBK * kBN / 8; c += kThreads) {
      const int r = c / (kBN / 8), nc = (c % (kBN / 8)) * 8;
      for (int v = 0; v < 8; ++v) {
        const int k = k0 + r, q = n0 + nc + v;
        const int64_t src = k < K && q < N ? col_source(g, group, k, q) : -1;
        dst[r * kPitch + nc + v] = src < 0 ? uint16_t(0) : x[src];
      }
    }
  }
};

struct ConvEpilogue {
  Geometry g;
  Epilogue e;
  int64_t o0;  // the group's first output channel
  uint16_t* y;
  __device__ __forceinline__ void operator()(int row, int col, float v) const {
    const int64_t HW = int64_t(g.out_h) * g.out_w, o = o0 + row, n = col / HW;
    store_output(e, y, (n * g.out_c + o) * HW + col % HW, o, v);
  }
};

template <typename Tile>
__global__ void __launch_bounds__(Tile::kThreads) conv_implicit_kernel(Geometry g, Epilogue e, int64_t group, uint16_t* y,
                                                                       const uint16_t* x, const uint16_t* w) {
  const int64_t K = col_rows(g), Og = group_out(g);
  const auto* A = reinterpret_cast<const __nv_bfloat16*>(w) + group * Og * K;
  gemm::AMR_GPU_NS::mma_gemm_tile_from<Tile, true>(A, ConvColumns{g, group, x}, int(Og), int(col_cols(g)), int(K),
                                                   ConvEpilogue{g, e, group * Og, y});
}

template <typename Tile>
void launch_implicit(GpuStream s, const Geometry& g, const Epilogue& e, void* y, const void* x, const void* w) {
  const int64_t Og = group_out(g), Q = col_cols(g);
  const dim3 grid(unsigned((Q + Tile::kBN - 1) / Tile::kBN), unsigned((Og + Tile::kBM - 1) / Tile::kBM));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    launch("conv2d_implicit_gemm", conv_implicit_kernel<Tile>, grid, dim3(Tile::kThreads), 0, s, g, e, grp,
           static_cast<uint16_t*>(y), static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(w));
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
    if (implicit_gemm(g, dt, BackendKind::Cuda, w)) {
      // The GEMM family's tile choice: the large tile once it fills the device with blocks, or as forced.
      const int64_t large = ((group_out(g) + 127) / 128) * ((Q + 127) / 128) * g.groups;
      const gemm::MmaTileChoice c = gemm::mma_tile_choice();
      if (c == gemm::MmaTileChoice::Large || (c == gemm::MmaTileChoice::Auto && large >= 264))
        launch_implicit<gemm::AMR_GPU_NS::LargeMmaTile>(s, g, e, y, x, w);
      else
        launch_implicit<gemm::AMR_GPU_NS::SmallMmaTile>(s, g, e, y, x, w);
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
