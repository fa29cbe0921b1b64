// bf16 tensor-core pieces shared by the attention kernels (forward_tc_kernel in cuda.cu, the backward in
// backward_tc.cuh): operand fragments of rows gathered through the window geometry, tiles staged with cp.async,
// and products against staged tiles. Fragment layouts are native/runtime/tensor_core.cuh's; a lane's C fragment
// rows are lane>>2 and lane>>2 + 8, its columns (lane&3)*2 + {0, 1}.
#pragma once
#include <cstdint>

#include "../runtime/kernel.cuh"
#include "../runtime/tensor_core.cuh"
#include "attention.h"

// Loops that index register arrays (fragments, accumulators) must unroll fully, or nvcc moves the arrays to local
// memory; its own heuristics stop short on the larger loop bodies here. Sim has no registers to keep.
#ifdef AMR_SIM
#define AMR_UNROLL
#else
#define AMR_UNROLL _Pragma("unroll")
#endif

namespace amr {
namespace attention {
namespace AMR_GPU_NS {

constexpr int kTcWarps = 4;
constexpr int kTcThreads = 32 * kTcWarps;
constexpr int kTcRows = 16 * kTcWarps;  // rows a block owns: one m16 row block per warp
// One extra 16-byte chunk per shared row: rows stay 16-byte aligned for ldmatrix and cp.async, and the 8 rows one
// ldmatrix reads start in different banks for every head dim these kernels run (a multiple of 16: HD/8 + 1, an odd
// number of 16-byte chunks per row).
constexpr int kTcPad = 8;

__device__ inline uint32_t pack_bf16(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
__device__ inline uint32_t pack_f32_bf16(float lo, float hi) { return pack_bf16(f32_to_bf16(lo), f32_to_bf16(hi)); }

// A fragments (HD/16 k-steps) of a warp's 16 rows straight from global memory: this lane's rows start at o0 and
// o1; a row that is out of range comes in as zeros. Used once per block, so not worth staging.
template <int HD>
__device__ void load_a_rows(uint32_t (&a)[HD / 16][4], const uint16_t* x, int64_t o0, bool v0, int64_t o1, bool v1,
                            int tig) {
  for (int kk = 0; kk < HD / 16; ++kk) {
    const int c = kk * 16 + 2 * tig;
    a[kk][0] = v0 ? pack_bf16(x[o0 + c], x[o0 + c + 1]) : 0u;
    a[kk][1] = v1 ? pack_bf16(x[o1 + c], x[o1 + c + 1]) : 0u;
    a[kk][2] = v0 ? pack_bf16(x[o0 + c + 8], x[o0 + c + 9]) : 0u;
    a[kk][3] = v1 ? pack_bf16(x[o1 + c + 8], x[o1 + c + 9]) : 0u;
  }
}

// The A fragment (16 rows × 16 columns) made of two C fragments side by side (columns 0-7 and 8-15), rounded to
// bf16: a product's result becomes the left operand of the next product without leaving registers.
__device__ inline void c_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack_f32_bf16(lo[0], lo[1]);
  a[1] = pack_f32_bf16(lo[2], lo[3]);
  a[2] = pack_f32_bf16(hi[0], hi[1]);
  a[3] = pack_f32_bf16(hi[2], hi[3]);
}

// The A fragment of rows r0..r0+15, columns k0..k0+15 of a row-major shared tile (lanes 0-15 address the rows at
// k0, lanes 16-31 the same rows at k0 + 8).
template <int W>
__device__ inline void ldmatrix_a(uint32_t (&a)[4], const uint16_t (*t)[W], int r0, int k0, int lane) {
  ldmatrix_x4(a, &t[r0 + (lane & 15)][k0 + (lane >> 4) * 8]);
}

// How a shared tile holds the B operand of a product, row-major either way: as Bᵀ (t[n][k]: K in S = Q·Kᵀ) or as
// B itself (t[k][n]: K in dQ = dS·K).
enum BLayout { kBt, kB };

// acc[n] += a · B for every 8-column block n of B (k-step k0). One ldmatrix.x4 gives two blocks: from Bᵀ the
// matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15); from B the same four transposed,
// .trans turning rows of B into the k pairs a B fragment holds.
template <BLayout kLayout, int NB, int W>
__device__ inline void mma_tile(float (&acc)[NB][4], const uint32_t (&a)[4], const uint16_t (*t)[W], int k0,
                                int lane) {
  static_assert(NB % 2 == 0, "column blocks go in pairs");
  AMR_UNROLL
  for (int n = 0; n < NB; n += 2) {
    uint32_t b[4];
    if constexpr (kLayout == kBt)
      ldmatrix_x4(b, &t[n * 8 + (lane & 7) + ((lane >> 4) << 3)][k0 + ((lane >> 3) & 1) * 8]);
    else
      ldmatrix_x4_trans(b, &t[k0 + (lane & 7) + ((lane >> 3) & 1) * 8][n * 8 + (lane >> 4) * 8]);
    mma_m16n8k16_bf16(acc[n], a, b, acc[n]);
    mma_m16n8k16_bf16(acc[n + 1], a, b + 2, acc[n + 1]);
  }
}

// Where row i of one (batch, head, window) problem starts: in qkv for part 0..2, in an output-shaped [B, T, D]
// tensor (dO) for kOutPart.
constexpr int kOutPart = 3;
__device__ inline int64_t row_offset(const Geometry& g, int64_t b, int64_t h, int64_t w, int part, int64_t i) {
  const int64_t t = g.token(w, i);
  return part == kOutPart ? g.out_offset(b, t, h) : g.qkv_offset(b, t, part, h);
}

// Issues the cp.async copies of rows r0..r0+ROWS of one problem into a padded shared tile, the whole block taking
// part (the caller commits and waits). Rows at or past L are zero-filled, so they add nothing to any product.
template <int ROWS, int HD>
__device__ void stage_rows_async(uint16_t (*dst)[HD + kTcPad], const uint16_t* src, const Geometry& g, int64_t b,
                                 int64_t h, int64_t w, int part, int64_t r0) {
  constexpr int kChunks = HD / 8;  // 16-byte copies per row; offsets are multiples of 8 elements for every head dim
  const int64_t L = g.length();
  for (int e = threadIdx.x; e < ROWS * kChunks; e += kTcThreads) {
    const int r = e / kChunks, c = e % kChunks * 8;
    const bool valid = r0 + r < L;
    cp_async_16_zfill(&dst[r][c], valid ? src + row_offset(g, b, h, w, part, r0 + r) + c : src, valid);
  }
}

}  // namespace AMR_GPU_NS
}  // namespace attention
}  // namespace amr
