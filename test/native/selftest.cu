// Self-test kernels of the GPU emulator, written as ordinary CUDA: built by nvcc for the cuda backend and
// as C++ with AMR_SIM for the sim backend (declarations and expected results: selftest.h). Test code, so it may
// use an op family: the GEMM test runs gemm's production tensor-core tile.
#include "native/runtime/kernel.cuh"
#include "native/runtime/launch.cuh"
#include "native/gemm/mma_tile.cuh"
#include "native/runtime/tensor_core.cuh"
#include "selftest.h"

#include <stdexcept>


namespace amr {
namespace AMR_GPU_NS {
namespace selftest {

namespace {
constexpr unsigned kFull = 0xffffffffu;

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// (1) Block sum.
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFull, v, offset);
  return v;
}

__global__ void block_sum_kernel(const float* __restrict__ x, int n, float* __restrict__ block_sums) {
  AMR_DYNAMIC_SMEM(float, warp_partial);  // one float per warp
  float v = 0.0f;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    v += x[i];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  if (lane == 0) warp_partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? warp_partial[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) block_sums[blockIdx.x] = v;
  }
}

void block_sum(const float* x, int n, float* block_sums, int blocks, int threads, GpuStream s) {
  require(threads >= 32 && threads <= 1024 && threads % 32 == 0, "block_sum: threads must be a multiple of 32 in [32, 1024]");
  require(blocks > 0 && n >= 0, "block_sum: bad size");
  launch("selftest_block_sum", block_sum_kernel, dim3(blocks), dim3(threads), (threads / 32) * sizeof(float), s, x, n,
         block_sums);
}

// ---------------------------------------------------------------------------------------------
// (2) Neighbour exchange through shared memory, with and without the barrier.
// AMR_SHARED: poisoned per block under sim, so the early reader sees NaN, never a stale value that might
// happen to be right.
template <bool kBarrier>
__global__ void neighbor_exchange_kernel(const float* __restrict__ in, float* __restrict__ out) {
  AMR_SHARED(float, buf, [1024]);
  const int t = threadIdx.x, T = blockDim.x;
  const long long base = (long long)blockIdx.x * T;
  buf[t] = in[base + t];
  if (kBarrier) __syncthreads();
  out[base + t] = buf[(t + 1) % T];
}

void neighbor_exchange(const float* in, float* out, int blocks, int threads, bool use_barrier, GpuStream s) {
  require(threads > 0 && threads <= 1024 && blocks > 0, "neighbor_exchange: bad size");
  if (use_barrier)
    launch("selftest_neighbor_exchange", neighbor_exchange_kernel<true>, dim3(blocks), dim3(threads), 0, s, in, out);
  else
    launch("selftest_neighbor_exchange_no_barrier", neighbor_exchange_kernel<false>, dim3(blocks), dim3(threads), 0, s,
           in, out);
}

// ---------------------------------------------------------------------------------------------
// (3) Tiled bf16 GEMM: the production tensor-core tile (native/gemm/mma_tile.cuh) storing plain f32.
struct StoreF32 {
  float* c;
  int n;
  __device__ __forceinline__ void operator()(int row, int col, float v) const { c[(long long)row * n + col] = v; }
};

using SelftestTile = ::amr::gemm::AMR_GPU_NS::SmallMmaTile;

template <bool kBKN>
__global__ void __launch_bounds__(SelftestTile::kThreads)
    gemm_bf16_kernel(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B, float* __restrict__ C,
                     int M, int N, int K) {
  ::amr::gemm::AMR_GPU_NS::mma_gemm_tile<SelftestTile, kBKN>(A, B, M, N, K, StoreF32{C, N});
}

void gemm_bf16(const uint16_t* A, const uint16_t* B, float* C, int M, int N, int K, bool b_is_kn, GpuStream s) {
  require(M > 0 && N > 0 && K >= 0, "gemm_bf16: bad size");
  require(K % 8 == 0, "gemm_bf16: K must be a multiple of 8 (16-byte cp.async rows)");
  require(!b_is_kn || N % 8 == 0, "gemm_bf16: N must be a multiple of 8 when B is [K,N]");
  require(((reinterpret_cast<uintptr_t>(A) | reinterpret_cast<uintptr_t>(B)) & 15u) == 0,
          "gemm_bf16: A and B must be 16-byte aligned");
  const dim3 grid((N + SelftestTile::kBN - 1) / SelftestTile::kBN, (M + SelftestTile::kBM - 1) / SelftestTile::kBM);
  const auto* a = reinterpret_cast<const __nv_bfloat16*>(A);
  const auto* b = reinterpret_cast<const __nv_bfloat16*>(B);
  if (b_is_kn)
    launch("selftest_gemm_bf16_nn", gemm_bf16_kernel<true>, grid, dim3(SelftestTile::kThreads), 0, s, a, b, C, M, N, K);
  else
    launch("selftest_gemm_bf16_nt", gemm_bf16_kernel<false>, grid, dim3(SelftestTile::kThreads), 0, s, a, b, C, M, N, K);
}

// ---------------------------------------------------------------------------------------------
// (4) bf16 / f16 rounding.
__global__ void round_trip_kernel(const float* __restrict__ in, int n, uint16_t* bf16_bits, float* bf16_back,
                                  float* bf16_pair, uint16_t* f16_bits, float* f16_back) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __nv_bfloat16 b = __float2bfloat16(in[i]);
  bf16_bits[i] = __bfloat16_as_ushort(b);
  bf16_back[i] = __bfloat162float(b);
  const __nv_bfloat162 pair = __floats2bfloat162_rn(in[i], -in[i]);
  bf16_pair[2 * i] = __low2float(pair);
  bf16_pair[2 * i + 1] = __high2float(pair);
  const __half h = __float2half(in[i]);
  f16_bits[i] = __half_as_ushort(h);
  f16_back[i] = __half2float(h);
}

