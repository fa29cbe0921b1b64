// The cpu attention: flash-style blocks per (batch, head, window) problem. Every product is a tile through the
// serial GEMM (Q·Kᵀ, P·V, dO·Vᵀ, Pᵀ·dO, dSᵀ·Q, dS·K), run on the pool thread that owns the tile, and the pool splits
// the work by (problem, query block) or (problem, key block), so batch-1 global attention with few heads still uses
// every thread. The element-wise work between the products (bias, relPos, exp, row maxima and sums) runs along rows in
// fixed-width lanes, so it vectorizes under the build's IEEE order and its sums do not depend on the ISA.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../gemm/cpu_kernel.h"
#include "../runtime/bf16_rows.h"
#include "../runtime/thread_pool.h"
#include "attention.h"
#include "cpu_query_major.h"
#include "cpu_rows.h"

namespace amr {
namespace attention {
namespace cpu {

namespace {

using gemm::cpu::sgemm_serial;

// Query rows per block and keys per tile. 64 query rows amortize a K tile's load over many rows in the product and
// keep the split fine enough for the pool; the forward's wider key tiles mean fewer rescales of the running output.
// The backward's key blocks are also the dK/dV pass's unit of work, so they stay smaller.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kForwardKeys = 256;
constexpr int64_t kBackwardKeys = 128;
// From this length on the query blocks are twice as tall: the product packs each K and V tile once per call, and a
// taller block gives that packing twice the rows (about 10% at L = 1025 forward, 5-7% backward). Shorter problems
// keep 64 rows, so that batch-1 attention at 224 px still gives the pool 4 blocks per head. Chosen by the shape
// alone, so the blocks (and the backward's sums) never depend on the thread count.
constexpr int64_t kLongRows = 512;

// Blocks of about `target` rows covering n evenly (a multiple of 8 each, the last one shorter), so that L = 197
// gives 4 blocks of 56 and a remainder of 29 rather than 3 full blocks and a sliver of 5.
struct Blocks {
  int64_t size, count, n;
  static Blocks queries(int64_t L) { return Blocks(L, L >= kLongRows ? 2 * kQueryBlock : kQueryBlock); }
  Blocks(int64_t n_, int64_t target) : n(n_) {
    const int64_t parts = std::max<int64_t>(1, (n + target - 1) / target);
    size = std::max<int64_t>(8, ((n + parts - 1) / parts + 7) / 8 * 8);
    count = std::max<int64_t>(1, (n + size - 1) / size);
  }
  int64_t begin(int64_t b) const { return b * size; }
  int64_t length(int64_t b) const { return std::min(size, n - b * size); }
};

// Zeroes the prefix rows of a [B, T, width] tensor (window mode leaves them out).
template <typename T>
void zero_prefix(T* x, const Geometry& g, int64_t width) {
  if (!g.window) return;
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t t = 0; t < g.prefix; ++t)
      for (int64_t c = 0; c < width; ++c) Elem<T>::store(x, (b * g.tokens + t) * width + c, 0.f);
}

// f32 copy of n elements of src from offset o: src itself when it is f32 already, else converted into buf.
template <typename T>
const float* as_f32(std::vector<float>& buf, const T* src, int64_t o, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    (void)buf;
    return src + o;
  } else {
    buf.resize(n);
    bf16_row_to_f32(buf.data(), src + o, n);
    return buf.data();
  }
}

// One (batch, head, window) problem's operands as f32 rows [L, hd]: q, k and v with row stride ld, dO with ld_o;
// delta = rowsum(dO ∘ O). f32 global attention reads them in place from qkv and dout (rows 3D and D apart, which
// the serial product takes as its leading dimensions); window mode's rows are not evenly spaced and bf16 needs
// converting, so there they are gathered once per problem on the thread that uses them, and kept while its
// consecutive work items stay in the same problem.
struct Operands {
  int64_t p = -1, b = 0, h = 0, w = 0;
  const float *q = nullptr, *k = nullptr, *v = nullptr, *go = nullptr;
  int64_t ld = 0, ld_o = 0;
  std::vector<float> rows, go_rows, delta, buf;
};

template <typename T>
void gather_rows(float* dst, const T* src, const Geometry& g, int64_t b, int64_t h, int64_t w, int part) {
  const int64_t L = g.length(), hd = g.head_dim;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t o = part < 0 ? g.out_offset(b, g.token(w, i), h) : g.qkv_offset(b, g.token(w, i), part, h);
    if constexpr (std::is_same_v<T, float>) std::memcpy(dst + i * hd, src + o, size_t(hd) * sizeof(float));
    else bf16_row_to_f32(dst + i * hd, src + o, hd);
  }
}

// Loads problem p's q, k, v and, given dO and O, its dO and delta.
template <typename T>
void load(Operands& o, int64_t p, const T* qkv, const T* dO, const T* O, const Geometry& g) {
  if (o.p == p) return;
  const int64_t nw = g.windows(), L = g.length(), hd = g.head_dim;
  o.p = p;
  o.w = p % nw;
  o.h = (p / nw) % g.heads;
  o.b = p / (nw * g.heads);
  bool in_place = false;
  if constexpr (std::is_same_v<T, float>) {
    if (!g.window) {
      in_place = true;
      o.q = qkv + g.qkv_offset(o.b, 0, 0, o.h);
      o.k = qkv + g.qkv_offset(o.b, 0, 1, o.h);
      o.v = qkv + g.qkv_offset(o.b, 0, 2, o.h);
      o.ld = 3 * g.dim();
      if (dO) {
        o.go = dO + g.out_offset(o.b, 0, o.h);
        o.ld_o = g.dim();
      }
    }
  }
  if (!in_place) {
    o.rows.resize(3 * L * hd);
    for (int part = 0; part < 3; ++part) gather_rows(o.rows.data() + part * L * hd, qkv, g, o.b, o.h, o.w, part);
    o.q = o.rows.data();
    o.k = o.q + L * hd;
    o.v = o.k + L * hd;
    o.ld = hd;
    if (dO) {
      o.go_rows.resize(L * hd);
      gather_rows(o.go_rows.data(), dO, g, o.b, o.h, o.w, -1);
      o.go = o.go_rows.data();
      o.ld_o = hd;
    }
  }
  if (dO) {
    o.delta.resize(L);
    for (int64_t i = 0; i < L; ++i)
      o.delta[i] = dot(o.go + i * o.ld_o, as_f32(o.buf, O, g.out_offset(o.b, g.token(o.w, i), o.h), hd), hd);
  }
}

// Issues L2 prefetches for rows [r0, r1) of problem p's q, k and v (and, given dO, its dO rows): the next problem's
// operands, a share before each query block of the current one. Its rows are 3·D floats apart in qkv, too far for the
// hardware's stream prefetcher, so without this every problem began by waiting on its first touch of K and V in the
// packing (about a tenth of a 224 px forward).
template <typename T>
void prefetch_rows(const T* qkv, const T* dO, const Geometry& g, int64_t p, int64_t r0, int64_t r1) {
  const int64_t nw = g.windows(), w = p % nw, h = (p / nw) % g.heads, b = p / (nw * g.heads);
  const int64_t row_bytes = g.head_dim * int64_t(sizeof(T));
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t t = g.token(w, i);
    for (int part = 0; part < 3; ++part) {
      const char* row = reinterpret_cast<const char*>(qkv + g.qkv_offset(b, t, part, h));
      for (int64_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(row + o, 0, 2);
    }
    if (dO) {
      const char* row = reinterpret_cast<const char*>(dO + g.out_offset(b, t, h));
      for (int64_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(row + o, 0, 2);
    }
  }
}

// The score terms beside Q·Kᵀ: the bias shared by the batch and the relative position terms.
template <typename T>
struct Terms {
  const T* bias;
  const T* rel_h;
  const T* rel_w;
};

// S [ni, nj] (row stride ls) = scale·Q_i·K_jᵀ for query rows i0 .. i0 + ni and keys j0 .. j0 + nj (the scale goes
// in as the product's alpha, so no pass over S applies it).
inline void score_product(float* s, int64_t ls, const Operands& o, const Geometry& g, int64_t i0, int64_t ni,
                          int64_t j0, int64_t nj) {
  sgemm_serial(false, true, ni, nj, g.head_dim, g.scale, o.q + i0 * o.ld, o.ld, o.k + j0 * o.ld, o.ld, 0.f, s, ls);
}

// Adds the bias and relative position terms of query row i, keys j0 .. j0 + nj, to the score row sr.
template <typename T>
void add_terms(float* sr, const Operands& o, const Terms<T>& t, const Geometry& g, int64_t i, int64_t j0,
               int64_t nj, std::vector<float>& buf) {
  const int64_t L = g.length();
  if (t.bias) add_row(sr, as_f32(buf, t.bias, (o.h * L + i) * L + j0, nj), nj);
  if (t.rel_h) {
    // Keys in raster order over the grid: key j is (row j / gw, column j % gw); walk the key rows the tile spans.
    const int64_t gh = g.rel_gh, gw = g.rel_gw, row = o.p * L + i;
    const float* rw = as_f32(buf, t.rel_w, row * gw, gw);
    for (int64_t j = j0; j < j0 + nj;) {
      const int64_t y = j / gw, c = j % gw, n = std::min(gw - c, j0 + nj - j);
      add_rel_span(sr + (j - j0), Elem<T>::load(t.rel_h, row * gh + y), rw + c, n);
      j += n;
    }
  }
}

}  // namespace

// Per query block: the block's scores against one key tile at a time, an online softmax (the running max and sum
// per row; the output so far rescaled when the max grows), the tile's P·V accumulated into the block's output, and
// at the end the division by the sum and the row's logsumexp. Work items are whole problems when there are enough
// of them (K and V tiles packed once per problem), else (problem, query block) pairs so that every thread works.
void attention_forward(GpuStream, void* out, float* lse, const void* qkv_, const void* bias_, const void* rel_h_,
                       const void* rel_w_, const Geometry& g, DType dt) {
  with_float_dtype(dt, "attention", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const Terms<T> terms{static_cast<const T*>(bias_), static_cast<const T*>(rel_h_), static_cast<const T*>(rel_w_)};
    T* O = static_cast<T*>(out);
    const int64_t L = g.length(), hd = g.head_dim;
    const Blocks qb = Blocks::queries(L), kb(L, kForwardKeys);
    const ExpFn exp_rows = softmax_exp();
    zero_prefix(O, g, g.dim());
    // Query rows i0 .. i0 + ni of problem o done: acc [ni, hd] over their sums l, and the logsumexp m + log l.
    auto finish = [&](const Operands& o, int64_t i0, int64_t ni, const float* acc, const float* m, const float* l) {
      for (int64_t r = 0; r < ni; ++r) {
        const int64_t i = i0 + r;
        lse[o.p * L + i] = m[r] + std::log(l[r]);
        const int64_t at = g.out_offset(o.b, g.token(o.w, i), o.h);
        // By the reciprocal, on the vector clones: a division per element (SSE, latency-bound) was about 5% of a
        // windowed forward.
        const float inv = 1.f / l[r];
        if constexpr (std::is_same_v<T, float>) store_scaled_row_portable(O + at, acc + r * hd, hd, inv);
        else
          for (int64_t d = 0; d < hd; ++d) Elem<T>::store(O, at + d, acc[r * hd + d] * inv);
      }
    };
    // One query block of the problem o holds: its scores against one key tile at a time, through K and V as given
    // or, when kt and vt are set, as packed once for the whole problem (the same products, so the same bits).
    struct Scratch {
      std::vector<float> s, acc, m, l, buf;
      gemm::cpu::PackedA q;  // the block's scale·Q, packed once for all its key tiles
    };
    auto run_block = [&](Operands& o, Scratch& w, int64_t i0, int64_t ni, const gemm::cpu::PackedB* kt,
                         const gemm::cpu::PackedB* vt) {
      w.s.resize(qb.size * kb.size);
      w.acc.resize(qb.size * hd);
      w.m.resize(qb.size);
      w.l.resize(qb.size);
      float *s = w.s.data(), *acc = w.acc.data(), *m = w.m.data(), *l = w.l.data();
      if (kt) w.q.pack(false, ni, hd, g.scale, o.q + i0 * o.ld, o.ld);
      for (int64_t t = 0; t < kb.count; ++t) {
        const int64_t j0 = kb.begin(t), nj = kb.length(t);
        if (kt) gemm::cpu::sgemm_serial_packed(w.q, kt[t], 0.f, s, kb.size);
        else score_product(s, kb.size, o, g, i0, ni, j0, nj);
        for (int64_t r = 0; r < ni; ++r) {
          float* sr = s + r * kb.size;
          add_terms(sr, o, terms, g, i0 + r, j0, nj, w.buf);
          const float mt = std::max(t ? m[r] : -INFINITY, row_max(sr, nj));
          const float sum = exp_rows(sr, nj, mt);
          if (t) {
            const float c = exp_nonpositive(m[r] - mt);
            l[r] = l[r] * c + sum;
            if (c != 1.f) scale_row(acc + r * hd, hd, c);
          } else {
            l[r] = sum;
          }
          m[r] = mt;
        }
        if (vt) gemm::cpu::sgemm_serial_packed(false, ni, 1.f, s, kb.size, vt[t], t ? 1.f : 0.f, acc, hd);
        else sgemm_serial(false, false, ni, hd, nj, 1.f, s, kb.size, o.v + j0 * o.ld, o.ld, t ? 1.f : 0.f, acc, hd);
      }
      finish(o, i0, ni, acc, m, l);
    };
    const int64_t problems = g.batch * g.heads * g.windows();
#ifdef AMR_ATTENTION_AVX512
    if (query_major_applies(L)) {
      // Short problems, query-major (cpu_query_major.h): whole problems when there are enough of them, else
      // (problem, query block) items; a thread packs K and V (and transposes the relative terms) once per problem
      // it meets.
      std::vector<float> bias_t;
      if (terms.bias) {
        bias_t.resize(size_t(g.heads * L * L));
        parallel_for(g.heads * L, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {  // row r = (head, query i) of the bias, into column i of bias_t
            const int64_t h = r / L, i = r % L;
            for (int64_t j = 0; j < L; ++j) bias_t[(h * L + j) * L + i] = Elem<T>::load(terms.bias, r * L + j);
          }
        });
      }
      struct Work {
        Operands o;
        QueryMajor w;
        std::vector<float> acc, rel_h, rel_w;
        int64_t packed = -1;
      };
      struct Next {
        int64_t p, block, blocks;
      };
      auto run = [&](Work& k, int64_t p, int64_t i0, int64_t ni, Next next) {
        load(k.o, p, qkv, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), g);
        if (k.packed != p) {
          k.w.pack_keys(k.o.k, k.o.v, k.o.ld, L, hd, g.scale);
          if (terms.rel_h) {
            const int64_t gh = g.rel_gh, gw = g.rel_gw;
            k.rel_h.resize(size_t(gh * L));
            k.rel_w.resize(size_t(gw * L));
            for (int64_t i = 0; i < L; ++i) {
              const int64_t row = p * L + i;
              for (int64_t y = 0; y < gh; ++y) k.rel_h[y * L + i] = Elem<T>::load(terms.rel_h, row * gh + y);
              for (int64_t c = 0; c < gw; ++c) k.rel_w[c * L + i] = Elem<T>::load(terms.rel_w, row * gw + c);
            }
          }
          k.packed = p;
        }
        ColumnTerms ct;
        if (terms.bias) ct.bias = bias_t.data() + k.o.h * L * L;
        if (terms.rel_h) {
          ct.rel_h = k.rel_h.data();
          ct.rel_w = k.rel_w.data();
          ct.gw = g.rel_gw;
        }
        k.acc.resize(ni * hd);
        // The next problem's rows, a share before each phase of each block (`next` is its problem and this
        // block's index of `blocks`).
        k.w.block(k.o.q + i0 * k.o.ld, k.o.ld, i0, ni, L, hd, ct, k.acc.data(), [&](int phase) {
          if (next.p < 0) return;
          const int64_t parts = 4 * next.blocks, part = 4 * next.block + phase;
          prefetch_rows(qkv, static_cast<const T*>(nullptr), g, next.p, part * L / parts, (part + 1) * L / parts);
        });
        finish(k.o, i0, ni, k.acc.data(), k.w.m.data(), k.w.l.data());
      };
      if (problems >= 4 * thread_count()) {
        const bool one = L <= kQueryMajorOneBlock;
        const int64_t blocks = one ? 1 : qb.count;
        parallel_for(problems, 1, [&](int64_t p0, int64_t p1) {
          Work k;
          for (int64_t p = p0; p < p1; ++p)
            for (int64_t u = 0; u < blocks; ++u)
              run(k, p, one ? 0 : qb.begin(u), one ? L : qb.length(u), Next{p + 1 < p1 ? p + 1 : -1, u, blocks});
        });
      } else {
        parallel_for(problems * qb.count, 1, [&](int64_t e0, int64_t e1) {
          Work k;
          for (int64_t e = e0; e < e1; ++e) run(k, e / qb.count, qb.begin(e % qb.count), qb.length(e % qb.count), Next{-1, 0, 1});
        });
      }
      return;
    }
#endif
    if (problems >= 4 * thread_count()) {
      // Problems enough to keep every thread busy: each takes whole problems, packing their K and V tiles once
      // for all query blocks.
      parallel_for(problems, 1, [&](int64_t p0, int64_t p1) {
        Operands o;
        Scratch w;
        std::vector<gemm::cpu::PackedB> kt(kb.count), vt(kb.count);
        for (int64_t p = p0; p < p1; ++p) {
          load(o, p, qkv, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), g);
          for (int64_t t = 0; t < kb.count; ++t) {
            const int64_t j0 = kb.begin(t), nj = kb.length(t);
            kt[t].pack(true, hd, nj, o.k + j0 * o.ld, o.ld);
            vt[t].pack(false, nj, hd, o.v + j0 * o.ld, o.ld);
          }
          for (int64_t q = 0; q < qb.count; ++q) {
            if (p + 1 < p1)
              prefetch_rows(qkv, static_cast<const T*>(nullptr), g, p + 1, q * L / qb.count, (q + 1) * L / qb.count);
            run_block(o, w, qb.begin(q), qb.length(q), kt.data(), vt.data());
          }
        }
      });
      return;
    }
    parallel_for(problems * qb.count, 1, [&](int64_t e0, int64_t e1) {
      Operands o;
      Scratch w;
      for (int64_t e = e0; e < e1; ++e) {
        load(o, e / qb.count, qkv, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), g);
        run_block(o, w, qb.begin(e % qb.count), qb.length(e % qb.count), nullptr, nullptr);
      }
    });
  });
}

