// conv2d on cuda (and, compiled by the host compiler, on sim). In bf16 the forward (K a multiple of 8), the input
// gradient and the weight gradient are implicit GEMMs on the GEMM family's tensor-core tile (below; conv.h's
// implicit_* predicates say when); everything else is im2col / col2im / layout kernels around the GEMM family's
// product (tensor cores when its shapes allow, SIMT otherwise), with scratch in the storage dtype.
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

// Implicit GEMMs for bf16 (the tensor-core path): the column matrix is never written. The GEMM tile pulls its B
// chunks straight from x (forward, weight gradient) or dy (input gradient) through an index map, and the epilogues
// write NCHW tensors directly: no column scratch, no epilogue pass.
//
// B chunks gathered through an index map: map(k, n) is the offset in src of B's element (k, n) in GEMM indices, or
// −1 for a zero (padding, a tap that lands nowhere, past the matrix). kBKN as for DenseB: the stage holds [k][n]
// (chunks run along n) or [n][k] (chunks run along k); either way a chunk runs along output or input pixels.
//
// rows8 (set by the host) says the chunk's pixel axis has stride 1 in src, its rows are a multiple of 8 long and
// src is 16-byte aligned: a chunk (which starts at a multiple of 8) then lies in one row, and the valid pixels of a
// row are one interval, so when both ends of the chunk are valid all 8 are, contiguous. Such a chunk is one
// cp_async_16 when its start is 16-byte aligned (1×1 convs, a 3×3's centre column): it lands with the pipeline's
// other copies instead of stalling the thread on 8 loads before the stage's MMAs can start. The rest are plain
// stores, which the pipeline's barriers make visible as they do the copies (see DenseB).
template <bool kBKN, typename Map>
struct GatherB {
  Map map;
  const uint16_t* src;
  bool rows8;
  template <int kBK, int kBN, int kPitch, int kThreads>
  __device__ __forceinline__ void load(__nv_bfloat16* bs, int k0, int n0, int N, int K, int tid) const {
    uint16_t* dst = reinterpret_cast<uint16_t*>(bs);
    for (int c = tid; c < kBK * kBN / 8; c += kThreads) {
      // Row of the stage and the first of the chunk's 8 consecutive elements along it.
      const int r = kBKN ? c / (kBN / 8) : c / (kBK / 8), e = kBKN ? (c % (kBN / 8)) * 8 : (c % (kBK / 8)) * 8;
      const int k = kBKN ? k0 + r : k0 + e, n = kBKN ? n0 + e : n0 + r;
      if (rows8 && k + (kBKN ? 0 : 7) < K && n + (kBKN ? 7 : 0) < N) {
        const int64_t first = map(k, n), last = kBKN ? map(k, n + 7) : map(k + 7, n);
        if (first >= 0 && last == first + 7 && first % 8 == 0) {
          cp_async_16(dst + r * kPitch + e, src + first);
          continue;
        }
      }
      for (int v = 0; v < 8; ++v) {
        const int kv = kBKN ? k : k + v, nv = kBKN ? n + v : n;
        const int64_t at = kv < K && nv < N ? map(kv, nv) : -1;
        dst[r * kPitch + e + v] = at < 0 ? uint16_t(0) : src[at];
      }
    }
  }
};

// Whether a gather along pixel rows of width `width` with stride `stride` in `src` may take whole chunks.
AMR_HD bool rows8(int stride, int width, const void* src) {
  return stride == 1 && width % 8 == 0 && (reinterpret_cast<uintptr_t>(src) & 15u) == 0;
}

// Forward: B = one group's im2col columns [K, N·Ho·Wo], element (r, q) read from x by col_source.
struct ColumnMap {
  Geometry g;
  int64_t group;
  __device__ __forceinline__ int64_t operator()(int k, int q) const { return col_source<int>(g, int(group), k, q); }
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
  gemm::AMR_GPU_NS::mma_gemm_tile_from<Tile, true>(A, GatherB<true, ColumnMap>{{g, group}, x, rows8(g.sw, g.out_w, x)}, int(Og),
                                                   int(col_cols(g)), int(K), ConvEpilogue{g, e, group * Og, y});
}

template <typename Tile>
void launch_implicit(GpuStream s, const Geometry& g, const Epilogue& e, void* y, const void* x, const void* w) {
  const int64_t Og = group_out(g), Q = col_cols(g);
  const dim3 grid(unsigned((Q + Tile::kBN - 1) / Tile::kBN), unsigned((Og + Tile::kBM - 1) / Tile::kBM));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    launch("conv2d_implicit_gemm", conv_implicit_kernel<Tile>, grid, dim3(Tile::kThreads), 0, s, g, e, grp,
           static_cast<uint16_t*>(y), static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(w));
}

