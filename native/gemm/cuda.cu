#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "gemm.h"
#include "mma_tile.cuh"

namespace amr {
namespace gemm {
namespace AMR_GPU_NS {

namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256;

// SIMT tiled GEMM: each 256-thread block computes a 64x64 tile of C, each thread a 4x4 grid of it strided by 16
// (so neighbouring threads write neighbouring columns). Tiles of op(A) and op(B) are staged through shared
// memory k-major; out-of-range elements load as zero, so any M, N, K works.
template <typename T>
__global__ void gemm_simt_kernel(GemmArgs g) {
  AMR_SHARED(float, a_tile, [kTileK][kTileM + 4]);
  AMR_SHARED(float, b_tile, [kTileK][kTileN + 4]);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = (int64_t)blockIdx.y * kTileM, n0 = (int64_t)blockIdx.x * kTileN, e = blockIdx.z;
  const T* A = static_cast<const T*>(g.a) + e * g.stride_a;
  const T* B = static_cast<const T*>(g.b) + e * g.stride_b;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < g.k; k0 += kTileK) {
    for (int idx = threadIdx.x; idx < kTileM * kTileK; idx += kThreads) {
      // Consecutive threads take consecutive elements along the operand's contiguous dimension.
      int r, kk;
      if (g.trans_a) { r = idx % kTileM; kk = idx / kTileM; } else { kk = idx % kTileK; r = idx / kTileK; }
      const int64_t row = m0 + r, col = k0 + kk;
      float v = 0.f;
      if (row < g.m && col < g.k) v = Elem<T>::load(A, g.trans_a ? col * g.m + row : row * g.k + col);
      a_tile[kk][r] = v;
    }
    for (int idx = threadIdx.x; idx < kTileN * kTileK; idx += kThreads) {
      int c, kk;
      if (g.trans_b) { kk = idx % kTileK; c = idx / kTileK; } else { c = idx % kTileN; kk = idx / kTileN; }
      const int64_t col = n0 + c, row = k0 + kk;
      float v = 0.f;
      if (col < g.n && row < g.k) v = Elem<T>::load(B, g.trans_b ? col * g.k + row : row * g.n + col);
      b_tile[kk][c] = v;
    }
    __syncthreads();
    for (int kk = 0; kk < kTileK; ++kk) {
      float a_frag[4], b_frag[4];
      for (int i = 0; i < 4; ++i) a_frag[i] = a_tile[kk][ty + 16 * i];
      for (int j = 0; j < 4; ++j) b_frag[j] = b_tile[kk][tx + 16 * j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
    }
    __syncthreads();
  }
  T* C = static_cast<T*>(g.c) + e * g.stride_c;
  const T* bias = static_cast<const T*>(g.bias);
  const T* res = g.residual ? static_cast<const T*>(g.residual) + e * g.stride_c : nullptr;
  T* pre = g.preactivation ? static_cast<T*>(g.preactivation) + e * g.stride_c : nullptr;
  for (int i = 0; i < 4; ++i) {
    const int64_t row = m0 + ty + 16 * i;
    if (row >= g.m) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t col = n0 + tx + 16 * j;
      if (col >= g.n) continue;
      float v = acc[i][j];
      if (bias) v += Elem<T>::load(bias, col);
      if (pre) Elem<T>::store(pre, row * g.n + col, v);
      v = activate(g.activation, v);
      if (res) v += Elem<T>::load(res, row * g.n + col);
      Elem<T>::store(C, row * g.n + col, v);
    }
  }
}

// bias, activation, residual and the bf16 store, applied to each accumulated value of the tensor-core tile.
struct Bf16Epilogue {
  uint16_t* c;
  const uint16_t* bias;
  const uint16_t* residual;
  uint16_t* preactivation;
  Activation activation;
  int n;
  __device__ __forceinline__ void operator()(int row, int col, float v) const {
    const long long i = (long long)row * n + col;
    if (bias) v += bf16_to_f32(bias[col]);
    if (preactivation) preactivation[i] = f32_to_bf16(v);
    v = activate(activation, v);
    if (residual) v += bf16_to_f32(residual[i]);
    c[i] = f32_to_bf16(v);
  }
};

template <typename Tile, bool kBKN>
__global__ void __launch_bounds__(Tile::kThreads) gemm_bf16_mma_kernel(GemmArgs g) {
  const int64_t e = blockIdx.z;
  const auto* A = static_cast<const __nv_bfloat16*>(g.a) + e * g.stride_a;
  const auto* B = static_cast<const __nv_bfloat16*>(g.b) + e * g.stride_b;
  const int64_t oc = e * g.stride_c;
  Bf16Epilogue epi{static_cast<uint16_t*>(g.c) + oc, static_cast<const uint16_t*>(g.bias),
                   g.residual ? static_cast<const uint16_t*>(g.residual) + oc : nullptr,
                   g.preactivation ? static_cast<uint16_t*>(g.preactivation) + oc : nullptr, g.activation, (int)g.n};
  mma_gemm_tile<Tile, kBKN>(A, B, (int)g.m, (int)g.n, (int)g.k, epi);
}

// The tensor-core tile needs 16-byte rows of A and B and a row-major A; other shapes take the SIMT kernel.
bool fits_mma(const GemmArgs& g) {
  if (g.dtype != DType::BF16 || g.trans_a || g.k % 8 != 0 || g.k == 0) return false;
  if (!g.trans_b && g.n % 8 != 0) return false;
  if (g.m > INT32_MAX || g.n > INT32_MAX || g.k > INT32_MAX) return false;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(g.a) | reinterpret_cast<uintptr_t>(g.b);
  return (addr & 15u) == 0 && (g.stride_a % 8) == 0 && (g.stride_b % 8) == 0;
}

template <typename Tile>
void launch_mma(GpuStream s, const GemmArgs& g) {
  const dim3 grid((unsigned)((g.n + Tile::kBN - 1) / Tile::kBN), (unsigned)((g.m + Tile::kBM - 1) / Tile::kBM),
                  (unsigned)g.batch);
  if (g.trans_b) launch("gemm_bf16_mma_nt", gemm_bf16_mma_kernel<Tile, false>, grid, dim3(Tile::kThreads), 0, s, g);
  else launch("gemm_bf16_mma_nn", gemm_bf16_mma_kernel<Tile, true>, grid, dim3(Tile::kThreads), 0, s, g);
}

// The large tile once it still gives about two waves of blocks on a big GPU (132 SMs); below that the small tile's
// extra blocks keep more SMs busy than the large tile's reuse saves.
bool wants_large_tile(const GemmArgs& g) {
  switch (mma_tile_choice()) {
    case MmaTileChoice::Small: return false;
    case MmaTileChoice::Large: return true;
    default: break;
  }
  const int64_t blocks = ((g.m + LargeMmaTile::kBM - 1) / LargeMmaTile::kBM) * ((g.n + LargeMmaTile::kBN - 1) / LargeMmaTile::kBN) * g.batch;
  return blocks >= 264;
}

}  // namespace

void gemm(GpuStream s, const GemmArgs& g) {
  const std::string why = gpu_unsupported(g);
  if (!why.empty()) throw Error("matmul: " + why);
  if (fits_mma(g)) {
    if (wants_large_tile(g)) launch_mma<LargeMmaTile>(s, g);
    else launch_mma<SmallMmaTile>(s, g);
    return;
  }
  with_float_dtype(g.dtype, "matmul", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const dim3 grid((unsigned)((g.n + kTileN - 1) / kTileN), (unsigned)((g.m + kTileM - 1) / kTileM), (unsigned)g.batch);
    launch("gemm_simt", gemm_simt_kernel<T>, grid, dim3(kThreads), 0, s, g);
  });
}

}  // namespace AMR_GPU_NS
}  // namespace gemm
}  // namespace amr