namespace {

// Operands of the backward's products packed once and shared by the tiles that use them (each null when not
// packed: the product then packs its own, with the same bits): K's tile as Kᵀ for S = Q·Kᵀ and as K for dQ += dS·K,
// V's tile as Vᵀ for dP = dO·Vᵀ, and the query block's Q and dO for dK += dSᵀ·Q and dV += Pᵀ·dO. Packing them per
// product was about a fifth of the backward at 224 px (the Kᵀ and Vᵀ packs are strided walks).
struct Packs {
  const gemm::cpu::PackedB *kt = nullptr, *k = nullptr, *vt = nullptr, *q = nullptr, *go = nullptr;
  // The query block's scale·Q and dO as the A operands of S and dP, when the block meets several key tiles (each
  // used only with kt and vt).
  const gemm::cpu::PackedA *qa = nullptr, *goa = nullptr;
};

using gemm::cpu::sgemm_serial_packed;

// The backward's tile (query block i0.., key tile j0..): P = e^(S − lse) and dS = P ∘ (dO·Vᵀ − delta), row stride ls.
template <typename T>
void grad_tile(float* P, float* dS, int64_t ls, const Operands& o, const Terms<T>& t, const float* lse,
               const Geometry& g, int64_t i0, int64_t ni, int64_t j0, int64_t nj, std::vector<float>& buf,
               ExpFn exp_rows, const Packs& pk) {
  const int64_t L = g.length();
  if (pk.kt && pk.qa) sgemm_serial_packed(*pk.qa, *pk.kt, 0.f, P, ls);
  else if (pk.kt) sgemm_serial_packed(false, ni, g.scale, o.q + i0 * o.ld, o.ld, *pk.kt, 0.f, P, ls);
  else score_product(P, ls, o, g, i0, ni, j0, nj);
  if (pk.vt && pk.goa) sgemm_serial_packed(*pk.goa, *pk.vt, 0.f, dS, ls);
  else if (pk.vt) sgemm_serial_packed(false, ni, 1.f, o.go + i0 * o.ld_o, o.ld_o, *pk.vt, 0.f, dS, ls);
  else sgemm_serial(false, true, ni, nj, g.head_dim, 1.f, o.go + i0 * o.ld_o, o.ld_o, o.v + j0 * o.ld, o.ld, 0.f, dS, ls);
  for (int64_t r = 0; r < ni; ++r) {
    const int64_t i = i0 + r;
    add_terms(P + r * ls, o, t, g, i, j0, nj, buf);
    exp_rows(P + r * ls, nj, lse[o.p * L + i]);
    softmax_grad_row(dS + r * ls, P + r * ls, nj, o.delta[i]);
  }
}

}  // namespace

