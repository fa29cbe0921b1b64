// Tensor-core building blocks for our kernels, one signature for both builds; the build chooses the
// implementation (amr_device_tensor_core.h, found like kernel.cuh's):
//  - nvcc (sm_80+): native/runtime/cuda/, inline PTX (mma.sync, ldmatrix, cp.async);
//  - sim: native/sim/device/, where native/sim/sim_warp.cpp gives every lane exactly the registers the PTX ISA's
//    fragment layouts say the hardware delivers (section "Matrix Fragments for mma.m16n8k16 with floating
//    point type", "... for mma.m16n8k8", and "Warp-level matrix load instruction: ldmatrix").
//
// Fragment layouts (groupID = lane >> 2, tig = lane % 4; each .b32 register holds two 16-bit elements,
// the lower-indexed one in the low half):
//   mma.m16n8k16 A (16x16, row-major, a[0..3]): a[0] = A[g][2tig..+1], a[1] = A[g+8][2tig..+1],
//                                               a[2] = A[g][2tig+8..+9], a[3] = A[g+8][2tig+8..+9]
//   mma.m16n8k16 B (16x8, "col": k pairs, b[0..1]): b[0] = B[2tig..+1][g], b[1] = B[2tig+8..+9][g]
//   mma.m16n8k8  A (16x8, a[0..1]): a[0] = A[g][2tig..+1], a[1] = A[g+8][2tig..+1]; B (8x8): b[0] = B[2tig..+1][g]
//   C / D (16x8 f32, c[0..3]): c[0..1] = C[g][2tig..+1], c[2..3] = C[g+8][2tig..+1]
//   ldmatrix.m8n8.b16: lanes 8j..8j+7 give the row addresses (16 bytes each) of matrix j (x1: j = 0,
//     x2: j < 2, x4: j < 4; other lanes' addresses are ignored); register j of lane l holds row l/4,
//     elements 2(l%4) and 2(l%4)+1 of matrix j; .trans delivers the transposed matrix (row 2(l%4) and
//     2(l%4)+1, element l/4).
// All of these are warp-collective: every lane of the warp must call them together (no exited lanes).
#pragma once

#include <cstdint>

#include "kernel.cuh"

// What every implementation provides (a, b: packed 16-bit pairs as above; c, d: f32 accumulators):
//   mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]), and _f16 the same;
//   mma_m16n8k8_bf16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4]);
//   ldmatrix_x1 / _x2 / _x4 (uint32_t* r, const void* row_address), and the same with _trans;
//   cp_async_16(void* smem_dst, const void* gmem_src), cp_async_16_zfill(smem_dst, gmem_src, bool valid) (writes
//   16 zero bytes when !valid; gmem_src must still be a valid address), cp_async_commit(), cp_async_wait<N>()
//   (all but the N newest groups have landed), cp_async_wait_all().
#include <amr_device_tensor_core.h>
