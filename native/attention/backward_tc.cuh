// bf16 attention backward on the tensor cores (mma.m16n8k16, bf16 operands, f32 accumulation), FlashAttention-2
// style: the probabilities are recomputed from the forward's logsumexp instead of stored.
//  - dkv_tc_kernel: a block owns 64 keys (16 per warp) of one (batch, head, window) and walks every query tile:
//    Sᵀ = K·Qᵀ, Pᵀ = exp(scale·Sᵀ + biasᵀ − lse), dPᵀ = V·dOᵀ, dSᵀ = Pᵀ∘(dPᵀ − delta), dV += Pᵀ·dO, dK += dSᵀ·Q.
//    Working on the transposes puts a warp's keys on the C fragment rows, so Pᵀ and dSᵀ go from accumulators to
//    A operands in registers, and each dK/dV row is owned by one warp: no cross-warp reduction, no atomics.
//  - dq_tc_kernel: a block owns 64 queries (16 per warp) and walks the key tiles: S, dP and dS again, dQ += dS·K.
//    Recomputing S and dP costs two of the seven products, but keeps dQ free of float atomics (so the result is
//    the same bits every run) and needs no L×L buffer of dS.
// P and dS are rounded to bf16 as mma operands, as the forward rounds P; S, dP, dS for the bias gradient and all
// sums stay f32. The bias gradient's per-(batch, window) partial is written by dkv_tc_kernel, each element once,
// and summed in a fixed order by bias_sum_kernel. SAM's relative position terms are added to S in both kernels; their
// gradients (per-query sums of dS) are taken by dq_tc_kernel, which owns the queries (see REL there).
#pragma once
#include "fragments.cuh"

