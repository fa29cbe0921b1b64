// The micro-kernels of cpu_microkernel.h: MR×NR accumulators held in vector registers for a whole k slice, each
// step one load of NR values of op(B), MR broadcasts of op(A) and MR·NR/width fused multiply-adds. Built for
// AVX-512 and AVX2+FMA through target attributes (the rest of the addon stays baseline x86-64) and picked once,
// at first use, from what the CPU reports; a plain C++ kernel covers every other CPU.
#include "cpu_microkernel.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AMR_X86_KERNELS 1
// The packing needs byte/word masks (BW) and 256-bit masked loads (VL) besides AVX-512F: every AVX-512 x86 core
// since Skylake-SP has all three.
#define AMR_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#endif

namespace amr {
namespace gemm {
namespace cpu {

namespace {

#ifdef AMR_X86_KERNELS

// H ≤ 14 rows × 32 columns in 2·H zmm accumulators, reading panels of op(A) packed 14 wide; the columns of C past
// the masks are neither read nor written, so tiles at the edges of C run here too, without a scratch tile.
constexpr int kAvx512Rows = 14;
constexpr int kPrefetchSteps = 16;
template <int H, int NV = 2>
AMR_AVX512 void kernel_avx512_masked(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                                     __mmask16 m0, __mmask16 m1) {
  // NV = 1: the tile is at most 16 columns wide (an edge of C), so only its first vector of columns is computed:
  // half the multiply-adds of the full tile (attention's 197 keys end in a panel of 5 columns; SigLIP's head dim 72 in
  // one of 8). Each element of C is still the same chain over k.
  __m512 c0[H], c1[NV == 2 ? H : 1];
#pragma GCC unroll 16
  for (int r = 0; r < H; ++r) {
    c0[r] = accumulate ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
    if constexpr (NV == 2) c1[r] = accumulate ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    // op(B)'s panel streams from L2 (A's stays in L1 across the panels): its lines are asked for kPrefetchSteps
    // steps of k ahead, which the hardware prefetchers did not do soon enough for the FMA ports to stay busy.
    _mm_prefetch(reinterpret_cast<const char*>(b + 32 * kPrefetchSteps), _MM_HINT_T0);
    if constexpr (NV == 2) _mm_prefetch(reinterpret_cast<const char*>(b + 32 * kPrefetchSteps + 16), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 16
    for (int r = 0; r < H; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      if constexpr (NV == 2) c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
    a += kAvx512Rows;
    b += 32;
  }
#pragma GCC unroll 16
  for (int r = 0; r < H; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    if constexpr (NV == 2) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

AMR_AVX512 void kernel_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  kernel_avx512_masked<kAvx512Rows>(kc, a, b, c, ldc, accumulate, 0xffff, 0xffff);
}

template <int NV, int... H>
constexpr std::array<void (*)(int64_t, const float*, const float*, float*, int64_t, bool, __mmask16, __mmask16),
                     sizeof...(H)>
masked_kernels(std::integer_sequence<int, H...>) {
  return {kernel_avx512_masked<H + 1, NV>...};
}

AMR_AVX512 void edge_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate, int h,
                            int w) {
  static constexpr auto kernels = masked_kernels<2>(std::make_integer_sequence<int, kAvx512Rows>());
  static constexpr auto narrow = masked_kernels<1>(std::make_integer_sequence<int, kAvx512Rows>());
  const __mmask16 m0 = __mmask16((1u << std::min(w, 16)) - 1), m1 = __mmask16((1u << std::max(w - 16, 0)) - 1);
  (w <= 16 ? narrow : kernels)[h - 1](kc, a, b, c, ldc, accumulate, m0, m1);
}

// MR rows × 16 columns in 2·MR ymm accumulators.
template <int MR>
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* a, const float* b, float* c,
                                                     int64_t ldc, bool accumulate) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    c0[r] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    c1[r] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(ar, b1, c1[r]);
    }
    a += MR;
    b += 16;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * ldc, c0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
  }
}

#endif

// Packing, any CPU.
template <typename T>
void pack_generic(float* dst, int64_t panel_stride, const T* src, int64_t rs, int64_t ps, int64_t rows, int64_t p0,
                  int64_t kc, int width, float scale) {
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* d = dst + (r0 / width) * panel_stride;
    const int64_t w = std::min<int64_t>(width, rows - r0);
    const T* s = src + r0 * rs + p0 * ps;
    if (w < width)
      for (int64_t p = 0; p < kc; ++p) std::fill(d + p * width + w, d + (p + 1) * width, 0.f);
    if (rs == 1) {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t j = 0; j < w; ++j) d[p * width + j] = scale * Elem<T>::load(s, p * ps + j);
    } else {
      // Contiguous along k: read each row once, write it down the panel's column.
      for (int64_t j = 0; j < w; ++j)
        for (int64_t p = 0; p < kc; ++p) d[p * width + j] = scale * Elem<T>::load(s, j * rs + p * ps);
    }
  }
}

