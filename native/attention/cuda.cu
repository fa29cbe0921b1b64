// Flash-style attention (SIMT, f32 math): one block per (query or key tile, head, batch·window), one thread per row.
// K/V (or Q/dO) tiles are staged in shared memory; the softmax is online with a running max and sum in f32. The
// backward recomputes the probabilities from the saved logsumexp: dQ per query tile, dK/dV per key tile (no
// atomics, deterministic), and the bias gradient as per-(batch, window) partials summed in a fixed order. SAM's
// relative position terms are gathered per score (rel_pos_at), and their gradients are per-query sums the dQ kernels
// (SIMT and tensor-core) take as they walk a query's keys in order.
// bf16 runs on the tensor cores where the head dim allows (forward_tc_kernel below, the backward in
// backward_tc.cuh; see the dispatch at the end for which dims), the SIMT kernels everywhere else.
#include <string>
#include <type_traits>

#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "attention.h"
#include "backward_tc.cuh"
#include "fragments.cuh"

namespace amr {
namespace attention {
namespace AMR_GPU_NS {

namespace {

constexpr int kRows = 64;  // rows (threads) per block

// The SIMT kernels keep a whole row per thread in registers, so their head dim is a template parameter: a capacity
// C, the head dim rounded up to a multiple of 16 (of 32 above 128; simt_capacity below). Channels from
// g.head_dim to C are zero in every register row and staged tile, so they add exact zeros to each dot product, in
// the same order, and are never stored: the result is the one a kernel of the exact dim would give. Twelve
// capacities instead of 32 head dims keep this file's build time and the binary small; the padding costs at most
// 8 channels up to 128 (half the work only at dim 8, where there is little) and 24 of at least 160 above.
constexpr int simt_capacity(int64_t hd) { return hd <= 128 ? (int)(hd + 15) / 16 * 16 : (int)(hd + 31) / 32 * 32; }

// Staged rows per shared-memory tile: 32 while two f32 tiles of C channels (and the dK/dV kernel's two rows of
// statistics) fit the 48 KiB of static shared memory, 16 above (C > 160).
constexpr int simt_tile(int hd) { return 2 * 32 * hd * 4 + 2 * 32 * 4 <= kStaticSmem ? 32 : 16; }

// Element d of a row of g.head_dim channels starting at o, as f32; zero in the padding (d >= g.head_dim).
template <typename T>
__device__ float load_padded(const T* x, int64_t o, int d, const Geometry& g) {
  return d < g.head_dim ? Elem<T>::load(x, o + d) : 0.f;
}

template <typename T>
__device__ float bias_at(const T* bias, int64_t h, int64_t L, int64_t i, int64_t j) {
  return bias ? Elem<T>::load(bias, (h * L + i) * L + j) : 0.f;
}

// The relative position term of score (statistics row `row`, key j), or 0 without one.
template <typename T>
__device__ float rel_at(const T* rel_h, const T* rel_w, const Geometry& g, int64_t row, int64_t j) {
  return rel_h ? rel_pos_at(rel_h, rel_w, g, row, j) : 0.f;
}

// Keys and values of tokens j0 .. j0+nk of one window into shared memory, as f32, zero-padded to HD channels; the
// whole block takes part.
template <typename T, int HD>
__device__ void stage_kv_tile(float (*ks)[HD], float (*vs)[HD], const T* qkv, const Geometry& g, int64_t b, int64_t h,
                              int64_t w, int64_t j0, int nk) {
  for (int e = threadIdx.x; e < nk * HD; e += kRows) {
    const int jj = e / HD, d = e % HD;
    const int64_t t = g.token(w, j0 + jj);
    ks[jj][d] = load_padded(qkv, g.qkv_offset(b, t, 1, h), d, g);
    vs[jj][d] = load_padded(qkv, g.qkv_offset(b, t, 2, h), d, g);
  }
}

template <typename T, int HD>
__global__ void forward_kernel(T* out, float* lse, const T* qkv, const T* bias, const T* rel_h, const T* rel_w,
                               Geometry g) {
  constexpr int kTile = simt_tile(HD);
  AMR_SHARED(float, ks, [kTile][HD]);
  AMR_SHARED(float, vs, [kTile][HD]);
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int64_t i = blockIdx.x * (int64_t)kRows + threadIdx.x;
  const bool row = i < L;
  const int64_t stat = ((b * g.heads + h) * nw + w) * L + i;
  float q[HD], acc[HD];
  if (row) {
    const int64_t o = g.qkv_offset(b, g.token(w, i), 0, h);
    for (int d = 0; d < HD; ++d) q[d] = load_padded(qkv, o, d, g);
  }
  for (int d = 0; d < HD; ++d) acc[d] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < L; j0 += kTile) {
    const int nk = (int)(L - j0 < kTile ? L - j0 : kTile);
    __syncthreads();  // the previous tile is no longer read
    stage_kv_tile<T, HD>(ks, vs, qkv, g, b, h, w, j0, nk);
    __syncthreads();
    if (row) {
      float s[kTile];
      float tm = m;
      for (int jj = 0; jj < nk; ++jj) {
        float dot = 0.f;
        for (int d = 0; d < HD; ++d) dot += q[d] * ks[jj][d];
        s[jj] = dot * g.scale + bias_at(bias, h, L, i, j0 + jj) + rel_at(rel_h, rel_w, g, stat, j0 + jj);
        tm = fmaxf(tm, s[jj]);
      }
      const float corr = expf(m - tm);
      l *= corr;
      for (int d = 0; d < HD; ++d) acc[d] *= corr;
      for (int jj = 0; jj < nk; ++jj) {
        const float p = expf(s[jj] - tm);
        l += p;
        for (int d = 0; d < HD; ++d) acc[d] += p * vs[jj][d];
      }
      m = tm;
    }
  }
  if (row) {
    const int64_t o = g.out_offset(b, g.token(w, i), h);
    const float inv = 1.f / l;
    for (int d = 0; d < HD; ++d)
      if (d < g.head_dim) Elem<T>::store(out, o + d, acc[d] * inv);
    lse[stat] = m + logf(l);
  }
}

// bf16 forward on the tensor cores: 4 warps × 16 query rows per block; S = Q·Kᵀ and O += P·V by mma.m16n8k16 with
// f32 accumulators, online softmax on the S fragments (a row's values sit in the 4 lanes of a quad).
static_assert(kTcRows == kRows, "the tensor-core kernels use the SIMT kernels' grid");
constexpr int kTcKeys = 32;

template <int HD>
__global__ void forward_tc_kernel(uint16_t* out, float* lse, const uint16_t* qkv, const uint16_t* bias,
                                  const uint16_t* rel_h, const uint16_t* rel_w, Geometry g) {
  AMR_SHARED(uint16_t, ks, [kTcKeys][HD + kTcPad]);
  AMR_SHARED(uint16_t, vs, [kTcKeys][HD + kTcPad]);
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tig = lane & 3;
  const int64_t r0 = blockIdx.x * (int64_t)kTcRows + warp * 16 + gq, r1 = r0 + 8;  // this lane's two rows
  const bool v0 = r0 < L, v1 = r1 < L;
  const int64_t stat = ((b * g.heads + h) * nw + w) * L;
  constexpr int KS = HD / 16, NB = HD / 8;
  uint32_t qa[KS][4];
  const int64_t oq0 = v0 ? row_offset(g, b, h, w, 0, r0) : 0, oq1 = v1 ? row_offset(g, b, h, w, 0, r1) : 0;
  load_a_rows<HD>(qa, qkv, oq0, v0, oq1, v1, tig);
  float acc[NB][4];
  for (int n = 0; n < NB; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  for (int64_t j0 = 0; j0 < L; j0 += kTcKeys) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTcKeys * HD; e += kTcThreads) {
      const int jj = e / HD, d = e % HD;
      const bool valid = j0 + jj < L;
      const int64_t t = valid ? g.token(w, j0 + jj) : 0;
      ks[jj][d] = valid ? qkv[g.qkv_offset(b, t, 1, h) + d] : (uint16_t)0;
      vs[jj][d] = valid ? qkv[g.qkv_offset(b, t, 2, h) + d] : (uint16_t)0;
    }
    __syncthreads();
    float sc[kTcKeys / 8][4];
    for (int nb = 0; nb < kTcKeys / 8; ++nb) {
      float c[4] = {0.f, 0.f, 0.f, 0.f};
      for (int kk = 0; kk < KS; ++kk) {
        const int key = nb * 8 + gq, col = kk * 16 + 2 * tig;
        uint32_t bb[2] = {pack_bf16(ks[key][col], ks[key][col + 1]), pack_bf16(ks[key][col + 8], ks[key][col + 9])};
        mma_m16n8k16_bf16(c, qa[kk], bb, c);
      }
      for (int e = 0; e < 4; ++e) {
        const int64_t j = j0 + nb * 8 + 2 * tig + (e & 1);
        const int64_t i = e < 2 ? r0 : r1;
        const bool vi = e < 2 ? v0 : v1;
        sc[nb][e] = j < L ? c[e] * g.scale + (bias && vi ? bf16_to_f32(bias[(h * L + i) * L + j]) : 0.f) +
                                (rel_h && vi ? rel_pos_at(rel_h, rel_w, g, stat + i, j) : 0.f)
                          : -INFINITY;
      }
    }
    float t0 = m0, t1 = m1;
    for (int nb = 0; nb < kTcKeys / 8; ++nb) {
      t0 = fmaxf(t0, fmaxf(sc[nb][0], sc[nb][1]));
      t1 = fmaxf(t1, fmaxf(sc[nb][2], sc[nb][3]));
    }
    for (int off = 1; off < 4; off *= 2) {
      t0 = fmaxf(t0, __shfl_xor_sync(0xffffffffu, t0, off));
      t1 = fmaxf(t1, __shfl_xor_sync(0xffffffffu, t1, off));
    }
    const float c0 = expf(m0 - t0), c1 = expf(m1 - t1);
    m0 = t0;
    m1 = t1;
    float s0 = 0.f, s1 = 0.f;
    for (int nb = 0; nb < kTcKeys / 8; ++nb) {
      sc[nb][0] = expf(sc[nb][0] - t0);
      sc[nb][1] = expf(sc[nb][1] - t0);
      sc[nb][2] = expf(sc[nb][2] - t1);
      sc[nb][3] = expf(sc[nb][3] - t1);
      s0 += sc[nb][0] + sc[nb][1];
      s1 += sc[nb][2] + sc[nb][3];
    }
    for (int off = 1; off < 4; off *= 2) {
      s0 += __shfl_xor_sync(0xffffffffu, s0, off);
      s1 += __shfl_xor_sync(0xffffffffu, s1, off);
    }
    l0 = l0 * c0 + s0;
    l1 = l1 * c1 + s1;
    for (int n = 0; n < NB; ++n) {
      acc[n][0] *= c0;
      acc[n][1] *= c0;
      acc[n][2] *= c1;
      acc[n][3] *= c1;
    }
    for (int kc = 0; kc < kTcKeys / 16; ++kc) {
      uint32_t pa[4];
      c_to_a(pa, sc[2 * kc], sc[2 * kc + 1]);
      const int key = kc * 16 + 2 * tig;
      for (int n = 0; n < NB; ++n) {
        const int ch = n * 8 + gq;
        uint32_t bb[2] = {pack_bf16(vs[key][ch], vs[key + 1][ch]), pack_bf16(vs[key + 8][ch], vs[key + 9][ch])};
        mma_m16n8k16_bf16(acc[n], pa, bb, acc[n]);
      }
    }
  }
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  const int64_t o0 = v0 ? g.out_offset(b, g.token(w, r0), h) : 0, o1 = v1 ? g.out_offset(b, g.token(w, r1), h) : 0;
  for (int n = 0; n < NB; ++n) {
    const int c = n * 8 + 2 * tig;
    if (v0) {
      out[o0 + c] = f32_to_bf16(acc[n][0] * i0);
      out[o0 + c + 1] = f32_to_bf16(acc[n][1] * i0);
    }
    if (v1) {
      out[o1 + c] = f32_to_bf16(acc[n][2] * i1);
      out[o1 + c + 1] = f32_to_bf16(acc[n][3] * i1);
    }
  }
  if (tig == 0 && v0) lse[stat + r0] = m0 + logf(l0);
  if (tig == 0 && v1) lse[stat + r1] = m1 + logf(l1);
}

// delta = rowsum(dO ∘ O), one thread per statistics row.
template <typename T>
__global__ void delta_kernel(float* delta, const T* dout, const T* out, Geometry g) {
  const int64_t L = g.length(), nw = g.windows();
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= g.stat_rows()) return;
  const int64_t i = r % L, w = (r / L) % nw, h = (r / (L * nw)) % g.heads, b = r / (L * nw * g.heads);
  const int64_t o = g.out_offset(b, g.token(w, i), h);
  float s = 0.f;
  for (int64_t d = 0; d < g.head_dim; ++d) s += Elem<T>::load(dout, o + d) * Elem<T>::load(out, o + d);
  delta[r] = s;
}

// dQ for a query tile, and, with relative position terms, their gradients: a thread owns its query's dS row and
// walks the keys in raster order, so dh (a sum over the gw keys of one grid row, which arrive in a run) is kept in
// a register and stored when the run ends, and dw (one sum per grid column, a key of each column per grid row) is
// accumulated in this row's slice of dw_acc, which no other thread touches: fixed order, no atomics.
template <typename T, int HD>
__global__ void dq_kernel(T* dqkv, T* drel_h, T* drel_w, float* dw_acc, const T* dout, const T* qkv, const float* lse,
                          const float* delta, const T* bias, const T* rel_h, const T* rel_w, Geometry g) {
  constexpr int kTile = simt_tile(HD);
  AMR_SHARED(float, ks, [kTile][HD]);
  AMR_SHARED(float, vs, [kTile][HD]);
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int64_t i = blockIdx.x * (int64_t)kRows + threadIdx.x;
  const bool row = i < L;
  const int64_t r = ((b * g.heads + h) * nw + w) * L + i;
  float q[HD], go[HD], dq[HD];
  float li = 0.f, di = 0.f;
  if (row) {
    const int64_t t = g.token(w, i);
    const int64_t oq = g.qkv_offset(b, t, 0, h), oo = g.out_offset(b, t, h);
    for (int d = 0; d < HD; ++d) {
      q[d] = load_padded(qkv, oq, d, g);
      go[d] = load_padded(dout, oo, d, g);
    }
    li = lse[r];
    di = delta[r];
  }
  for (int d = 0; d < HD; ++d) dq[d] = 0.f;
  float* dwr = drel_h && row ? dw_acc + r * g.rel_gw : nullptr;
  float dh = 0.f;       // the running sum over the current grid row's keys
  int64_t key_row = 0;  // that grid row
  for (int64_t j0 = 0; j0 < L; j0 += kTile) {
    const int nk = (int)(L - j0 < kTile ? L - j0 : kTile);
    __syncthreads();
    stage_kv_tile<T, HD>(ks, vs, qkv, g, b, h, w, j0, nk);
    __syncthreads();
    if (row) {
      for (int jj = 0; jj < nk; ++jj) {
        float dot = 0.f, dp = 0.f;
        for (int d = 0; d < HD; ++d) {
          dot += q[d] * ks[jj][d];
          dp += go[d] * vs[jj][d];
        }
        const int64_t j = j0 + jj;
        const float p = expf(dot * g.scale + bias_at(bias, h, L, i, j) + rel_at(rel_h, rel_w, g, r, j) - li);
        const float ds = p * (dp - di);
        for (int d = 0; d < HD; ++d) dq[d] += ds * ks[jj][d];
        if (dwr) {
          const int64_t y = j / g.rel_gw, c = j % g.rel_gw;
          if (y != key_row) {
            Elem<T>::store(drel_h, r * g.rel_gh + key_row, dh);
            dh = 0.f;
            key_row = y;
          }
          dh += ds;
          dwr[c] = y ? dwr[c] + ds : ds;  // grid row 0 starts every column's sum: no zeroing pass
        }
      }
    }
  }
  if (row) {
    const int64_t o = g.qkv_offset(b, g.token(w, i), 0, h);
    for (int d = 0; d < HD; ++d)
      if (d < g.head_dim) Elem<T>::store(dqkv, o + d, dq[d] * g.scale);
    if (dwr) {
      Elem<T>::store(drel_h, r * g.rel_gh + key_row, dh);
      for (int64_t c = 0; c < g.rel_gw; ++c) Elem<T>::store(drel_w, r * g.rel_gw + c, dwr[c]);
    }
  }
}

template <typename T, int HD>
__global__ void dkv_kernel(T* dqkv, float* partial, const T* dout, const T* qkv, const float* lse, const float* delta,
                           const T* bias, const T* rel_h, const T* rel_w, Geometry g) {
  constexpr int kTile = simt_tile(HD);
  AMR_SHARED(float, qs, [kTile][HD]);
  AMR_SHARED(float, gs, [kTile][HD]);
  AMR_SHARED(float, ls, [kTile]);
  AMR_SHARED(float, dls, [kTile]);
  static_assert(2 * kTile * HD * 4 + 2 * kTile * 4 <= kStaticSmem, "dK/dV tiles exceed 48 KiB");
  const int64_t L = g.length(), nw = g.windows();
  const int64_t h = blockIdx.y, bw = blockIdx.z, b = bw / nw, w = bw % nw;
  const int64_t j = blockIdx.x * (int64_t)kRows + threadIdx.x;
  const bool row = j < L;
  float k[HD], v[HD], dk[HD], dv[HD];
  if (row) {
    const int64_t t = g.token(w, j);
    const int64_t ok = g.qkv_offset(b, t, 1, h), ov = g.qkv_offset(b, t, 2, h);
    for (int d = 0; d < HD; ++d) {
      k[d] = load_padded(qkv, ok, d, g);
      v[d] = load_padded(qkv, ov, d, g);
    }
  }
  for (int d = 0; d < HD; ++d) dk[d] = dv[d] = 0.f;
  const int64_t stat0 = ((b * g.heads + h) * nw + w) * L;
  float* part = partial ? partial + (bw * g.heads + h) * L * L : nullptr;
  for (int64_t i0 = 0; i0 < L; i0 += kTile) {
    const int ni = (int)(L - i0 < kTile ? L - i0 : kTile);
    __syncthreads();
    for (int e = threadIdx.x; e < ni * HD; e += kRows) {
      const int ii = e / HD, d = e % HD;
      const int64_t t = g.token(w, i0 + ii);
      qs[ii][d] = load_padded(qkv, g.qkv_offset(b, t, 0, h), d, g);
      gs[ii][d] = load_padded(dout, g.out_offset(b, t, h), d, g);
    }
    for (int ii = threadIdx.x; ii < ni; ii += kRows) {
      ls[ii] = lse[stat0 + i0 + ii];
      dls[ii] = delta[stat0 + i0 + ii];
    }
    __syncthreads();
    if (row) {
      for (int ii = 0; ii < ni; ++ii) {
        float dot = 0.f, dp = 0.f;
        for (int d = 0; d < HD; ++d) {
          dot += qs[ii][d] * k[d];
          dp += gs[ii][d] * v[d];
        }
        const float p =
            expf(dot * g.scale + bias_at(bias, h, L, i0 + ii, j) + rel_at(rel_h, rel_w, g, stat0 + i0 + ii, j) - ls[ii]);
        const float ds = p * (dp - dls[ii]);
        for (int d = 0; d < HD; ++d) {
          dv[d] += p * gs[ii][d];
          dk[d] += ds * qs[ii][d];
        }
        if (part) part[(i0 + ii) * L + j] = ds;
      }
    }
  }
  if (row) {
    const int64_t t = g.token(w, j);
    const int64_t ok = g.qkv_offset(b, t, 1, h), ov = g.qkv_offset(b, t, 2, h);
    for (int d = 0; d < HD; ++d)
      if (d < g.head_dim) {
        Elem<T>::store(dqkv, ok + d, dk[d] * g.scale);
        Elem<T>::store(dqkv, ov + d, dv[d]);
      }
  }
}

// dbias[e] = Σ_k partial[k·n + e], k in order.
template <typename T>
__global__ void bias_sum_kernel(T* dbias, const float* partial, int64_t n, int64_t parts) {
  const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= n) return;
  float s = 0.f;
  for (int64_t k = 0; k < parts; ++k) s += partial[k * n + e];
  Elem<T>::store(dbias, e, s);
}

