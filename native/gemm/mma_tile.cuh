// The tensor-core GEMM tile shared by the cuda/sim gemm and the emulator's self-test: one block tile of
// C = A · op(B) from bf16 operands, k tiles of 32 in a Stages-deep cp.async pipeline (the copies of the next stages
// are in flight while one is multiplied), fragments loaded with ldmatrix and multiplied with mma.sync m16n8k16 (f32
// accumulation). The epilogue functor receives every in-range (row, col, value) of the tile.
// Requirements: A is [M, K] row-major, K % 8 == 0 (16-byte cp.async rows) and 16-byte aligned rows; B is [N, K]
// (kBKN false) or [K, N] with N % 8 == 0 (kBKN true), or any BSource that fills the tile itself (mma_gemm_tile_from);
// A likewise may be any ASource (mma_gemm_tile_ab: conv's weight gradient reads dy's rows image by image).
#pragma once
#include "../runtime/kernel.cuh"
#include "../runtime/tensor_core.cuh"

namespace amr {
namespace gemm {
namespace AMR_GPU_NS {

constexpr int kMmaTileK = 32;
constexpr int kMmaPad = 8;  // one extra 16-byte chunk per smem row: rows stay 16-byte aligned, banks staggered

// A block of WarpsM x WarpsN warps, each computing MI x NI mma tiles (16 x 8 each) of C.
template <int WarpsM, int WarpsN, int MI, int NI, int Stages>
struct MmaTile {
  static_assert(NI % 2 == 0, "B fragments are loaded two n8 tiles per ldmatrix.x4");
  static constexpr int kWarpsN = WarpsN, kMI = MI, kNI = NI, kStages = Stages;
  static constexpr int kBM = WarpsM * MI * 16, kBN = WarpsN * NI * 8, kThreads = 32 * WarpsM * WarpsN;
  static constexpr int kSmemBytes = Stages * (kBM + kBN) * (kMmaTileK + kMmaPad) * 2;
  static_assert(kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB");
};
// 64 x 64, 4 warps of 32 x 32, 3 stages (30 KiB): many blocks for small or skinny products.
using SmallMmaTile = MmaTile<2, 2, 2, 4, 3>;
// 128 x 128, 8 warps of 64 x 32, 2 stages (40 KiB): half the shared-memory traffic per FLOP of the small tile
// (16 mma per 6 ldmatrix.x4 instead of 8 per 4), for products large enough to fill the GPU with it.
using LargeMmaTile = MmaTile<2, 4, 4, 4, 2>;

// Where B's chunks come from: a dense matrix, by cp.async ([N, K], or [K, N] when kBKN). A gather (conv's implicit
// columns) provides the same load() and writes its chunks with plain stores; either way a chunk outside the
// matrix is zeros, and the pipeline's barriers make the stores visible as they do the copies.
template <bool kBKN>
struct DenseB {
  const __nv_bfloat16* B;
  // Tile rows (n for [N, K], k for [K, N]) of the stage buffer bs (row pitch kPitch), 16-byte chunks per thread.
  template <int kBK, int kBN, int kPitch, int kThreads>
  __device__ __forceinline__ void load(__nv_bfloat16* bs, int k0, int n0, int N, int K, int tid) const {
    if constexpr (!kBKN) {
      for (int c = tid; c < kBN * kBK / 8; c += kThreads) {
        const int r = c / (kBK / 8), kc = (c % (kBK / 8)) * 8;
        const bool ok = n0 + r < N && k0 + kc < K;
        cp_async_16_zfill(bs + r * kPitch + kc, ok ? B + (long long)(n0 + r) * K + k0 + kc : B, ok);
      }
    } else {
      for (int c = tid; c < kBK * kBN / 8; c += kThreads) {
        const int r = c / (kBN / 8), nc = (c % (kBN / 8)) * 8;
        const bool ok = k0 + r < K && n0 + nc < N;
        cp_async_16_zfill(bs + r * kPitch + nc, ok ? B + (long long)(k0 + r) * N + n0 + nc : B, ok);
      }
    }
  }
};

// Where A's chunks come from: [M, K] row-major by cp.async, chunks outside the matrix zero-filled (K % 8 == 0, so a
// chunk is wholly inside or wholly outside). Another ASource provides the same load() into the [kBM][kPitch] stage.
struct DenseA {
  const __nv_bfloat16* A;
  template <int kBM, int kBK, int kPitch, int kThreads>
  __device__ __forceinline__ void load(__nv_bfloat16* as, int k0, int m0, int M, int K, int tid) const {
    for (int c = tid; c < kBM * kBK / 8; c += kThreads) {
      const int r = c / (kBK / 8), kc = (c % (kBK / 8)) * 8;
      const bool ok = m0 + r < M && k0 + kc < K;
      cp_async_16_zfill(as + r * kPitch + kc, ok ? A + (long long)(m0 + r) * K + k0 + kc : A, ok);
    }
  }
};

template <typename Tile, bool kBKN, typename ASource, typename BSource, typename Epilogue>
__device__ __forceinline__ void mma_gemm_tile_ab(const ASource& asrc, const BSource& bsrc, int M, int N, int K,
                                                 const Epilogue& epilogue);

template <typename Tile, bool kBKN, typename BSource, typename Epilogue>
__device__ __forceinline__ void mma_gemm_tile_from(const __nv_bfloat16* __restrict__ A, const BSource& bsrc, int M, int N,
                                                   int K, const Epilogue& epilogue) {
  mma_gemm_tile_ab<Tile, kBKN>(DenseA{A}, bsrc, M, N, K, epilogue);
}

template <typename Tile, bool kBKN, typename Epilogue>
__device__ __forceinline__ void mma_gemm_tile(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B,
                                              int M, int N, int K, const Epilogue& epilogue) {
  mma_gemm_tile_from<Tile, kBKN>(A, DenseB<kBKN>{B}, M, N, K, epilogue);
}

template <typename Tile, bool kBKN, typename ASource, typename BSource, typename Epilogue>
__device__ __forceinline__ void mma_gemm_tile_ab(const ASource& asrc, const BSource& bsrc, int M, int N, int K,
                                                 const Epilogue& epilogue) {
  constexpr int kBM = Tile::kBM, kBN = Tile::kBN, kBK = kMmaTileK, kPad = kMmaPad;
  constexpr int kStages = Tile::kStages, kThreads = Tile::kThreads, kMI = Tile::kMI, kNI = Tile::kNI;
  AMR_SHARED(__align__(16) __nv_bfloat16, As, [kStages][kBM][kBK + kPad]);
  // B tile as stored in global memory: [n][k] for B = [N,K], [k][n] for B = [K,N].
  AMR_SHARED(__align__(16) __nv_bfloat16, Bs, [kStages][kBKN ? kBK : kBN][(kBKN ? kBN : kBK) + kPad]);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / Tile::kWarpsN, wn = warp % Tile::kWarpsN;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int ktiles = (K + kBK - 1) / kBK;

  // 16-byte chunks (8 bf16); chunks outside the matrix are zero-filled (K % 8 == 0, and N % 8 == 0 for
  // [K,N], so a chunk is either wholly inside or wholly outside).
  auto load_tile = [&](int kt, int stage) {
    const int k0 = kt * kBK;
    asrc.template load<kBM, kBK, kBK + kPad, kThreads>(&As[stage][0][0], k0, m0, M, K, tid);
    bsrc.template load<kBK, kBN, (kBKN ? kBN : kBK) + kPad, kThreads>(&Bs[stage][0][0], k0, n0, N, K, tid);
  };

  float acc[kMI][kNI][4];
  for (int mi = 0; mi < kMI; ++mi)
    for (int ni = 0; ni < kNI; ++ni)
      for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;

  // One commit group per k tile, empty past the end, so that before iteration kt exactly kStages - 1 + kt groups
  // were committed and wait<kStages - 2> means "tile kt has landed".
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_tile(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    const int stage = kt % kStages;
    cp_async_wait<kStages - 2>();
    // Every thread's copies of tile kt are visible, and every warp is past iteration kt - 1, so the stage it read
    // can be refilled.
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < ktiles) load_tile(next, next % kStages);
    cp_async_commit();
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[kMI][4], b[kNI][2];
      // A 16x16 fragments: lanes 0-15 address rows 0-15 at k, lanes 16-31 the same rows at k + 8.
      for (int mi = 0; mi < kMI; ++mi)
        ldmatrix_x4(a[mi], &As[stage][wm * kMI * 16 + mi * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
      // B fragments for two n8 tiles per x4: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
      // (n 8-15, k 8-15) give b[0], b[1] of tile 2p and of tile 2p+1.
      for (int p = 0; p < kNI / 2; ++p) {
        uint32_t r[4];
        if constexpr (!kBKN)
          ldmatrix_x4(r, &Bs[stage][wn * kNI * 8 + p * 16 + (lane & 7) + ((lane >> 4) << 3)][kk + ((lane >> 3) & 1) * 8]);
        else
          ldmatrix_x4_trans(r, &Bs[stage][kk + (lane & 7) + ((lane >> 3) & 1) * 8][wn * kNI * 8 + p * 16 + (lane >> 4) * 8]);
        b[2 * p][0] = r[0];
        b[2 * p][1] = r[1];
        b[2 * p + 1][0] = r[2];
        b[2 * p + 1][1] = r[3];
      }
      for (int mi = 0; mi < kMI; ++mi)
        for (int ni = 0; ni < kNI; ++ni) mma_m16n8k16_bf16(acc[mi][ni], a[mi], b[ni], acc[mi][ni]);
    }
  }

  for (int mi = 0; mi < kMI; ++mi)
    for (int ni = 0; ni < kNI; ++ni)
      for (int i = 0; i < 4; ++i) {
        const int row = m0 + wm * kMI * 16 + mi * 16 + (lane >> 2) + (i >= 2 ? 8 : 0);
        const int col = n0 + wn * kNI * 8 + ni * 8 + (lane & 3) * 2 + (i & 1);
        if (row < M && col < N) epilogue(row, col, acc[mi][ni][i]);
      }
}

}  // namespace AMR_GPU_NS
}  // namespace gemm
}  // namespace amr