#ifdef AMR_X86_KERNELS
// GCC 12 reports the unspecified pass-through operand inside its own shuffle and masked-load intrinsics as "maybe
// uninitialized"; nothing here reads an uninitialized value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// n ≤ 16 consecutive values as f32 (bf16 is the high half of an f32), zero past n.
AMR_AVX512 inline __m512 load_f32(const float* s, int64_t n) {
  return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), s);
}
AMR_AVX512 inline __m512 load_f32(const uint16_t* s, int64_t n) {
  const __m256i h = _mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1), s);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// r[i] becomes column i of the 16×16 block whose rows were r[0..15]: pairs of rows interleaved, then 4×4 blocks
// within each 128-bit lane, then the lanes themselves.
AMR_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], lane L: column 4L + c of rows 4g .. 4g+3.
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
    r[c] = _mm512_shuffle_f32x4(v0, w0, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + c] = _mm512_shuffle_f32x4(v0, w0, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + c] = _mm512_shuffle_f32x4(v1, w1, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + c] = _mm512_shuffle_f32x4(v1, w1, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// pack_generic's layout with 16-wide vectors: a copy per step of k when X is contiguous along r, else 16×16
// blocks transposed in registers (the scalar loop's strided stores cost more than the product for short M).
template <typename T>
AMR_AVX512 void pack_avx512(float* dst, int64_t panel_stride, const T* src, int64_t rs, int64_t ps, int64_t rows,
                            int64_t p0, int64_t kc, int width, float scale) {
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* d = dst + (r0 / width) * panel_stride;
    const int64_t w = std::min<int64_t>(width, rows - r0);
    const T* s = src + r0 * rs + p0 * ps;
    for (int64_t j0 = 0; j0 < width; j0 += 16) {
      const int64_t lanes = std::min<int64_t>(16, width - j0), jn = std::max<int64_t>(0, std::min(lanes, w - j0));
      const __mmask16 store = __mmask16((1u << lanes) - 1);
      if (rs == 1) {
        for (int64_t p = 0; p < kc; ++p)
          _mm512_mask_storeu_ps(d + p * width + j0, store, _mm512_mul_ps(sv, load_f32(s + p * ps + j0, jn)));
        continue;
      }
      for (int64_t pb = 0; pb < kc; pb += 16) {
        const int64_t pn = std::min<int64_t>(16, kc - pb);
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < jn ? _mm512_mul_ps(sv, load_f32(s + (j0 + i) * rs + pb, pn)) : _mm512_setzero_ps();
        transpose16(r);
        for (int64_t t = 0; t < pn; ++t) _mm512_mask_storeu_ps(d + (pb + t) * width + j0, store, r[t]);
      }
    }
  }
}
#pragma GCC diagnostic pop
#endif

// Any CPU: the same order of operations with a separate multiply and add (the build does not contract them), in
// GCC/Clang vectors of four that map to SSE2 or NEON registers: 4×12 keeps its 12 accumulators, 3 values of op(B)
// and a broadcast within SSE2's 16 registers.
typedef float Vec4 __attribute__((vector_size(16), aligned(4)));