void round_trip(const float* in, int n, uint16_t* bf16_bits, float* bf16_back, float* bf16_pair, uint16_t* f16_bits,
                float* f16_back, GpuStream s) {
  require(n >= 0, "round_trip: bad size");
  launch("selftest_round_trip", round_trip_kernel, dim3((n + 255) / 256), dim3(256), 0, s, in, n, bf16_bits, bf16_back,
         bf16_pair, f16_bits, f16_back);
}

// ---------------------------------------------------------------------------------------------
// (5) Votes and shuffles; o[k] per thread, see the list below.
__global__ void warp_ops_kernel(const int* __restrict__ in, int* __restrict__ out) {
  const int gid = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  const int v = in[gid];
  int* o = out + (long long)gid * kSelftestWarpOpsOutputs;
  o[0] = (int)__ballot_sync(kFull, v > 0);
  o[1] = __any_sync(kFull, v > 1000);
  o[2] = __all_sync(kFull, v > -1000);
  o[3] = __shfl_up_sync(kFull, v, 1);
  o[4] = __shfl_down_sync(kFull, v, 3);
  o[5] = __shfl_xor_sync(kFull, v, 5);
  o[6] = __shfl_sync(kFull, v, (lane * 7 + 37) % 64);       // source lane >= 32 wraps (low 5 bits)
  o[7] = __shfl_up_sync(kFull, v, 2, 8);
  o[8] = __shfl_down_sync(kFull, v, 1, 16);
  o[9] = __shfl_xor_sync(kFull, v, 4, 4);                   // lanes with bit 2 clear keep their own value
  o[10] = __shfl_sync(kFull, v, lane + 3, 8);
  o[11] = __float_as_int(__shfl_xor_sync(kFull, (float)v * 0.5f, 1));
  o[12] = (int)__ballot_sync(lane < 16 ? 0x0000ffffu : 0xffff0000u, v & 1);  // two half-warp groups
  o[13] = __syncthreads_count(v > 0);
}