namespace amr {
namespace attention {
namespace AMR_GPU_NS {

constexpr int kStaticSmem = 48 * 1024;

// Shared memory of dkv_tc_kernel with br queries per tile: the block's 64 keys of K and V, br rows of Q and dO
// (bf16, padded rows), and br rows of statistics.
constexpr int dkv_tc_smem(int hd, int br) { return (2 * kTcRows + 2 * br) * (hd + kTcPad) * 2 + 2 * br * 4; }
// Queries per tile of dkv_tc_kernel: 32 where everything fits in 48 KiB of static shared memory (up to head dim
// 112), else 16 (at 128 the 64 keys of K and V alone take 34 KiB).
constexpr int dkv_queries(int hd) { return dkv_tc_smem(hd, 32) <= kStaticSmem ? 32 : 16; }
constexpr int kDqKeys = 32;  // keys per K/V tile of dq_tc_kernel, double-buffered

// The largest head dim the tensor-core backward runs; the SIMT kernels take bf16 above it. At 144 dkv_tc_kernel's
// tiles (64 keys of K and V, 16 queries of Q and dO) no longer fit 48 KiB of static shared memory, and its dK and
// dV accumulators take head dim floats per thread (256 at 256, beyond the 255 registers a thread has, before any
// fragment): larger dims need dynamic shared memory and a different split of the work (fewer keys per warp, or dK
// and dV in separate passes), not just a bigger template.
constexpr int kTcBackwardMaxHeadDim = 128;

template <int HD>
__global__ void __launch_bounds__(kTcThreads)
    dkv_tc_kernel(uint16_t* dqkv, float* partial, const uint16_t* dout, const uint16_t* qkv, const float* lse,
                  const float* delta, const uint16_t* bias, const uint16_t* rel_h, const uint16_t* rel_w, Geometry g) {
  constexpr int W = HD + kTcPad, BR = dkv_queries(HD), NB = HD / 8;
  AMR_SHARED(__align__(16) uint16_t, ks, [kTcRows][W]);
  AMR_SHARED(__align__(16) uint16_t, vs, [kTcRows][W]);
  AMR_SHARED(__align__(16) uint16_t, qs, [BR][W]);
  AMR_SHARED(__align__(16) uint16_t, gs, [BR][W]);  // dO
  AMR_SHARED(float, ls, [BR]);
  AMR_SHARED(float, dls, [BR]);
  static_assert(dkv_tc_smem(HD, BR) <= kStaticSmem, "dK/dV tiles exceed 48 KiB");
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tig = lane & 3;
  const int64_t key0 = blockIdx.x * (int64_t)kTcRows;
  const int kr = warp * 16;                           // the warp's first key in the block's tile
  const int64_t j0 = key0 + kr + gq, j1 = j0 + 8;     // this lane's two keys
  const bool vj0 = j0 < L, vj1 = j1 < L;
  const bool active = key0 + kr < L;                  // warp-uniform: a warp with no key in range only stages
  const int64_t stat0 = ((b * g.heads + h) * nw + w) * L;
  float* part = partial ? partial + (bw * g.heads + h) * L * L : nullptr;

  stage_rows_async<kTcRows, HD>(ks, qkv, g, b, h, w, 1, key0);
  stage_rows_async<kTcRows, HD>(vs, qkv, g, b, h, w, 2, key0);
  float dk[NB][4], dv[NB][4];
  for (int n = 0; n < NB; ++n)
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  for (int64_t i0 = 0; i0 < L; i0 += BR) {
    __syncthreads();  // every warp is done with the previous query tile
    stage_rows_async<BR, HD>(qs, qkv, g, b, h, w, 0, i0);
    stage_rows_async<BR, HD>(gs, dout, g, b, h, w, kOutPart, i0);
    // Zero statistics for out-of-range queries keep dS = p·(dP − delta) at 0·0 there, never 0·NaN.
    for (int r = threadIdx.x; r < BR; r += kTcThreads) {
      const bool valid = i0 + r < L;
      ls[r] = valid ? lse[stat0 + i0 + r] : 0.f;
      dls[r] = valid ? delta[stat0 + i0 + r] : 0.f;
    }
    cp_async_wait_all();  // this thread's copies, K and V included the first time
    __syncthreads();      // everyone's
    if (!active) continue;

    float st[BR / 8][4], dpt[BR / 8][4];
    for (int nb = 0; nb < BR / 8; ++nb)
      for (int e = 0; e < 4; ++e) st[nb][e] = dpt[nb][e] = 0.f;
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t ka[4], va[4];
      ldmatrix_a(ka, ks, kr, kk * 16, lane);
      ldmatrix_a(va, vs, kr, kk * 16, lane);
      mma_tile<kBt>(st, ka, qs, kk * 16, lane);
      mma_tile<kBt>(dpt, va, gs, kk * 16, lane);
    }
    AMR_UNROLL
    for (int nb = 0; nb < BR / 8; ++nb)
      for (int e = 0; e < 4; ++e) {
        const int ii = nb * 8 + 2 * tig + (e & 1);  // the query (C fragment column) within the tile
        const int64_t i = i0 + ii, j = e < 2 ? j0 : j1;
        const bool valid = i < L && (e < 2 ? vj0 : vj1);
        const float s = st[nb][e] * g.scale + (bias && valid ? bf16_to_f32(bias[(h * L + i) * L + j]) : 0.f) +
                        (rel_h && valid ? rel_pos_at(rel_h, rel_w, g, stat0 + i, j) : 0.f);
        // p = 0 off range: zero-filled rows would otherwise score 0, not −inf.
        const float p = valid ? expf(s - ls[ii]) : 0.f;
        const float ds = p * (dpt[nb][e] - dls[ii]);
        if (part && valid) part[i * L + j] = ds;
        st[nb][e] = p;
        dpt[nb][e] = ds;
      }
    AMR_UNROLL
    for (int kc = 0; kc < BR / 16; ++kc) {
      uint32_t pa[4], sa[4];
      c_to_a(pa, st[2 * kc], st[2 * kc + 1]);
      c_to_a(sa, dpt[2 * kc], dpt[2 * kc + 1]);
      mma_tile<kB>(dv, pa, gs, kc * 16, lane);
      mma_tile<kB>(dk, sa, qs, kc * 16, lane);
    }
  }
  if (!active) return;
  const int64_t ok0 = vj0 ? row_offset(g, b, h, w, 1, j0) : 0, ok1 = vj1 ? row_offset(g, b, h, w, 1, j1) : 0;
  const int64_t ov0 = vj0 ? row_offset(g, b, h, w, 2, j0) : 0, ov1 = vj1 ? row_offset(g, b, h, w, 2, j1) : 0;
  for (int n = 0; n < NB; ++n) {
    const int c = n * 8 + 2 * tig;
    if (vj0) {
      dqkv[ok0 + c] = f32_to_bf16(dk[n][0] * g.scale);
      dqkv[ok0 + c + 1] = f32_to_bf16(dk[n][1] * g.scale);
      dqkv[ov0 + c] = f32_to_bf16(dv[n][0]);
      dqkv[ov0 + c + 1] = f32_to_bf16(dv[n][1]);
    }
    if (vj1) {
      dqkv[ok1 + c] = f32_to_bf16(dk[n][2] * g.scale);
      dqkv[ok1 + c + 1] = f32_to_bf16(dk[n][3] * g.scale);
      dqkv[ov1 + c] = f32_to_bf16(dv[n][2]);
      dqkv[ov1 + c + 1] = f32_to_bf16(dv[n][3]);
    }
  }
}

// REL: with relative position terms. A query's dS row is spread over the 4 lanes of a quad (and two rows per lane),
// so for dh and dw each warp puts its 16 × 32 tile of dS in shared memory and lane r < 16 walks row r's keys in
// order, as the SIMT dQ kernel does: dh runs in a register over a grid row's keys, dw accumulates in the query's
// slice of dw_acc. A template flag, so that attention without the terms keeps its shared memory and branches.
template <int HD, bool REL>
__global__ void __launch_bounds__(kTcThreads)
    dq_tc_kernel(uint16_t* dqkv, uint16_t* drel_h, uint16_t* drel_w, float* dw_acc, const uint16_t* dout,
                 const uint16_t* qkv, const float* lse, const float* delta, const uint16_t* bias,
                 const uint16_t* rel_h, const uint16_t* rel_w, Geometry g) {
  constexpr int W = HD + kTcPad, NB = HD / 8, KB = kDqKeys / 8, DSR = REL ? 16 : 1;
  AMR_SHARED(__align__(16) uint16_t, ks, [2][kDqKeys][W]);
  AMR_SHARED(__align__(16) uint16_t, vs, [2][kDqKeys][W]);
  AMR_SHARED(float, dss, [kTcWarps][DSR][kDqKeys]);  // REL: each warp's dS tile
  static_assert(2 * 2 * kDqKeys * W * 2 + kTcWarps * DSR * kDqKeys * 4 <= kStaticSmem, "dQ tiles exceed 48 KiB");
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tig = lane & 3;
  const int64_t row0 = blockIdx.x * (int64_t)kTcRows + warp * 16;
  const int64_t r0 = row0 + gq, r1 = r0 + 8;  // this lane's two queries
  const bool v0 = r0 < L, v1 = r1 < L;
  const bool active = row0 < L;  // warp-uniform, as in dkv_tc_kernel
  const int64_t oq0 = v0 ? row_offset(g, b, h, w, 0, r0) : 0, oq1 = v1 ? row_offset(g, b, h, w, 0, r1) : 0;
  const int64_t og0 = v0 ? row_offset(g, b, h, w, kOutPart, r0) : 0;
  const int64_t og1 = v1 ? row_offset(g, b, h, w, kOutPart, r1) : 0;
  uint32_t qa[HD / 16][4], ga[HD / 16][4];
  load_a_rows<HD>(qa, qkv, oq0, v0, oq1, v1, tig);
  load_a_rows<HD>(ga, dout, og0, v0, og1, v1, tig);
  const int64_t stat0 = ((b * g.heads + h) * nw + w) * L;
  const float l0 = v0 ? lse[stat0 + r0] : 0.f, l1 = v1 ? lse[stat0 + r1] : 0.f;
  const float d0 = v0 ? delta[stat0 + r0] : 0.f, d1 = v1 ? delta[stat0 + r1] : 0.f;
  float dq[NB][4];
  for (int n = 0; n < NB; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
  // REL: lane < 16 owns query row0 + lane's dh run and dw slice.
  const int64_t rrow = row0 + lane;
  const bool rel_row = REL && lane < 16 && rrow < L;
  float* dwr = rel_row ? dw_acc + (stat0 + rrow) * g.rel_gw : nullptr;
  float dh = 0.f;
  int64_t key_row = 0;

  const int64_t tiles = (L + kDqKeys - 1) / kDqKeys;
  stage_rows_async<kDqKeys, HD>(ks[0], qkv, g, b, h, w, 1, 0);
  stage_rows_async<kDqKeys, HD>(vs[0], qkv, g, b, h, w, 2, 0);
  cp_async_commit();
  for (int64_t t = 0; t < tiles; ++t) {
    const int stage = (int)(t & 1);
    const int64_t key0 = t * kDqKeys;
    if (t + 1 < tiles) {
      stage_rows_async<kDqKeys, HD>(ks[stage ^ 1], qkv, g, b, h, w, 1, key0 + kDqKeys);
      stage_rows_async<kDqKeys, HD>(vs[stage ^ 1], qkv, g, b, h, w, 2, key0 + kDqKeys);
    }
    cp_async_commit();  // possibly empty, so that wait<1> always means "tile t has landed"
    cp_async_wait<1>();
    __syncthreads();
    if (active) {
      float s[KB][4], dp[KB][4];
      for (int nb = 0; nb < KB; ++nb)
        for (int e = 0; e < 4; ++e) s[nb][e] = dp[nb][e] = 0.f;
      for (int kk = 0; kk < HD / 16; ++kk) {
        mma_tile<kBt>(s, qa[kk], ks[stage], kk * 16, lane);
        mma_tile<kBt>(dp, ga[kk], vs[stage], kk * 16, lane);
      }
      AMR_UNROLL
      for (int nb = 0; nb < KB; ++nb)
        for (int e = 0; e < 4; ++e) {
          const int64_t i = e < 2 ? r0 : r1, j = key0 + nb * 8 + 2 * tig + (e & 1);
          const bool valid = (e < 2 ? v0 : v1) && j < L;
          float sc = s[nb][e] * g.scale + (bias && valid ? bf16_to_f32(bias[(h * L + i) * L + j]) : 0.f);
          if (REL && valid) sc += rel_pos_at(rel_h, rel_w, g, stat0 + i, j);
          const float p = valid ? expf(sc - (e < 2 ? l0 : l1)) : 0.f;
          s[nb][e] = p * (dp[nb][e] - (e < 2 ? d0 : d1));  // dS
        }
      if constexpr (REL) {
        AMR_UNROLL
        for (int nb = 0; nb < KB; ++nb)
          for (int e = 0; e < 4; ++e) dss[warp][gq + (e < 2 ? 0 : 8)][nb * 8 + 2 * tig + (e & 1)] = s[nb][e];
        __syncwarp();
        if (rel_row)
          for (int jj = 0; jj < kDqKeys && key0 + jj < L; ++jj) {
            const int64_t j = key0 + jj, y = j / g.rel_gw, c = j % g.rel_gw;
            const float ds = dss[warp][lane][jj];
            if (y != key_row) {
              drel_h[(stat0 + rrow) * g.rel_gh + key_row] = f32_to_bf16(dh);
              dh = 0.f;
              key_row = y;
            }
            dh += ds;
            dwr[c] = y ? dwr[c] + ds : ds;  // grid row 0 starts every column's sum
          }
        __syncwarp();  // the tile is read before the next one overwrites it
      }
      AMR_UNROLL
      for (int kc = 0; kc < kDqKeys / 16; ++kc) {
        uint32_t sa[4];
        c_to_a(sa, s[2 * kc], s[2 * kc + 1]);
        mma_tile<kB>(dq, sa, ks[stage], kc * 16, lane);
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration refills it
  }
  if (rel_row) {
    drel_h[(stat0 + rrow) * g.rel_gh + key_row] = f32_to_bf16(dh);
    for (int64_t c = 0; c < g.rel_gw; ++c) drel_w[(stat0 + rrow) * g.rel_gw + c] = f32_to_bf16(dwr[c]);
  }
  for (int n = 0; n < NB; ++n) {
    const int c = n * 8 + 2 * tig;
    if (v0) {
      dqkv[oq0 + c] = f32_to_bf16(dq[n][0] * g.scale);
      dqkv[oq0 + c + 1] = f32_to_bf16(dq[n][1] * g.scale);
    }
    if (v1) {
      dqkv[oq1 + c] = f32_to_bf16(dq[n][2] * g.scale);
      dqkv[oq1 + c + 1] = f32_to_bf16(dq[n][3] * g.scale);
    }
  }
}

}  // namespace AMR_GPU_NS
}  // namespace attention
}  // namespace amr