template <int MR, int NV>
void kernel_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  Vec4 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      if (accumulate) std::memcpy(&acc[r][v], c + r * ldc + 4 * v, sizeof(Vec4));
      else acc[r][v] = Vec4{0.f, 0.f, 0.f, 0.f};
  for (int64_t p = 0; p < kc; ++p) {
    Vec4 bv[NV];
    std::memcpy(bv, b, sizeof(bv));
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] += a[r] * bv[v];
    a += MR;
    b += 4 * NV;
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) std::memcpy(c + r * ldc + 4 * v, &acc[r][v], sizeof(Vec4));
}

const MicroKernel kGeneric{4, 12, kernel_generic<4, 3>, nullptr, "generic"};
#ifdef AMR_X86_KERNELS
const MicroKernel kAvx512{kAvx512Rows, 32, kernel_avx512, edge_avx512, "avx512"};
const MicroKernel kAvx2{6, 16, kernel_avx2<6>, nullptr, "avx2"};
bool has_avx512() {
  static const bool yes =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return yes;
}
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

const MicroKernel* best_kernel() {
#ifdef AMR_X86_KERNELS
  if (has_avx512()) return &kAvx512;
  if (has_avx2()) return &kAvx2;
#endif
  return &kGeneric;
}

const MicroKernel*& chosen() {
  static const MicroKernel* k = best_kernel();
  return k;
}

}  // namespace

const MicroKernel& micro_kernel() { return *chosen(); }

bool set_micro_kernel(const char* name) {
  const MicroKernel* k = nullptr;
  if (!std::strcmp(name, "auto")) k = best_kernel();
  else if (!std::strcmp(name, "generic")) k = &kGeneric;
#ifdef AMR_X86_KERNELS
  else if (!std::strcmp(name, "avx512") && has_avx512()) k = &kAvx512;
  else if (!std::strcmp(name, "avx2") && has_avx2()) k = &kAvx2;
#endif
  if (!k) return false;
  chosen() = k;
  return true;
}

void pack_panels(float* dst, int64_t panel_stride, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t p0,
                 int64_t kc, int width, float scale) {
#ifdef AMR_X86_KERNELS
  if (chosen() == &kAvx512) return pack_avx512(dst, panel_stride, src, rs, ps, rows, p0, kc, width, scale);
#endif
  pack_generic(dst, panel_stride, src, rs, ps, rows, p0, kc, width, scale);
}

void pack_panels(float* dst, int64_t panel_stride, const uint16_t* src, int64_t rs, int64_t ps, int64_t rows,
                 int64_t p0, int64_t kc, int width, float scale) {
#ifdef AMR_X86_KERNELS
  if (chosen() == &kAvx512) return pack_avx512(dst, panel_stride, src, rs, ps, rows, p0, kc, width, scale);
#endif
  pack_generic(dst, panel_stride, src, rs, ps, rows, p0, kc, width, scale);
}

void macro_kernel(const MicroKernel& uk, int64_t mc, int64_t nc, int64_t kc, const float* a, const float* b,
                  int64_t b_stride, float* c, int64_t ldc, bool accumulate) {
  const int mr = uk.mr, nr = uk.nr;
  alignas(64) float tile[32 * 32];  // MR·NR of the widest kernel
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    const float* ap = a + (i0 / mr) * kc * mr;
    const int64_t h = std::min<int64_t>(mr, mc - i0);
    for (int64_t j0 = 0; j0 < nc; j0 += nr) {
      const float* bp = b + (j0 / nr) * b_stride;
      const int64_t w = std::min<int64_t>(nr, nc - j0);
      float* cp = c + i0 * ldc + j0;
      if (h == mr && w == nr) {
        uk.fn(kc, ap, bp, cp, ldc, accumulate);
        continue;
      }
      if (uk.edge) {
        uk.edge(kc, ap, bp, cp, ldc, accumulate, int(h), int(w));
        continue;
      }
      if (accumulate)
        for (int64_t r = 0; r < h; ++r) std::memcpy(tile + r * nr, cp + r * ldc, sizeof(float) * size_t(w));
      uk.fn(kc, ap, bp, tile, nr, accumulate);
      for (int64_t r = 0; r < h; ++r) std::memcpy(cp + r * ldc, tile + r * nr, sizeof(float) * size_t(w));
    }
  }
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
