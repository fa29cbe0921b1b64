// Tensor-core building blocks for our kernels, one signature for both compilers:
//  - nvcc (sm_80+): inline PTX (mma.sync, ldmatrix, cp.async);
//  - sim (AMR_SIM): native/sim/sim_warp.cpp gives every lane exactly the registers the PTX ISA's
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

#ifdef AMR_SIM

// The emulation (native/sim/sim_warp.cpp). Its own namespace, so that unqualified calls from kernels
// in namespace amr::sim::<family> still find the global functions below.
namespace amr {
namespace sim {
namespace tc {
void mma_m16n8k16(bool bf16, float* d, const uint32_t* a, const uint32_t* b, const float* c);
void mma_m16n8k8_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c);
void ldmatrix(int num, bool trans, uint32_t* r, const void* row_address);
void cp_async_16(void* smem_dst, const void* gmem_src, bool valid);
void cp_async_commit();
void cp_async_wait(int n);
}  // namespace tc
}  // namespace sim
}  // namespace amr

inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  ::amr::sim::tc::mma_m16n8k16(true, d, a, b, c);
}
inline void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  ::amr::sim::tc::mma_m16n8k16(false, d, a, b, c);
}
inline void mma_m16n8k8_bf16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4]) {
  ::amr::sim::tc::mma_m16n8k8_bf16(d, a, b, c);
}
inline void ldmatrix_x1(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(1, false, r, p); }
inline void ldmatrix_x2(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(2, false, r, p); }
inline void ldmatrix_x4(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(4, false, r, p); }
inline void ldmatrix_x1_trans(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(1, true, r, p); }
inline void ldmatrix_x2_trans(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(2, true, r, p); }
inline void ldmatrix_x4_trans(uint32_t* r, const void* p) { ::amr::sim::tc::ldmatrix(4, true, r, p); }
// The destination is undefined from the issue until the cp_async_wait that covers the copy's group: sim
// fills it with poison at the issue and writes the data at that wait, so reading it early, or still
// reading the old contents of a buffer that is being refilled, gives NaN.
inline void cp_async_16(void* smem_dst, const void* gmem_src) { ::amr::sim::tc::cp_async_16(smem_dst, gmem_src, true); }
inline void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool valid) {
  ::amr::sim::tc::cp_async_16(smem_dst, gmem_src, valid);
}
inline void cp_async_commit() { ::amr::sim::tc::cp_async_commit(); }
template <int N>
inline void cp_async_wait() { ::amr::sim::tc::cp_async_wait(N); }
inline void cp_async_wait_all() {
  ::amr::sim::tc::cp_async_commit();
  ::amr::sim::tc::cp_async_wait(0);
}

#else  // nvcc: sm_80 or newer

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ void mma_m16n8k8_bf16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ unsigned amr_smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldmatrix_x1(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(amr_smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(amr_smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(amr_smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(amr_smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(amr_smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(amr_smem_addr(p)) : "memory");
}

// cp.async.cg: 16 bytes global -> shared, bypassing L1. With src-size 0 (zfill, !valid) nothing is read
// and 16 zero bytes are written; gmem_src must still be a valid address, e.g. the tensor's base.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(amr_smem_addr(smem_dst)), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(amr_smem_addr(smem_dst)), "l"(gmem_src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

#endif
