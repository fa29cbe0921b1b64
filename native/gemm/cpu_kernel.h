// Single-threaded f32 products on the calling thread, for cpu kernels that already give each pool thread its own
// problems (attention's tiles, one (batch, head, window) each). It never calls the host BLAS: OpenBLAS would start
// its own threads under ours, and its answer would depend on what the user happened to install.
#pragma once
#include <cstdint>
#include <vector>

namespace amr {
namespace gemm {
namespace cpu {

// C = alpha·op(A)·op(B) + beta·C, row-major with leading dimensions: op(A) is [m, k] (A is [k, m] when trans_a),
// op(B) is [k, n] (B is [n, k] when trans_b), C is [m, n]. beta == 0 overwrites C without reading it, so a poisoned
// (NaN) C gives no NaN.
void sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

class PackedA;

// op(B) [k, n] packed once into the micro-kernel's panels, for products that share it: attention's K and V tiles
// serve every query block of a problem, and packing them per product was about a quarter of the forward. The
// packed product gives the same bits as sgemm_serial with the same operands.
class PackedB {
 public:
  // Packs op(B) (B is [n, k] when trans_b), replacing what was packed before; the buffer only grows.
  void pack(bool trans_b, int64_t k, int64_t n, const float* b, int64_t ldb);
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }

 private:
  friend void sgemm_serial_packed(bool, int64_t, float, const float*, int64_t, const PackedB&, float, float*, int64_t);
  friend void sgemm_serial_packed(const PackedA&, const PackedB&, float, float*, int64_t);
  std::vector<float> data_;
  int64_t k_ = 0, n_ = 0;
  int nr_ = 0;  // the micro-kernel's panel width when packed: a product under another kernel is an Error
};

// alpha·op(A) [m, k] packed once into the micro-kernel's row panels, for products that share it: the attention
// backward's Q and dO blocks meet every key tile of their problem (S = Q·Kᵀ and dP = dO·Vᵀ), and packing them per
// tile was a transposing walk each time. The packed product gives the same bits as sgemm_serial.
class PackedA {
 public:
  // Packs alpha·op(A) (A is [k, m] when trans_a), replacing what was packed before; the buffer only grows.
  void pack(bool trans_a, int64_t m, int64_t k, float alpha, const float* a, int64_t lda);
  int64_t m() const { return m_; }
  int64_t k() const { return k_; }

 private:
  friend void sgemm_serial_packed(const PackedA&, const PackedB&, float, float*, int64_t);
  std::vector<float> data_;
  int64_t m_ = 0, k_ = 0;
  int mr_ = 0;
};

// C [m, n] = pa·op(B) + beta·C with both operands packed (pa's k must be pb's); beta == 0 overwrites C.
void sgemm_serial_packed(const PackedA& pa, const PackedB& pb, float beta, float* c, int64_t ldc);

// C [m, n] = alpha·op(A)·op(B) + beta·C for op(A) [m, k] (A is [k, m] when trans_a; row stride lda) and op(B) from
// pb; beta == 0 overwrites C. The same bits as sgemm_serial with the same operands.
void sgemm_serial_packed(bool trans_a, int64_t m, float alpha, const float* a, int64_t lda, const PackedB& pb,
                         float beta, float* c, int64_t ldc);

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