// The GEMM family's tile choice: the large tile once it fills the device with blocks, or as forced.
bool large_tile(int64_t blocks_of_128) {
  const gemm::MmaTileChoice c = gemm::mma_tile_choice();
  return c == gemm::MmaTileChoice::Large || (c == gemm::MmaTileChoice::Auto && blocks_of_128 >= 264);
}

// ---- Input gradient: dx = wᵀ · dy gathered by the transposed convolution's index map, one GEMM per group and
// phase (conv.h's DgradPhase: with stride > 1 each phase's A holds only the taps that reach its pixels, so no MACs
// go to taps that land between output pixels, and within a phase dy is read with stride 1 along its rows).

// Phase ph's A for every group: [groups][Cg][kp], column (o, a, b) = w[o, c, tap0_y + step_y·a, tap0_x + step_x·b],
// zero columns up to kp so the tile's A rows are 16-byte chunks for cp.async.
__global__ void dgrad_weight_kernel(Geometry g, DgradPhase ph, uint16_t* wt, const uint16_t* w) {
  const int64_t Cg = group_in(g), Og = group_out(g), taps = int64_t(g.kh) * g.kw, nx = ph.x.taps, ny = ph.y.taps;
  AMR_GRID_STRIDE(t, int64_t(g.groups) * Cg * ph.kp) {
    const int64_t k = t % ph.kp, c = (t / ph.kp) % Cg, grp = t / (ph.kp * Cg), o = k / (nx * ny);
    const int64_t i = ph.y.tap0 + ph.y.step * ((k / nx) % ny), j = ph.x.tap0 + ph.x.step * (k % nx);  // kp > 0: taps > 0
    wt[ph.offset + t] = o < Og ? w[((grp * Og + o) * Cg + c) * taps + i * g.kw + j] : uint16_t(0);
  }
}

// B[(o, a, b), (n, u, v)] = dy[n, o, u + base_y − a·dstep_y, v + base_x − b·dstep_x], zero outside dy.
struct DgradMap {
  Geometry g;
  DgradPhase ph;
  int64_t group;
  // 32-bit arithmetic, as col_source<int>: every value is below dy's or the input's size (< 2^31).
  __device__ __forceinline__ int64_t operator()(int k, int q) const {
    const int nx = ph.x.taps, taps = ph.y.taps * nx, og = g.out_c / g.groups;
    const int o = k / taps;
    if (o >= og) return -1;  // kp's zero padding
    const int a = (k % taps) / nx, b = k % nx;
    const int v = q % ph.x.pixels, u = (q / ph.x.pixels) % ph.y.pixels, n = q / (ph.x.pixels * ph.y.pixels);
    const int oy = u + ph.y.base - a * ph.y.dstep, ox = v + ph.x.base - b * ph.x.dstep;
    if (oy < 0 || oy >= g.out_h || ox < 0 || ox >= g.out_w) return -1;
    return ((n * g.out_c + int(group) * og + o) * g.out_h + oy) * g.out_w + ox;
  }
};

// dx at the phase's pixels, written (not added to) in bf16, plus the transposed convolution's bias.
struct DgradEpilogue {
  Geometry g;
  DgradAxis y, x;
  int64_t c0;  // the group's first input channel
  uint16_t* dx;
  const uint16_t* bias;
  __device__ __forceinline__ void operator()(int row, int col, float val) const {
    const int64_t v = col % x.pixels, u = (col / x.pixels) % y.pixels, n = col / (int64_t(x.pixels) * y.pixels);
    const int64_t c = c0 + row, iy = y.pos0 + int64_t(g.sh) * u, ix = x.pos0 + int64_t(g.sw) * v;
    if (bias) val += Elem<uint16_t>::load(bias, c);
    Elem<uint16_t>::store(dx, ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix, val);
  }
};

template <typename Tile>
__global__ void __launch_bounds__(Tile::kThreads) dgrad_implicit_kernel(Geometry g, DgradPhase ph, int64_t group, uint16_t* dx,
                                                                        const uint16_t* dy, const uint16_t* wt,
                                                                        const uint16_t* bias) {
  const int64_t Cg = group_in(g);
  const auto* A = reinterpret_cast<const __nv_bfloat16*>(wt) + ph.offset + group * Cg * ph.kp;
  gemm::AMR_GPU_NS::mma_gemm_tile_from<Tile, true>(
      A, GatherB<true, DgradMap>{{g, ph, group}, dy, rows8(1, ph.x.pixels, dy)}, int(Cg),
      int(g.batch * int64_t(ph.y.pixels) * ph.x.pixels), int(ph.kp), DgradEpilogue{g, ph.y, ph.x, group * Cg, dx, bias});
}

