// bf16 tensor-core pieces of the attention kernels (forward_tc_kernel in cuda.cu): operand fragments of rows
// gathered through the window geometry. Fragment layouts are native/runtime/tensor_core.cuh's; a lane's C fragment
// rows are lane>>2 and lane>>2 + 8, its columns (lane&3)*2 + {0, 1}.
#pragma once
#include <cstdint>

#include "../runtime/kernel.cuh"
#include "../runtime/tensor_core.cuh"
#include "attention.h"

namespace amr {
namespace attention {
namespace AMR_GPU_NS {

constexpr int kTcWarps = 4;
constexpr int kTcThreads = 32 * kTcWarps;
constexpr int kTcRows = 16 * kTcWarps;  // rows a block owns: one m16 row block per warp
// One extra 16-byte chunk per shared row: rows stay 16-byte aligned for ldmatrix and cp.async, and the 8 rows one
// ldmatrix reads start in different banks for every supported head dim.
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

// Where row i of one (batch, head, window) problem starts: in qkv for part 0..2, in an output-shaped [B, T, D]
// tensor (dO) for kOutPart.
constexpr int kOutPart = 3;
__device__ inline int64_t row_offset(const Geometry& g, int64_t b, int64_t h, int64_t w, int part, int64_t i) {
  const int64_t t = g.token(w, i);
  return part == kOutPart ? g.out_offset(b, t, h) : g.qkv_offset(b, t, part, h);
}

}  // namespace AMR_GPU_NS
}  // namespace attention
}  // namespace amr