// Zeroes rows [0, prefix) of every batch of a [B, T, width] tensor.
template <typename T>
__global__ void zero_prefix_kernel(T* x, int64_t tokens, int64_t prefix, int64_t width, int64_t n) {
  const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= n) return;
  const int64_t per = prefix * width;
  Elem<T>::store(x, (e / per) * tokens * width + e % per, 0.f);
}

// f(std::integral_constant<int, HD>) for the HD in First, First + Step, .., Last that equals hd; false if none does.
template <int First, int Last, int Step, typename F>
bool with_dim(int64_t hd, F&& f) {
  if constexpr (First > Last) {
    return false;
  } else {
    if (hd == First) {
      f(std::integral_constant<int, First>());
      return true;
    }
    return with_dim<First + Step, Last, Step>(hd, f);
  }
}

// The SIMT kernels' capacity for head dim hd (simt_capacity: multiples of 16 to 128, of 32 to 256).
template <typename F>
void with_simt_capacity(int64_t hd, const char* op, F&& f) {
  const int c = simt_capacity(hd);
  if (!with_dim<16, 128, 16>(c, f) && !with_dim<160, kMaxHeadDim, 32>(c, f))
    throw Error(std::string(op) + ": no SIMT kernel for head dim " + std::to_string(hd));
}