template <typename Tile>
void launch_dgrad(GpuStream s, const Geometry& g, const DgradPhase& ph, uint16_t* dx, const uint16_t* dy, const uint16_t* wt,
                  const uint16_t* bias) {
  const int64_t Cg = group_in(g), P = int64_t(g.batch) * ph.y.pixels * ph.x.pixels;
  const dim3 grid(unsigned((P + Tile::kBN - 1) / Tile::kBN), unsigned((Cg + Tile::kBM - 1) / Tile::kBM));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    launch("conv2d_implicit_backward_input", dgrad_implicit_kernel<Tile>, grid, dim3(Tile::kThreads), 0, s, g, ph, grp, dx,
           dy, wt, bias);
}

// ---- Weight gradient: dw[o, r] = Σ over q of dy[o, q] · col[r, q], M = Og, N = Cg·kh·kw, K = N·Ho·Wo split over
// grid z (see wgrad_splits). Split z covers q in [kb, kb + len) with kb = z · wgrad_split_tiles · 32.

// A[o, k] = dy[n, o0 + o, p] for q = kb + k = n·Ho·Wo + p: dy's rows image by image. When Ho·Wo % 8 == 0 (and dy
// is 16-byte aligned) a chunk of 8 never straddles two images and starts 16-byte aligned, so it is one cp.async;
// otherwise element by element.
struct DyRows {
  Geometry g;
  int64_t o0, kb;
  const uint16_t* dy;
  bool dense;
  template <int kBM, int kBK, int kPitch, int kThreads>
  __device__ __forceinline__ void load(__nv_bfloat16* as, int k0, int m0, int M, int K, int tid) const {
    const int64_t HW = int64_t(g.out_h) * g.out_w;
    for (int c = tid; c < kBM * kBK / 8; c += kThreads) {
      const int r = c / (kBK / 8), kc = (c % (kBK / 8)) * 8;
      const int64_t o = o0 + m0 + r;
      if (dense) {
        const bool ok = m0 + r < M && k0 + kc < K;
        const int64_t q = kb + k0 + kc, n = q / HW;
        const uint16_t* src = ok ? dy + (n * g.out_c + o) * HW + q % HW : dy;
        cp_async_16_zfill(as + r * kPitch + kc, src, ok);
      } else {
        // 32-bit division (q and dy's offsets are below dy's size, < 2^31), one per element.
        uint16_t* dst = reinterpret_cast<uint16_t*>(as) + r * kPitch + kc;
        const int hw = int(HW);
        for (int v = 0; v < 8; ++v) {
          const int q = int(kb) + k0 + kc + v, n = q / hw;
          dst[v] = m0 + r < M && k0 + kc + v < K ? dy[(int64_t(n) * g.out_c + o) * hw + q % hw] : uint16_t(0);
        }
      }
    }
  }
};

// B[k, r] (stage [r][k], kBKN false) = col[r, kb + k] read from x by col_source: chunks of 8 output pixels of one
// (channel, tap) row, the forward's gather with the roles of k and n exchanged.
struct WgradMap {
  Geometry g;
  int64_t group, kb;
  __device__ __forceinline__ int64_t operator()(int k, int r) const { return col_source<int>(g, int(group), r, int(kb) + k); }
};

// One split's dw tile: bf16 straight into dw when there is one split, f32 partials [split][Og][Kc] otherwise.
struct WgradEpilogue {
  int64_t Kc, Og, w0;  // w0: the group's first dw element
  uint16_t* dw;
  float* part;
  __device__ __forceinline__ void operator()(int row, int col, float v) const {
    if (part) part[(int64_t(blockIdx.z) * Og + row) * Kc + col] = v;
    else Elem<uint16_t>::store(dw, w0 + row * Kc + col, v);
  }
};

static_assert(kWgradTileK == gemm::AMR_GPU_NS::kMmaTileK, "a split is a whole number of the tile's k steps");

