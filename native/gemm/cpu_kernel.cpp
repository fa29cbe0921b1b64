// The serial f32 product of cpu_kernel.h, on the built-in micro-kernel: op(B) is packed one KC×NC block at a
// time, op(A) one MC×KC block at a time, into buffers each thread keeps, so the small products attention runs
// per tile allocate nothing after the first.
#include "cpu_kernel.h"

#include <algorithm>

#include "cpu_microkernel.h"

namespace amr {
namespace gemm {
namespace cpu {

namespace {

// beta == 0 lets the first k slice overwrite C; otherwise C is scaled once and every slice accumulates. True when
// that is all there is to do.
bool scale_c(int64_t m, int64_t n, int64_t k, float alpha, float beta, float* c, int64_t ldc) {
  const bool scale_only = k <= 0 || alpha == 0.f;
  if (beta != 1.f && (beta != 0.f || scale_only))
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      if (beta == 0.f) std::fill(ci, ci + n, 0.f);
      else
        for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
    }
  return scale_only;
}

}  // namespace

void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (scale_c(m, n, k, alpha, beta, c, ldc)) return;
  const MicroKernel& uk = micro_kernel();
  const int64_t mr = uk.mr, nr = uk.nr, mc_max = block_m(uk), nc_l2 = block_n(uk);
  thread_local Scratch a_buf, b_buf;
  // op(A)(i, p) = a[i·a_rs + p·a_ps]; op(B)(p, j) = b[j·b_rs + p·b_ps].
  const int64_t a_rs = trans_a ? 1 : lda, a_ps = trans_a ? lda : 1;
  const int64_t b_rs = trans_b ? ldb : 1, b_ps = trans_b ? 1 : ldb;
  for (int64_t j0 = 0; j0 < n; j0 += nc_l2) {
    const int64_t nc = std::min(nc_l2, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
      const int64_t kc = std::min(kBlockK, k - p0);
      const bool accumulate = p0 > 0 || beta != 0.f;
      float* bp = b_buf.get((nc + nr - 1) / nr * nr * kc);
      pack_panels(bp, kc * nr, b + j0 * b_rs, b_rs, b_ps, nc, p0, kc, int(nr), 1.f);
      for (int64_t i0 = 0; i0 < m; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, m - i0);
        float* ap = a_buf.get((mc + mr - 1) / mr * mr * kc);
        pack_panels(ap, kc * mr, a + i0 * a_rs, a_rs, a_ps, mc, p0, kc, int(mr), alpha);
        macro_kernel(uk, mc, nc, kc, ap, bp, kc * nr, c + i0 * ldc + j0, ldc, accumulate);
      }
    }
  }
}

// Layout: the k slices of kBlockK one after another (slice from p0 at round_up(n, NR)·p0), each as sgemm_serial
// packs its B block: panel q of a slice of depth kc at q·kc·NR.
void PackedB::pack(bool trans_b, int64_t k, int64_t n, const float* b, int64_t ldb) {
  const MicroKernel& uk = micro_kernel();
  const int64_t nr = uk.nr, np = (n + nr - 1) / nr * nr;
  k_ = k;
  n_ = n;
  nr_ = uk.nr;
  if (int64_t(data_.size()) < np * k) data_.resize(size_t(np * k));
  const int64_t b_rs = trans_b ? ldb : 1, b_ps = trans_b ? 1 : ldb;
  for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
    const int64_t kc = std::min(kBlockK, k - p0);
    pack_panels(data_.data() + np * p0, kc * nr, b, b_rs, b_ps, n, p0, kc, int(nr), 1.f);
  }
}

