// Self-test kernels of the GPU emulator (selftest.cu), built only into the test addon (CMakeLists.txt). The same
// source is built for both backends, so these are declared in amr::cuda::selftest (nvcc) and amr::sim::selftest (sim). Pointers
// are in the backend's memory (device memory on cuda, host memory on sim); every function only queues
// work on the stream and throws amr::KernelError (a std::runtime_error) on a launch error, or
// std::invalid_argument on bad arguments.
//
// What each test expects is written next to it; test/sim.test.ts checks all of them on sim
// against float64 / PTX-rule references. On a real GPU the layout tests (ldmatrix_layouts, mma_layouts,
// warp_ops) check that sim's fragment and shuffle rules are the hardware's.
#pragma once

#include <cstdint>

namespace amr {
struct GpuStream;

constexpr int kSelftestWarpOpsOutputs = 14;  // ints per thread written by warp_ops
constexpr int kSelftestLdmatrixRegs = 14;    // registers per lane written by ldmatrix_layouts

#define AMR_SELFTEST_DECLARATIONS                                                                          \
  /* (1) Block sum with warp shuffles + shared memory across warps: block_sums[b] = sum of x[i] over */   \
  /* i = b*threads + t + k*blocks*threads. threads: multiple of 32, at most 1024. */                      \
  void block_sum(const float* x, int n, float* block_sums, int blocks, int threads, GpuStream s);         \
  /* (2) out[b*threads + t] = in[b*threads + (t+1) % threads] through static shared memory; without */   \
  /* the barrier the kernel is wrong, and sim's shuffled thread order always shows it. */                 \
  void neighbor_exchange(const float* in, float* out, int blocks, int threads, bool use_barrier,          \
                         GpuStream s);                                                                    \
  /* (3) Tiled bf16 GEMM (cp.async zfill + ldmatrix + mma.m16n8k16), f32 out, any M, N; K % 8 == 0. */   \
  /* b_is_kn = false: B is [N,K], C = A * B^T (ldmatrix.x4); true: B is [K,N], C = A * B */              \
  /* (ldmatrix.x4.trans; needs N % 8 == 0). A, B: raw bf16 bits, 16-byte aligned. */                      \
  void gemm_bf16(const uint16_t* A, const uint16_t* B, float* C, int M, int N, int K, bool b_is_kn,       \
                 GpuStream s);                                                                            \
  /* (4) Rounding: bf16_bits/f16_bits = __float2bfloat16 / __float2half of in; *_back = converted back; */ \
  /* bf16_pair = {__low2float, __high2float} of __floats2bfloat162_rn(in, -in), 2 floats per element. */ \
  void round_trip(const float* in, int n, uint16_t* bf16_bits, float* bf16_back, float* bf16_pair,        \
                  uint16_t* f16_bits, float* f16_back, GpuStream s);                                      \
  /* (5) Votes and shuffles: out has kSelftestWarpOpsOutputs ints per thread (see selftest.cu). */        \
  void warp_ops(const int* in, int* out, int blocks, int threads, GpuStream s);                           \
  /* (6) Must fail under sim: half of the block reaches __syncthreads ("__syncthreads not reached by */   \
  /* all threads of block ..."), and a read one element past the dynamic shared memory. */                \
  void partial_barrier(int* out, int threads, GpuStream s);                                               \
  void dynamic_smem_oob(float* out, int threads, GpuStream s);                                            \
  /* (7) cp.async groups, 64 threads: in has 512 floats; out[5t..5t+4] = buf0[4t] before any wait, */    \
  /* buf0[4t] after wait<1>, buf1[4t] after wait<1>, buf1[4t] after wait<0>, a zfill'd word after */      \
  /* wait<0>. Sim: NaN, in[4t], NaN, in[256+4t], 0; hardware: only the 2nd, 4th and 5th are defined. */   \
  void cp_async_visibility(const float* in, float* out, GpuStream s);                                     \
  /* (8) Shared memory read before it is written, 64 threads per block: out[(b*64+t)*2] from */           \
  /* AMR_SHARED, out[(b*64+t)*2+1] from dynamic shared memory. Sim: all NaN in every block. */            \
  void shared_poison(float* out, int blocks, GpuStream s);                                                \
  /* (9) One warp; shared 16x16 b16 matrix M[r][c] = 16r + c. Per lane 14 registers: x1 (rows 0-7, */     \
  /* cols 0-7), x2 (+ cols 8-15), x4 (the four 8x8 quadrants: rows 0-7/8-15 x cols 0-7, then 8-15), */    \
  /* then the same three with .trans. Lanes whose address the instruction ignores point elsewhere. */     \
  void ldmatrix_layouts(uint32_t* out, GpuStream s);                                                      \
  /* (10) One warp builds fragments from the PTX formulas: d[0..127] = A*B + C (bf16 m16n8k16), */        \
  /* d[128..255] the same in f16, d[256..383] = A[:, :8] * B[:8, :] + C (bf16 m16n8k8). A: 16x16 */       \
  /* row-major [m][k], B: 16x8 [k][n], C and each D: 16x8 row-major f32. */                              \
  void mma_layouts(const uint16_t* a_bf16, const uint16_t* b_bf16, const uint16_t* a_f16,                 \
                   const uint16_t* b_f16, const float* c, float* d, GpuStream s);

namespace sim {
namespace selftest {
AMR_SELFTEST_DECLARATIONS
}  // namespace selftest
}  // namespace sim

namespace cuda {
namespace selftest {
AMR_SELFTEST_DECLARATIONS
}  // namespace selftest
}  // namespace cuda

#undef AMR_SELFTEST_DECLARATIONS
}  // namespace amr
