// The cpu attention forward of short problems (every key in one tile: L ≤ 512, the 224 px global blocks, ViTDet's
// 16×16 windows, SAM's 14×14 windows, DINOv2 at 224 px, E-RADIO's windows) on the AVX-512 kernel: the scores are
// computed transposed, Sᵀ = K·Qᵀ (keys down, queries across), so that
//  - the softmax runs down the columns: each query's maximum and sum are lanes of a vector, with no horizontal
//    reduction per row and no per-row call (the row-major path spent about a tenth of the forward on them);
//  - P, the A operand of O = P·V, is packed from Sᵀ by plain copies of contiguous runs, where the row-major S needed
//    a transposing pack of every tile (the largest of the forward's packs).
// With one key tile there is no running maximum or rescaling: a query block sees all its keys at once. The bias and
// the relative position terms are added to Sᵀ from copies transposed to its layout (the bias once per call, a
// problem's relative terms once per problem: O(L²) and O(L·(gh + gw)) beside the products' O(L²·hd)). The results
// differ from the row-major path's in the last bits (other product shapes, the sums in another order), so it runs
// exactly when the GEMM's AVX-512 kernel does and the problems are short, whatever the batch, the thread count or the
// split into query blocks (each element is the same chain either way). Included by attention/cpu.cpp only.
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#include "../gemm/cpu_microkernel.h"
#include "cpu_rows.h"

namespace amr {
namespace attention {
namespace cpu {
namespace {

// The longest problem the query-major forward takes: all its keys in one tile (Sᵀ of a query block stays in L2), up
// to DINOv2's 257 to 261 tokens at 224 px and a student's 400-odd at 320 px. P·V runs in k slices of the GEMM's depth.
constexpr int64_t kQueryMajorKeys = 512;
// Up to here a problem runs as one query block; longer ones in the forward's usual blocks.
constexpr int64_t kQueryMajorOneBlock = 256;

#ifdef AMR_ATTENTION_AVX512

bool query_major_applies(int64_t L) {
  return L <= kQueryMajorKeys && std::strcmp(gemm::cpu::micro_kernel().name, "avx512") == 0;
}

// The score terms in Sᵀ's layout, each row a key's values for consecutive queries: the bias transposed per head
// (bt [heads, key, query], once per call), and a problem's relative position terms transposed ([gh, L] and [gw, L]).
struct ColumnTerms {
  const float* bias = nullptr;  // this problem's head: [L keys][L queries]
  const float* rel_h = nullptr;  // [gh][L]
  const float* rel_w = nullptr;  // [gw][L]
  int64_t gw = 0;
};

// st [rows = keys, ls] += the terms of the block's queries i0 .. i0 + ni: key j's row gets bias row j and, for key j
// at grid (y, c), rel_h row y + rel_w row c (added as one sum, as the row-major path adds them).
AMR_VECTOR_CLONES
void add_column_terms(float* st, int64_t rows, int64_t ls, int64_t i0, int64_t ni, int64_t L, const ColumnTerms& t) {
  for (int64_t j = 0; j < rows; ++j) {
    float* r = st + j * ls;
    if (t.bias) {
      const float* b = t.bias + j * L + i0;
      for (int64_t i = 0; i < ni; ++i) r[i] += b[i];
    }
    if (t.rel_h) {
      const float* h = t.rel_h + (j / t.gw) * L + i0;
      const float* w = t.rel_w + (j % t.gw) * L + i0;
      for (int64_t i = 0; i < ni; ++i) r[i] += h[i] + w[i];
    }
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// Column c0 .. c0 + 16 of s [rows, ls] (lanes past `cols` masked): each column's maximum m, then s = e^(s − m) in
// place and its sum l, written to m[c0..], l[c0..]. The maximum runs over four rows at a time in four chains (a
// max is exact, so the grouping changes nothing).
__attribute__((target("avx512f"))) void softmax_column_strip(float* s, int64_t rows, int64_t ls, int64_t c0, __mmask16 k,
                                                            float* m, float* l) {
  __m512 mx[4];
  for (auto& v : mx) v = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 4 <= rows; j += 4)
    for (int u = 0; u < 4; ++u) mx[u] = _mm512_max_ps(mx[u], _mm512_maskz_loadu_ps(k, s + (j + u) * ls + c0));
  for (; j < rows; ++j) mx[0] = _mm512_max_ps(mx[0], _mm512_maskz_loadu_ps(k, s + j * ls + c0));
  const __m512 vm = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
  __m512 sum = _mm512_setzero_ps();
  for (j = 0; j < rows; ++j) {
    float* r = s + j * ls + c0;
    const __m512 e = exp_nonpositive16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, r), vm));
    _mm512_mask_storeu_ps(r, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  _mm512_mask_storeu_ps(m + c0, k, vm);
  _mm512_mask_storeu_ps(l + c0, k, sum);
}
#pragma GCC diagnostic pop

// One problem's operands packed for the query-major products: scale·K as row panels of Sᵀ's A (keys down) and V as
// column panels of O's B, each once per problem for all its query blocks.
struct QueryMajor {
  gemm::cpu::Scratch ka, vb, qb, s, pa;
  std::vector<float> m, l;