namespace {

// The loops and slices of sgemm_serial over a packed op(B), so the sums are the same chains in the same order;
// a_block(i0, p0, kc, mc) gives the packed MC×KC block of op(A) from row i0 at depth p0.
template <typename ABlock>
void packed_product(const MicroKernel& uk, int64_t m, int64_t n, int64_t k, const float* b_packed, float beta, float* c,
                    int64_t ldc, ABlock&& a_block) {
  const int64_t nr = uk.nr, mc_max = block_m(uk), nc_l2 = block_n(uk), np = (n + nr - 1) / nr * nr;
  for (int64_t j0 = 0; j0 < n; j0 += nc_l2) {
    const int64_t nc = std::min(nc_l2, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
      const int64_t kc = std::min(kBlockK, k - p0);
      const bool accumulate = p0 > 0 || beta != 0.f;
      const float* bp = b_packed + np * p0 + (j0 / nr) * kc * nr;
      for (int64_t i0 = 0; i0 < m; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, m - i0);
        macro_kernel(uk, mc, nc, kc, a_block(i0, p0, kc, mc), bp, kc * nr, c + i0 * ldc + j0, ldc, accumulate);
      }
    }
  }
}

}  // namespace

void sgemm_serial_packed(bool trans_a, int64_t m, float alpha, const float* a, int64_t lda, const PackedB& pb,
                         float beta, float* c, int64_t ldc) {
  const int64_t n = pb.n_, k = pb.k_;
  if (m <= 0 || n <= 0) return;
  if (scale_c(m, n, k, alpha, beta, c, ldc)) return;
  const MicroKernel& uk = micro_kernel();
  if (uk.nr != pb.nr_) throw Error("sgemm_serial_packed: op(B) was packed for another micro-kernel");
  const int64_t mr = uk.mr;
  thread_local Scratch a_buf;
  const int64_t a_rs = trans_a ? 1 : lda, a_ps = trans_a ? lda : 1;
  packed_product(uk, m, n, k, pb.data_.data(), beta, c, ldc, [&](int64_t i0, int64_t p0, int64_t kc, int64_t mc) {
    float* ap = a_buf.get((mc + mr - 1) / mr * mr * kc);
    pack_panels(ap, kc * mr, a + i0 * a_rs, a_rs, a_ps, mc, p0, kc, int(mr), alpha);
    return static_cast<const float*>(ap);
  });
}

// Layout: the k slices one after another (slice from p0 at round_up(m, MR)·p0), each as sgemm_serial packs its A
// blocks: panel q of a slice of depth kc at q·kc·MR, so the block from row i0 starts at i0·kc.
void PackedA::pack(bool trans_a, int64_t m, int64_t k, float alpha, const float* a, int64_t lda) {
  const MicroKernel& uk = micro_kernel();
  const int64_t mr = uk.mr, mp = (m + mr - 1) / mr * mr;
  m_ = m;
  k_ = k;
  mr_ = uk.mr;
  if (int64_t(data_.size()) < mp * k) data_.resize(size_t(mp * k));
  const int64_t a_rs = trans_a ? 1 : lda, a_ps = trans_a ? lda : 1;
  for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
    const int64_t kc = std::min(kBlockK, k - p0);
    pack_panels(data_.data() + mp * p0, kc * mr, a, a_rs, a_ps, m, p0, kc, int(mr), alpha);
  }
}

void sgemm_serial_packed(const PackedA& pa, const PackedB& pb, float beta, float* c, int64_t ldc) {
  const int64_t m = pa.m_, n = pb.n_, k = pb.k_;
  if (m <= 0 || n <= 0) return;
  if (pa.k_ != k) throw Error("sgemm_serial_packed: op(A) and op(B) were packed with different depths");
  if (scale_c(m, n, k, 1.f, beta, c, ldc)) return;
  const MicroKernel& uk = micro_kernel();
  if (uk.nr != pb.nr_ || uk.mr != pa.mr_) throw Error("sgemm_serial_packed: an operand was packed for another micro-kernel");
  const int64_t mp = (m + uk.mr - 1) / uk.mr * uk.mr;
  packed_product(uk, m, n, k, pb.data_.data(), beta, c, ldc,
                 [&](int64_t i0, int64_t p0, int64_t kc, int64_t) { return pa.data_.data() + mp * p0 + i0 * kc; });
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