// The exact head dim of a tensor-core kernel, a multiple of 16 from 16 to Last.
template <int Last, typename F>
void with_tc_dim(int64_t hd, const char* op, F&& f) {
  if (!with_dim<16, Last, 16>(hd, f))
    throw Error(std::string(op) + ": no tensor-core kernel for head dim " + std::to_string(hd));
}

// The tensor-core kernels take 16 channels per mma k-step (m16n8k16), so they run head dims that are multiples of
// 16; the forward up to 256 (its K/V tiles take 33 KiB of shared memory there; above 128 its Q fragments and
// accumulators exceed the register file and part of them spills, still far faster than the SIMT kernel), the
// backward up to kTcBackwardMaxHeadDim (backward_tc.cuh says why). bf16 at other dims takes the SIMT kernels.
bool tc_forward(const Geometry& g) { return g.head_dim % 16 == 0; }
bool tc_backward(const Geometry& g) { return g.head_dim % 16 == 0 && g.head_dim <= kTcBackwardMaxHeadDim; }

// The family header's answer, again here: the kernels are sized for it, and a native caller may skip the binding.
void check_supported(const Geometry& g, DType dt, const char* op) {
  const std::string why = attention_unsupported(g.head_dim, dt, features_of(g));
  if (!why.empty()) throw Error(std::string(op) + ": " + why);
}