  void pack_keys(const float* k, const float* v, int64_t ld, int64_t L, int64_t hd, float scale) {
    const gemm::cpu::MicroKernel& uk = gemm::cpu::micro_kernel();
    const int64_t mr = uk.mr, nr = uk.nr;
    gemm::cpu::pack_panels(ka.get((L + mr - 1) / mr * mr * hd), hd * mr, k, ld, 1, L, 0, hd, int(mr), scale);
    // V's k slices one after another, as PackedB lays them out: the slice from p0 at round_up(hd, NR)·p0.
    const int64_t np = (hd + nr - 1) / nr * nr;
    float* vp = vb.get(np * L);
    for (int64_t p0 = 0; p0 < L; p0 += gemm::cpu::kBlockK) {
      const int64_t kc = std::min(gemm::cpu::kBlockK, L - p0);
      gemm::cpu::pack_panels(vp + np * p0, kc * nr, v, 1, ld, hd, p0, kc, int(nr), 1.f);
    }
  }

  // Query rows i0 .. i0 + ni (q rows ld apart, from the block's first), with the score terms: acc [ni, hd] = Σ_j e^(s_ij − m_i)·v_j, with
  // the maxima m and sums l of the block's rows (m and l hold ni values each when it returns). between(k) runs
  // before phase k of 4 (the caller's prefetches of the next problem, spread so they do not queue up at once).
  template <typename Between>
  void block(const float* q, int64_t ld, int64_t i0, int64_t ni, int64_t L, int64_t hd, const ColumnTerms& terms,
             float* acc, Between&& between) {
    const gemm::cpu::MicroKernel& uk = gemm::cpu::micro_kernel();
    // Sᵀ's rows an odd number of cache lines apart: at 256 queries (1 KiB) the column strips' rows fell into 4 of the
    // L1's 64 sets and evicted each other between the max and the exp pass.
    const int64_t mr = uk.mr, nr = uk.nr, ls = (((ni + 15) / 16) | 1) * 16;
    float* qp = qb.get((ni + nr - 1) / nr * nr * hd);
    gemm::cpu::pack_panels(qp, hd * nr, q, ld, 1, ni, 0, hd, int(nr), 1.f);
    float* st = s.get(L * ls);
    between(0);
    gemm::cpu::macro_kernel(uk, L, ni, hd, ka.get(0), qp, hd * nr, st, ls, false);
    if (terms.bias || terms.rel_h) add_column_terms(st, L, ls, i0, ni, L, terms);
    between(1);
    m.resize(ls);
    l.resize(ls);
    for (int64_t c0 = 0; c0 < ni; c0 += 16) {
      const __mmask16 k = ni - c0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (ni - c0)) - 1);
      softmax_column_strip(st, L, ls, c0, k, m.data(), l.data());
    }
    between(2);
    const int64_t np = (hd + nr - 1) / nr * nr;
    for (int64_t p0 = 0; p0 < L; p0 += gemm::cpu::kBlockK) {
      const int64_t kc = std::min(gemm::cpu::kBlockK, L - p0);
      float* pp = pa.get((ni + mr - 1) / mr * mr * kc);
      gemm::cpu::pack_panels(pp, kc * mr, st, 1, ls, ni, p0, kc, int(mr), 1.f);
      if (p0 == 0) between(3);
      gemm::cpu::macro_kernel(uk, ni, hd, kc, pp, vb.get(0) + np * p0, kc * nr, acc, hd, p0 > 0);
    }
  }
};
#else
bool query_major_applies(int64_t) { return false; }
#endif

}  // namespace
}  // namespace cpu
}  // namespace attention
}  // namespace amr
