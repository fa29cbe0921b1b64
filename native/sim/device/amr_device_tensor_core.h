// The sim build's tensor-core instructions for native/runtime/tensor_core.cuh (the contract and the fragment
// layouts are there): each forwards to the emulation in native/sim/sim_warp.cpp, a warp collective.
#pragma once

#include <cstdint>

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
