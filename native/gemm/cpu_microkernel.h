// The built-in f32 GEMM's pieces, shared by the threaded product (cpu.cpp) and the serial one (cpu_kernel.cpp):
// operands are packed into panels that the register-blocked micro-kernel streams through, MR rows of op(A) and NR
// columns of op(B) at a time, each panel K-major so that one step of k is one contiguous read. Packing converts
// bf16 to f32 and absorbs the transpositions, so the micro-kernel sees one layout only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "../runtime/common.h"

namespace amr {
namespace gemm {
namespace cpu {

// c[MR×NR] = (accumulate ? c : 0) + Σ_p a[p·MR + r]·b[p·NR + j] over p < kc, in increasing p, one fused
// multiply-add per step: every element of C is one chain over k, so blocking over k changes no bit.
using MicroKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);

// The same on the first h ≤ MR rows and w ≤ NR columns of the tile, touching no other element of C.
using EdgeKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate, int h,
                              int w);

struct MicroKernel {
  int mr, nr;
  MicroKernelFn fn;
  EdgeKernelFn edge;  // nullptr: edge tiles go through a scratch tile
  const char* name;
};

// The widest kernel this CPU runs (chosen once), or the one forced by set_micro_kernel.
const MicroKernel& micro_kernel();
// "avx512", "avx2", "generic", or "auto"; false if the name is unknown or the CPU lacks the instructions.
bool set_micro_kernel(const char* name);

// A buffer that only grows and is never cleared: packing writes every float it later reads, and a thread's
// buffers outlive its calls, so a product costs no allocation or page faults once the largest shape has run.
// Cache-line aligned: a vector load that straddles two lines costs two, and the panels are read a vector at a time.
class Scratch {
 public:
  float* get(int64_t n) {
    if (n > size_) {
      data_.reset(static_cast<float*>(::operator new(size_t(n) * sizeof(float), std::align_val_t(64))));
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t size_ = 0;
};

// Depth of one k slice: an MR×KC panel of op(A) (14 KiB for AVX-512) stays in L1 while the KC×NR panels of op(B)
// stream past it from L2.
constexpr int64_t kBlockK = 256;

// Columns of op(B) one block of op(A) meets at a time, a whole number of NR panels: its KC×NC slice (half a MiB)
// stays in L2 while the micro-kernel sweeps it once per MR rows.
inline int64_t block_n(const MicroKernel& uk) { return 512 / uk.nr * uk.nr; }

// Rows of op(A) packed together (an MC×KC block in L2), for a kernel with mr rows.
inline int64_t block_m(const MicroKernel& uk) { return int64_t(uk.mr) * 8; }

// Panels of `width` along r from X(r, p) = src[r·rs + p·ps] (r < rows, p0 ≤ p < p0 + kc), scaled by `scale`:
// panel q at dst + q·panel_stride holds X(q·width + j, p0 + p) at [p·width + j], zero past `rows`, so partial
// tiles compute on zeros instead of reading past the operand. width ≤ 32.
void pack_panels(float* dst, int64_t panel_stride, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t p0,
                 int64_t kc, int width, float scale);
void pack_panels(float* dst, int64_t panel_stride, const uint16_t* src, int64_t rs, int64_t ps, int64_t rows,
                 int64_t p0, int64_t kc, int width, float scale);

// C[mc×nc] (ldc) = (accumulate ? C : 0) + Ã·B̃ over one k slice of depth kc: Ã is ceil(mc/MR) panels kc·MR apart,
// B̃ is ceil(nc/NR) panels b_stride apart. Tiles that C only partly covers go through a scratch tile.
void macro_kernel(const MicroKernel& uk, int64_t mc, int64_t nc, int64_t kc, const float* a, const float* b,
                  int64_t b_stride, float* c, int64_t ldc, bool accumulate);

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