void warp_ops(const int* in, int* out, int blocks, int threads, GpuStream s) {
  require(blocks > 0 && threads >= 32 && threads <= 1024 && threads % 32 == 0, "warp_ops: bad size");
  launch("selftest_warp_ops", warp_ops_kernel, dim3(blocks), dim3(threads), 0, s, in, out);
}

// ---------------------------------------------------------------------------------------------
// (6) Kernels that must stop with an error under sim (never run them on a GPU).
__global__ void partial_barrier_kernel(int* out) {
  const int t = threadIdx.x;
  if (t < (int)blockDim.x / 2) __syncthreads();
  out[t] = t;
}

void partial_barrier(int* out, int threads, GpuStream s) {
  require(threads >= 2 && threads <= 1024, "partial_barrier: bad size");
  launch("selftest_partial_barrier", partial_barrier_kernel, dim3(1), dim3(threads), 0, s, out);
}

__global__ void dynamic_smem_oob_kernel(float* out) {
  AMR_DYNAMIC_SMEM(float, buf);  // blockDim.x floats
  const int t = threadIdx.x;
  buf[t] = (float)t;
  __syncthreads();
  out[t] = buf[t + 1];  // the last thread reads one past the end
}

void dynamic_smem_oob(float* out, int threads, GpuStream s) {
  require(threads >= 1 && threads <= 1024, "dynamic_smem_oob: bad size");
  launch("selftest_dynamic_smem_oob", dynamic_smem_oob_kernel, dim3(1), dim3(threads), threads * sizeof(float), s, out);
}

// ---------------------------------------------------------------------------------------------
// (7) cp.async visibility per group (each thread reads only what it copied itself, so no barrier).
__global__ void cp_async_visibility_kernel(const float* __restrict__ in, float* __restrict__ out) {
  AMR_SHARED(__align__(16) float, buf, [3][64 * 4]);
  const int t = threadIdx.x;
  float* o = out + 5 * t;
  cp_async_16(&buf[0][4 * t], in + 4 * t);
  cp_async_commit();
  cp_async_16(&buf[1][4 * t], in + 256 + 4 * t);
  cp_async_16_zfill(&buf[2][4 * t], in, false);
  cp_async_commit();
  o[0] = buf[0][4 * t];
  cp_async_wait<1>();
  o[1] = buf[0][4 * t];
  o[2] = buf[1][4 * t];
  cp_async_wait<0>();
  o[3] = buf[1][4 * t];
  o[4] = buf[2][4 * t];
}

void cp_async_visibility(const float* in, float* out, GpuStream s) {
  launch("selftest_cp_async_visibility", cp_async_visibility_kernel, dim3(1), dim3(64), 0, s, in, out);
}

// ---------------------------------------------------------------------------------------------
// (8) Shared memory is poisoned at the start of every block (sim).
__global__ void shared_poison_kernel(float* out) {
  AMR_SHARED(float, stat, [64]);
  AMR_DYNAMIC_SMEM(float, dyn);
  const int t = threadIdx.x;
  const long long o = ((long long)blockIdx.x * 64 + t) * 2;
  out[o] = stat[t];
  out[o + 1] = dyn[t];
  __syncthreads();
  stat[t] = 1.0f;  // must not leak into the next block
  dyn[t] = 2.0f;
}

void shared_poison(float* out, int blocks, GpuStream s) {
  require(blocks > 0, "shared_poison: bad size");
  launch("selftest_shared_poison", shared_poison_kernel, dim3(blocks), dim3(64), 64 * sizeof(float), s, out);
}