// Heads and batch·windows are the grid's y and z, each limited to 65535 blocks.
void check_grid(const Geometry& g, const char* op) {
  if (g.heads > 65535 || g.batch * g.windows() > 65535)
    throw Error(std::string(op) + ": more than 65535 heads or batch·windows per call");
}

unsigned blocks_for(int64_t n, int per) { return static_cast<unsigned>((n + per - 1) / per); }

template <typename T>
void zero_prefix(T* x, const Geometry& g, int64_t width, GpuStream s) {
  if (!g.window || !g.prefix) return;
  const int64_t n = g.batch * g.prefix * width;
  launch("attention_zero_prefix", zero_prefix_kernel<T>, dim3(blocks_for(n, 256)), dim3(256), 0, s, x, g.tokens,
         g.prefix, width, n);
}

}  // namespace

void attention_forward(GpuStream s, void* out, float* lse, const void* qkv, const void* bias, const void* rel_h,
                       const void* rel_w, const Geometry& g, DType dt) {
  check_supported(g, dt, "attention");
  with_float_dtype(dt, "attention", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    zero_prefix(static_cast<T*>(out), g, g.dim(), s);
    check_grid(g, "attention");
    const dim3 grid(blocks_for(g.length(), kRows), (unsigned)g.heads, (unsigned)(g.batch * g.windows()));
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (tc_forward(g)) {
        with_tc_dim<kMaxHeadDim>(g.head_dim, "attention", [&](auto hd) {
          launch("attention_forward_tc", forward_tc_kernel<decltype(hd)::value>, grid, dim3(kTcThreads), 0, s,
                 static_cast<T*>(out), lse, static_cast<const T*>(qkv), static_cast<const T*>(bias),
                 static_cast<const T*>(rel_h), static_cast<const T*>(rel_w), g);
        });
        return;
      }
    }
    with_simt_capacity(g.head_dim, "attention", [&](auto hd) {
      launch("attention_forward", forward_kernel<T, decltype(hd)::value>, grid, dim3(kRows), 0, s,
             static_cast<T*>(out), lse, static_cast<const T*>(qkv), static_cast<const T*>(bias),
             static_cast<const T*>(rel_h), static_cast<const T*>(rel_w), g);
    });
  });
}