template <typename Tile>
__global__ void __launch_bounds__(Tile::kThreads) wgrad_implicit_kernel(Geometry g, int64_t group, uint16_t* dw, float* part,
                                                                        const uint16_t* x, const uint16_t* dy, bool dense, int64_t len) {
  const int64_t Og = group_out(g), Kc = col_rows(g), Q = col_cols(g), kb = int64_t(blockIdx.z) * len;
  const int64_t K = Q - kb < len ? Q - kb : len;
  gemm::AMR_GPU_NS::mma_gemm_tile_ab<Tile, false>(DyRows{g, group * Og, kb, dy, dense},
                                                  GatherB<false, WgradMap>{{g, group, kb}, x, rows8(g.sw, g.out_w, x)}, int(Og), int(Kc), int(K),
                                                  WgradEpilogue{Kc, Og, group * Og * Kc, dw, part});
}

// dw's group part = Σ over splits of the partials, in split order.
__global__ void wgrad_reduce_kernel(Geometry g, int64_t group, int64_t splits, uint16_t* dw, const float* part) {
  const int64_t n = group_out(g) * col_rows(g);
  AMR_GRID_STRIDE(t, n) {
    float acc = 0.f;
    for (int64_t z = 0; z < splits; ++z) acc += part[z * n + t];
    Elem<uint16_t>::store(dw, group * n + t, acc);
  }
}

template <typename Tile>
void launch_wgrad(GpuStream s, const Geometry& g, uint16_t* dw, const uint16_t* x, const uint16_t* dy, void* workspace) {
  const int64_t Og = group_out(g), Kc = col_rows(g), splits = wgrad_splits(g);
  const bool dense = (int64_t(g.out_h) * g.out_w) % 8 == 0 && (reinterpret_cast<uintptr_t>(dy) & 15u) == 0;
  float* part = splits > 1 ? static_cast<float*>(workspace) : nullptr;
  const dim3 grid(unsigned((Kc + Tile::kBN - 1) / Tile::kBN), unsigned((Og + Tile::kBM - 1) / Tile::kBM), unsigned(splits));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    launch("conv2d_implicit_backward_weight", wgrad_implicit_kernel<Tile>, grid, dim3(Tile::kThreads), 0, s, g, grp, dw,
           part, x, dy, dense, wgrad_split_tiles(g) * kWgradTileK);
    // The stream orders this group's reduction before the next group's partials overwrite the scratch.
    if (part)
      launch("conv2d_implicit_backward_weight_sum", wgrad_reduce_kernel, grid_for(Og * Kc), dim3(kThreads), 0, s, g, grp,
             splits, dw, static_cast<const float*>(part));
  }
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
      implicit_counts().forward += 1;
      if (large_tile(((group_out(g) + 127) / 128) * ((Q + 127) / 128) * g.groups))
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
    if (implicit_backward_input(g, dt, BackendKind::Cuda)) {
      implicit_counts().backward_input += 1;
      auto* wt = static_cast<uint16_t*>(workspace);
      auto* dxp = static_cast<uint16_t*>(dx);
      const auto *dyp = static_cast<const uint16_t*>(dy), *bp = static_cast<const uint16_t*>(bias);
      for (int py = 0; py < g.sh; ++py)
        for (int px = 0; px < g.sw; ++px) {
          const DgradPhase ph = dgrad_phase(g, py, px);
          launch("conv2d_implicit_backward_input_weight", dgrad_weight_kernel, grid_for(int64_t(g.groups) * group_in(g) * ph.kp),
                 dim3(kThreads), 0, s, g, ph, wt, static_cast<const uint16_t*>(w));
          if (large_tile(((group_in(g) + 127) / 128) * ((int64_t(g.batch) * ph.y.pixels * ph.x.pixels + 127) / 128) * g.groups))
            launch_dgrad<gemm::AMR_GPU_NS::LargeMmaTile>(s, g, ph, dxp, dyp, wt, bp);
          else
            launch_dgrad<gemm::AMR_GPU_NS::SmallMmaTile>(s, g, ph, dxp, dyp, wt, bp);
        }
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
    if (implicit_backward_weight(g, dt, BackendKind::Cuda)) {
      implicit_counts().backward_weight += 1;
      auto* dwp = static_cast<uint16_t*>(dw);
      const auto *xp = static_cast<const uint16_t*>(x), *dyp = static_cast<const uint16_t*>(dy);
      if (large_tile(((Og + 127) / 128) * ((K + 127) / 128) * g.groups * wgrad_splits(g)))
        launch_wgrad<gemm::AMR_GPU_NS::LargeMmaTile>(s, g, dwp, xp, dyp, workspace);
      else
        launch_wgrad<gemm::AMR_GPU_NS::SmallMmaTile>(s, g, dwp, xp, dyp, workspace);
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