// ---------------------------------------------------------------------------------------------
// (9) ldmatrix layouts.
__global__ void ldmatrix_layouts_kernel(uint32_t* out) {
  AMR_SHARED(__align__(16) uint16_t, M, [16][16]);
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) M[i / 16][i % 16] = (uint16_t)i;
  __syncwarp();
  const uint16_t* decoy = &M[15][8];  // for lanes whose address the instruction does not use
  const uint16_t* x1 = lane < 8 ? &M[lane][0] : decoy;
  const uint16_t* x2 = lane < 16 ? &M[lane & 7][(lane >> 3) * 8] : decoy;
  const uint16_t* x4 = &M[lane & 15][(lane >> 4) * 8];
  uint32_t r[kSelftestLdmatrixRegs];
  ldmatrix_x1(r + 0, x1);
  ldmatrix_x2(r + 1, x2);
  ldmatrix_x4(r + 3, x4);
  ldmatrix_x1_trans(r + 7, x1);
  ldmatrix_x2_trans(r + 8, x2);
  ldmatrix_x4_trans(r + 10, x4);
  for (int i = 0; i < kSelftestLdmatrixRegs; ++i) out[lane * kSelftestLdmatrixRegs + i] = r[i];
}

void ldmatrix_layouts(uint32_t* out, GpuStream s) {
  launch("selftest_ldmatrix_layouts", ldmatrix_layouts_kernel, dim3(1), dim3(32), 0, s, out);
}

// ---------------------------------------------------------------------------------------------
// (10) mma layouts: fragments built straight from the PTX ISA formulas (groupID g, threadID_in_group t).
__device__ __forceinline__ uint32_t pack2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

__global__ void mma_layouts_kernel(const uint16_t* __restrict__ ab, const uint16_t* __restrict__ bb,
                                   const uint16_t* __restrict__ ah, const uint16_t* __restrict__ bh,
                                   const float* __restrict__ c, float* __restrict__ d) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  uint32_t a_bf[4], a_h[4], b_bf[2], b_h[2], a8[2], b8[1];
  float cf[4], d0[4], d1[4], d2[4];
  for (int r = 0; r < 4; ++r) {  // register r = elements a_{2r}, a_{2r+1}: row g (+8 for odd r), col 2t (+8 for r >= 2)
    const int row = g + ((r & 1) ? 8 : 0), col = 2 * t + (r >= 2 ? 8 : 0);
    a_bf[r] = pack2(ab[row * 16 + col], ab[row * 16 + col + 1]);
    a_h[r] = pack2(ah[row * 16 + col], ah[row * 16 + col + 1]);
  }
  for (int r = 0; r < 2; ++r) {  // register r = b_{2r}, b_{2r+1}: k = 2t + 8r and 2t + 8r + 1, n = g
    const int k = 2 * t + 8 * r;
    b_bf[r] = pack2(bb[k * 8 + g], bb[(k + 1) * 8 + g]);
    b_h[r] = pack2(bh[k * 8 + g], bh[(k + 1) * 8 + g]);
  }
  for (int r = 0; r < 2; ++r) a8[r] = pack2(ab[(g + 8 * r) * 16 + 2 * t], ab[(g + 8 * r) * 16 + 2 * t + 1]);
  b8[0] = pack2(bb[(2 * t) * 8 + g], bb[(2 * t + 1) * 8 + g]);
  for (int i = 0; i < 4; ++i) cf[i] = c[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)];
  mma_m16n8k16_bf16(d0, a_bf, b_bf, cf);
  mma_m16n8k16_f16(d1, a_h, b_h, cf);
  mma_m16n8k8_bf16(d2, a8, b8, cf);
  for (int i = 0; i < 4; ++i) {
    const int idx = (g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1);
    d[idx] = d0[i];
    d[128 + idx] = d1[i];
    d[256 + idx] = d2[i];
  }
}

void mma_layouts(const uint16_t* a_bf16, const uint16_t* b_bf16, const uint16_t* a_f16, const uint16_t* b_f16,
                 const float* c, float* d, GpuStream s) {
  launch("selftest_mma_layouts", mma_layouts_kernel, dim3(1), dim3(32), 0, s, a_bf16, b_bf16, a_f16, b_f16, c, d);
}

}  // namespace selftest
}  // namespace AMR_GPU_NS
}  // namespace amr