void attention_backward(GpuStream s, void* dqkv, void* dbias, void* drel_h, void* drel_w, const void* dout,
                        const void* qkv, const void* out, const float* lse, const void* bias, const void* rel_h,
                        const void* rel_w, const Geometry& g, DType dt, float* scratch) {
  check_supported(g, dt, "attention backward");
  with_float_dtype(dt, "attention backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* dx = static_cast<T*>(dqkv);
    const T* B = static_cast<const T*>(bias);
    float* delta = scratch;
    float* partial = bias ? scratch + g.stat_rows() : nullptr;
    float* dw_acc = rel_h ? scratch + g.stat_rows() + (bias ? g.bias_partial_floats() : 0) : nullptr;
    const T* RH = static_cast<const T*>(rel_h);
    const T* RW = static_cast<const T*>(rel_w);
    T* dRH = static_cast<T*>(drel_h);
    T* dRW = static_cast<T*>(drel_w);
    check_grid(g, "attention backward");
    zero_prefix(dx, g, 3 * g.dim(), s);
    launch("attention_delta", delta_kernel<T>, dim3(blocks_for(g.stat_rows(), 256)), dim3(256), 0, s, delta,
           static_cast<const T*>(dout), static_cast<const T*>(out), g);
    // Query blocks for dQ, key blocks for dK/dV: 64 rows each on both paths.
    const dim3 grid(blocks_for(g.length(), kRows), (unsigned)g.heads, (unsigned)(g.batch * g.windows()));
    const T* gout = static_cast<const T*>(dout);
    const T* x = static_cast<const T*>(qkv);
    bool done = false;
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (tc_backward(g)) {
        with_tc_dim<kTcBackwardMaxHeadDim>(g.head_dim, "attention backward", [&](auto hd) {
          constexpr int HD = decltype(hd)::value;
          if (rel_h)
            launch("attention_dq_tc_relpos", dq_tc_kernel<HD, true>, grid, dim3(kTcThreads), 0, s, dx, dRH, dRW,
                   dw_acc, gout, x, lse, delta, B, RH, RW, g);
          else
            launch("attention_dq_tc", dq_tc_kernel<HD, false>, grid, dim3(kTcThreads), 0, s, dx, dRH, dRW, dw_acc,
                   gout, x, lse, delta, B, RH, RW, g);
          launch("attention_dkv_tc", dkv_tc_kernel<HD>, grid, dim3(kTcThreads), 0, s, dx, partial, gout, x, lse,
                 delta, B, RH, RW, g);
        });
        done = true;
      }
    }
    if (!done)
      with_simt_capacity(g.head_dim, "attention backward", [&](auto hd) {
        constexpr int HD = decltype(hd)::value;
        launch("attention_dq", dq_kernel<T, HD>, grid, dim3(kRows), 0, s, dx, dRH, dRW, dw_acc, gout, x, lse, delta, B,
               RH, RW, g);
        launch("attention_dkv", dkv_kernel<T, HD>, grid, dim3(kRows), 0, s, dx, partial, gout, x, lse, delta, B, RH,
               RW, g);
      });
    if (bias) {
      const int64_t n = g.heads * g.length() * g.length();
      launch("attention_bias_sum", bias_sum_kernel<T>, dim3(blocks_for(n, 256)), dim3(256), 0, s,
             static_cast<T*>(dbias), static_cast<const float*>(partial), n, g.batch * g.windows());
    }
  });
}

}  // namespace AMR_GPU_NS
}  // namespace attention
}  // namespace amr