// The backward over the forward's kind of tiles: P and dS recomputed from the logsumexp, then dV += Pᵀ·dO and
// dK += dSᵀ·Q for the tile's keys, dQ += dS·K for its queries, the bias partials and the relative position sums. Every
// gradient is a sum over tiles in one fixed order (dK and dV over the query blocks in order, dQ, dh and dw over the
// key tiles in order), and the two ways of running it below visit the same tiles in those orders, so the result does
// not depend on which runs or on the thread count.
//  - Problems enough to keep the threads evenly busy: one work item per (batch, head, window) problem, each tile
//    visited once.
//  - Otherwise (batch-1 global attention, say): a dK/dV pass per (problem, key block) and a dQ pass per (problem, query
//    block); each recomputes the tiles (S and dP twice, 14 tile products per 10 of the single pass), but the pool
//    gets L/64 or L/128 items per problem instead of one.
void attention_backward(GpuStream, void* dqkv_, void* dbias_, void* drel_h_, void* drel_w_, const void* dout_,
                        const void* qkv_, const void* out_, const float* lse, const void* bias_, const void* rel_h_,
                        const void* rel_w_, const Geometry& g, DType dt, float* scratch) {
  with_float_dtype(dt, "attention backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const Terms<T> terms{static_cast<const T*>(bias_), static_cast<const T*>(rel_h_), static_cast<const T*>(rel_w_)};
    T* drel_h = static_cast<T*>(drel_h_);
    T* drel_w = static_cast<T*>(drel_w_);
    const T* dO = static_cast<const T*>(dout_);
    const T* O = static_cast<const T*>(out_);
    T* dqkv = static_cast<T*>(dqkv_);
    const int64_t L = g.length(), hd = g.head_dim, nw = g.windows(), problems = g.batch * g.heads * nw;
    const Blocks qb = Blocks::queries(L), kb(L, kBackwardKeys);
    const ExpFn exp_rows = softmax_exp();
    const bool stream = streaming_stores();
    const int64_t gh = g.rel_gh, gw = g.rel_gw, ls = kb.size;
    float* partial = scratch + g.stat_rows();
    zero_prefix(dqkv, g, 3 * g.dim());

    // A thread's tiles and accumulators: dq for one query block, dh and dw (per query row, one sum per key row and
    // one per key column), dk and dv for `keys` keys.
    struct Work {
      Operands o;
      std::vector<float> P, dS, dq, dh, dw, dk, dv, buf;
      // Packed operands: per key tile Kᵀ, K and Vᵀ of the problem in hand, and the current query block's Q and dO.
      std::vector<gemm::cpu::PackedB> kt, k, vt;
      gemm::cpu::PackedB q, go;
      gemm::cpu::PackedA qa, goa;
    };
    auto make_work = [&](int64_t keys) {
      Work k;
      k.P.resize(qb.size * ls);
      k.dS.resize(qb.size * ls);
      k.dq.resize(qb.size * hd);
      k.dh.resize(terms.rel_h ? qb.size * gh : 0);
      k.dw.resize(terms.rel_h ? qb.size * gw : 0);
      k.dk.resize(keys * hd);
      k.dv.resize(keys * hd);
      return k;
    };
    // Packs the problem's key tiles: Kᵀ and Vᵀ (for S and dP), and K (for dQ) when with_k.
    auto pack_keys = [&](Work& k, bool with_k) {
      k.kt.resize(kb.count);
      k.vt.resize(kb.count);
      k.k.resize(with_k ? kb.count : 0);
      for (int64_t t = 0; t < kb.count; ++t) {
        const int64_t j0 = kb.begin(t), nj = kb.length(t);
        k.kt[t].pack(true, hd, nj, k.o.k + j0 * k.o.ld, k.o.ld);
        k.vt[t].pack(true, hd, nj, k.o.v + j0 * k.o.ld, k.o.ld);
        if (with_k) k.k[t].pack(false, nj, hd, k.o.k + j0 * k.o.ld, k.o.ld);
      }
    };
    // Packs query block u's scale·Q and dO as the A operands of S and dP (shared by its key tiles).
    auto pack_query_rows = [&](Work& k, int64_t u) {
      const int64_t i0 = qb.begin(u), ni = qb.length(u);
      k.qa.pack(false, ni, hd, g.scale, k.o.q + i0 * k.o.ld, k.o.ld);
      k.goa.pack(false, ni, hd, 1.f, k.o.go + i0 * k.o.ld_o, k.o.ld_o);
    };
    // Packs query block u's Q and dO (the B operands of dK and dV) and its A operands.
    auto pack_queries = [&](Work& k, int64_t u) {
      const int64_t i0 = qb.begin(u), ni = qb.length(u);
      k.q.pack(false, ni, hd, k.o.q + i0 * k.o.ld, k.o.ld);
      k.go.pack(false, ni, hd, k.o.go + i0 * k.o.ld_o, k.o.ld_o);
      pack_query_rows(k, u);
    };
    // Tile (query block u, key tile t) into k.P and k.dS, through what is packed in pk.
    auto tile = [&](Work& k, int64_t u, int64_t t, const Packs& pk) {
      grad_tile(k.P.data(), k.dS.data(), ls, k.o, terms, lse, g, qb.begin(u), qb.length(u), kb.begin(t),
                kb.length(t), k.buf, exp_rows, pk);
    };
    // The tile's share of dK and dV, into dk and dv for its keys ([nj, hd]); the first query block overwrites.
    auto key_update = [&](Work& k, int64_t u, int64_t t, float* dk, float* dv, const Packs& pk) {
      const int64_t i0 = qb.begin(u), ni = qb.length(u), nj = kb.length(t);
      const float beta = u ? 1.f : 0.f;
      if (pk.go) sgemm_serial_packed(true, nj, 1.f, k.P.data(), ls, *pk.go, beta, dv, hd);
      else sgemm_serial(true, false, nj, hd, ni, 1.f, k.P.data(), ls, k.o.go + i0 * k.o.ld_o, k.o.ld_o, beta, dv, hd);
      if (pk.q) sgemm_serial_packed(true, nj, 1.f, k.dS.data(), ls, *pk.q, beta, dk, hd);
      else sgemm_serial(true, false, nj, hd, ni, 1.f, k.dS.data(), ls, k.o.q + i0 * k.o.ld, k.o.ld, beta, dk, hd);
    };
    // The tile's share of dQ, the bias partials and the relative position sums; the first key tile overwrites dq.
    auto query_update = [&](Work& k, int64_t u, int64_t t, const Packs& pk) {
      const int64_t i0 = qb.begin(u), ni = qb.length(u), j0 = kb.begin(t), nj = kb.length(t);
      const Operands& o = k.o;
      if (t == 0) {
        std::fill(k.dh.begin(), k.dh.end(), 0.f);
        std::fill(k.dw.begin(), k.dw.end(), 0.f);
      }
      if (pk.k) sgemm_serial_packed(false, ni, 1.f, k.dS.data(), ls, *pk.k, t ? 1.f : 0.f, k.dq.data(), hd);
      else
        sgemm_serial(false, false, ni, hd, nj, 1.f, k.dS.data(), ls, o.k + j0 * o.ld, o.ld, t ? 1.f : 0.f,
                     k.dq.data(), hd);
      for (int64_t r = 0; r < ni; ++r) {
        const float* ds = k.dS.data() + r * ls;
        if (terms.bias)
          std::memcpy(partial + (((o.b * nw + o.w) * g.heads + o.h) * L + i0 + r) * L + j0, ds, nj * sizeof(float));
        if (terms.rel_h) {
          float* dhr = k.dh.data() + r * gh;
          float* dwr = k.dw.data() + r * gw;
          // Per key row the tile spans: its share of dh (a lane sum) and dw (a row update), both vectorized.
          for (int64_t j = j0; j < j0 + nj;) {
            const int64_t y = j / gw, c = j % gw, n = std::min(gw - c, j0 + nj - j);
            dhr[y] += row_sum(ds + (j - j0), n);
            add_row(dwr + c, ds + (j - j0), n);
            j += n;
          }
        }
      }
    };
    auto store_queries = [&](Work& k, int64_t u) {
      const Operands& o = k.o;
      for (int64_t r = 0; r < qb.length(u); ++r) {
        const int64_t i = qb.begin(u) + r, oq = g.qkv_offset(o.b, g.token(o.w, i), 0, o.h);
        if constexpr (std::is_same_v<T, float>) store_scaled_row(dqkv + oq, k.dq.data() + r * hd, hd, g.scale, stream);
        else
          for (int64_t d = 0; d < hd; ++d) Elem<T>::store(dqkv, oq + d, k.dq[r * hd + d] * g.scale);
        if (terms.rel_h) {
          const int64_t row = o.p * L + i;
          for (int64_t y = 0; y < gh; ++y) Elem<T>::store(drel_h, row * gh + y, k.dh[r * gh + y]);
          for (int64_t c = 0; c < gw; ++c) Elem<T>::store(drel_w, row * gw + c, k.dw[r * gw + c]);
        }
      }
      stream_fence(stream);
    };
    // Keys j0 .. j0 + nj from dk, dv (row 0 is key j0).
    auto store_keys = [&](Work& k, int64_t j0, int64_t nj) {
      const Operands& o = k.o;
      for (int64_t r = 0; r < nj; ++r) {
        const int64_t t = g.token(o.w, j0 + r);
        const int64_t ok = g.qkv_offset(o.b, t, 1, o.h), ov = g.qkv_offset(o.b, t, 2, o.h);
        if constexpr (std::is_same_v<T, float>) {
          store_scaled_row(dqkv + ok, k.dk.data() + r * hd, hd, g.scale, stream);
          store_scaled_row(dqkv + ov, k.dv.data() + r * hd, hd, 1.f, stream);
        } else {
          for (int64_t d = 0; d < hd; ++d) {
            Elem<T>::store(dqkv, ok + d, k.dk[r * hd + d] * g.scale);
            Elem<T>::store(dqkv, ov + d, k.dv[r * hd + d]);
          }
        }
      }
      stream_fence(stream);
    };

    // Whole problems take ceil(problems / threads) rounds of 10 products per tile; split, the same work costs 14 but
    // spreads evenly. (16 problems on 16 threads: whole; 1 or 20: split.)
    const int64_t threads = thread_count(), rounds = (problems + threads - 1) / threads;
    if (10 * rounds * threads <= 14 * problems) {
      parallel_for(problems, 1, [&](int64_t p0, int64_t p1) {
        Work k = make_work(L);
        for (int64_t p = p0; p < p1; ++p) {
          load(k.o, p, qkv, dO, O, g);
          pack_keys(k, true);
          for (int64_t u = 0; u < qb.count; ++u) {
            if (p + 1 < p1) prefetch_rows(qkv, dO, g, p + 1, u * L / qb.count, (u + 1) * L / qb.count);
            pack_queries(k, u);
            for (int64_t t = 0; t < kb.count; ++t) {
              const Packs pk{&k.kt[t], &k.k[t], &k.vt[t], &k.q, &k.go, &k.qa, &k.goa};
              tile(k, u, t, pk);
              key_update(k, u, t, k.dk.data() + kb.begin(t) * hd, k.dv.data() + kb.begin(t) * hd, pk);
              query_update(k, u, t, pk);
            }
            store_queries(k, u);
          }
          store_keys(k, 0, L);
        }
      });
    } else {
      parallel_for(problems * kb.count, 1, [&](int64_t e0, int64_t e1) {
        Work k = make_work(kb.size);
        for (int64_t e = e0; e < e1; ++e) {
          const int64_t p = e / kb.count, t = e % kb.count;
          // Kᵀ and Vᵀ of the item's key tile serve each of its query blocks (and the next items of the problem).
          if (k.o.p != p) {
            load(k.o, p, qkv, dO, O, g);
            pack_keys(k, false);
          }
          const Packs pk{&k.kt[t], nullptr, &k.vt[t], nullptr, nullptr};
          for (int64_t u = 0; u < qb.count; ++u) {
            tile(k, u, t, pk);
            key_update(k, u, t, k.dk.data(), k.dv.data(), pk);
          }
          store_keys(k, kb.begin(t), kb.length(t));
        }
      });
      parallel_for(problems * qb.count, 1, [&](int64_t e0, int64_t e1) {
        Work k = make_work(0);
        for (int64_t e = e0; e < e1; ++e) {
          const int64_t p = e / qb.count, u = e % qb.count;
          // A thread's items are consecutive, so its query blocks of one problem share the packed key tiles.
          if (k.o.p != p) {
            load(k.o, p, qkv, dO, O, g);
            pack_keys(k, true);
          }
          pack_query_rows(k, u);
          for (int64_t t = 0; t < kb.count; ++t) {
            const Packs pk{&k.kt[t], &k.k[t], &k.vt[t], nullptr, nullptr, &k.qa, &k.goa};
            tile(k, u, t, pk);
            query_update(k, u, t, pk);
          }
          store_queries(k, u);
        }
      });
    }

    if (terms.bias) {
      T* dbias = static_cast<T*>(dbias_);
      const int64_t n = g.heads * L * L, parts = g.batch * nw;
      parallel_for(n, 1024, [&](int64_t e0, int64_t e1) {
        for (int64_t e = e0; e < e1; ++e) {
          float s = 0.f;
          for (int64_t k = 0; k < parts; ++k) s += partial[k * n + e];
          Elem<T>::store(dbias, e, s);
        }
      });
    }
  });
}

}  // namespace cpu
}  // namespace attention
}  // namespace amr
