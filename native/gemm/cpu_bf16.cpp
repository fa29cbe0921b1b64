// The AMX product of cpu_bf16.h, blocked the BLIS way. op(b) is packed once per block of kNc columns, for all of k,
// into panels of 32 columns whose rows are k-pairs, the layout TDPBF16PS reads B in (row q of a 16-column tile holds
// b[2q][j], b[2q+1][j] for its 16 columns j, so a panel's two column tiles are 64 bytes apart with a 128-byte row
// stride). Each thread takes kMc rows: it packs their op(a) slice by slice (kKc of k at a time, row-major, k padded
// with zeros to a multiple of 32) and runs 32 × 32 register blocks (4 accumulator tiles, 2 A tiles and 2 B tiles: the
// 8 tile registers AMX has) into its own f32 sums, padded to whole blocks, which it hands to the caller's finish.
#include "cpu_bf16.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "../runtime/common.h"
#include "../runtime/thread_pool.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define AMR_HAVE_AMX 1
#endif

namespace amr {
namespace gemm {
namespace cpu {

namespace {

std::atomic<bool> g_use{true};

constexpr int64_t kBlock = 32;   // rows and columns of one register block (2 × 2 tiles of 16)
constexpr int64_t kKStep = 32;   // k per TDPBF16PS (16 pairs)
constexpr int64_t kKc = 512;     // k per slice (a multiple of kKStep): a 32-column panel of it is 32 KB, in L1/L2
constexpr int64_t kMc = 128;     // rows per thread task (a multiple of kBlock): op(a)'s block stays in L2
constexpr int64_t kNc = 2048;    // columns per packed op(b) block (a multiple of kBlock)

constexpr int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

#ifdef AMR_HAVE_AMX
// Linux hands out the AMX tile state only to a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA); a kernel or sandbox that refuses leaves the f32 path.
constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows of 64 bytes: 16 f32 sums, 32 bf16 of a row of A, or 16 pairs of 16 columns of B.
__attribute__((target("amx-tile"))) void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC does not see that ldtilecfg reads the struct and drops the stores above without this barrier.
  asm volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) void release_tiles() { _tile_release(); }

// Packs op(b)[0 .. k, j0 .. j0+nc] into panels of 32 columns: panel p, pair q holds at (q·32 + j)·2 + {0, 1} the
// values at 2q and 2q+1 of column j0 + 32p + j; zero past k (up to the padded kp) or n. A slice of k from k0 (even)
// is the panel from pair k0/2 on.
void pack_b(uint16_t* dst, const uint16_t* b, int64_t n, int64_t k, bool trans_b, int64_t kp, int64_t j0, int64_t nc) {
  const int64_t pairs = kp / 2, panels = (nc + kBlock - 1) / kBlock;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      uint16_t* out = dst + p * pairs * kBlock * 2;
      std::fill(out, out + pairs * kBlock * 2, uint16_t(0));
      const int64_t cols = std::min(kBlock, nc - p * kBlock), c0 = j0 + p * kBlock;
      // Read along memory either way: down a row of b (transposed) or along a row of op(b), whose next row is n away.
      if (trans_b) {
        for (int64_t j = 0; j < cols; ++j)
          for (int64_t kk = 0; kk < k; ++kk) out[((kk / 2) * kBlock + j) * 2 + (kk & 1)] = b[(c0 + j) * k + kk];
      } else {
        for (int64_t kk = 0; kk < k; ++kk) {
          const uint16_t* row = b + kk * n + c0;
          uint16_t* o = out + (kk / 2) * kBlock * 2 + (kk & 1);
          for (int64_t j = 0; j < cols; ++j) o[2 * j] = row[j];
        }
      }
    }
  });
}

// Packs op(a)[i0 .. i0+mc, k0 .. k0+kc] row-major into rows of kcp (zero past k or m), 32-row panels back to back.
void pack_a(uint16_t* dst, const uint16_t* a, int64_t m, int64_t k, bool trans_a, int64_t i0, int64_t mc, int64_t k0,
            int64_t kc, int64_t kcp) {
  const int64_t rows = round_up(mc, kBlock);
  std::fill(dst, dst + rows * kcp, uint16_t(0));
  if (!trans_a) {
    for (int64_t r = 0; r < mc; ++r) std::memcpy(dst + r * kcp, a + (i0 + r) * k + k0, static_cast<size_t>(kc) * 2);
    return;
  }
  // Transposed: read along a's rows (op(a)'s columns), which are contiguous in i.
  for (int64_t kk = 0; kk < kc; ++kk) {
    const uint16_t* src = a + (k0 + kk) * m + i0;
    for (int64_t r = 0; r < mc; ++r) dst[r * kcp + kk] = src[r];
  }
}

// The 32 × 32 block at c (row stride ldc floats) += or = the packed A panel (kcp columns) times the B panel.
__attribute__((target("amx-tile,amx-bf16"))) void block(float* c, int64_t ldc, const uint16_t* ap, const uint16_t* bp,
                                                         int64_t kcp, bool accumulate) {
  const size_t cs = static_cast<size_t>(ldc) * 4;
  if (accumulate) {
    _tile_loadd(0, c, cs);
    _tile_loadd(1, c + 16, cs);
    _tile_loadd(2, c + 16 * ldc, cs);
    _tile_loadd(3, c + 16 * ldc + 16, cs);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const size_t as = static_cast<size_t>(kcp) * 2, bs = kBlock * 2 * 2;
  for (int64_t kk = 0; kk < kcp; kk += kKStep) {
    const uint16_t* bq = bp + (kk / 2) * kBlock * 2;
    _tile_loadd(4, ap + kk, as);
    _tile_loadd(5, ap + 16 * kcp + kk, as);
    _tile_loadd(6, bq, bs);
    _tile_loadd(7, bq + 32, bs);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, cs);
  _tile_stored(1, c + 16, cs);
  _tile_stored(2, c + 16 * ldc, cs);
  _tile_stored(3, c + 16 * ldc + 16, cs);
}

bool amx_usable() {
  static const bool ok = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
                         syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}
#endif

}  // namespace

bool bf16_amx_supported() {
#ifdef AMR_HAVE_AMX
  return amx_usable();
#else
  return false;
#endif
}

bool bf16_amx_enabled() { return g_use.load() && bf16_amx_supported(); }

void set_use_bf16_amx(bool on) { g_use = on; }

void bf16_amx_product(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, bool trans_a,
                      bool trans_b, const BlockFinish& finish) {
#ifdef AMR_HAVE_AMX
  if (m <= 0 || n <= 0) return;
  const int64_t kp = std::max<int64_t>(kKStep, round_up(k, kKStep));  // k = 0: one slice of zeros, sums of 0
  const int64_t pairs = kp / 2;
  // op(b) packed once per column block for all of k (K·2048·2 bytes: 3 MB at K = 768), so a thread's rows run
  // every slice back to back and finish with their sums complete.
  // Kept by the calling thread (the backend's queue) and only grown, so a product allocates and faults in no pages
  // once the largest shape has run.
  thread_local std::vector<uint16_t> bbuf;
  const size_t bsize = static_cast<size_t>(kp * round_up(std::min(kNc, n), kBlock));
  if (bbuf.size() < bsize) bbuf.resize(bsize);
  uint16_t* const bpack = bbuf.data();
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nc = std::min(kNc, n - j0), ncp = round_up(nc, kBlock);
    pack_b(bpack, b, n, k, trans_b, kp, j0, nc);
    parallel_for((m + kMc - 1) / kMc, 1, [&](int64_t t0, int64_t t1) {
      thread_local std::vector<uint16_t> apack;
      thread_local std::vector<float> acc;
      apack.resize(static_cast<size_t>(round_up(kMc, kBlock) * std::min(kKc, kp)));
      acc.resize(static_cast<size_t>(round_up(kMc, kBlock) * ncp));
      configure_tiles();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i0 = t * kMc, mc = std::min(kMc, m - i0);
        for (int64_t k0 = 0; k0 < kp; k0 += kKc) {
          const int64_t kc = std::min(kKc, std::max<int64_t>(0, k - k0)), kcp = std::min(kKc, kp - k0);
          pack_a(apack.data(), a, m, k, trans_a, i0, mc, k0, kc, kcp);
          // Whole 32 × 32 blocks of acc, padded rows and columns included (they hold sums of zeros), so no edge
          // case reaches the tiles; finish sees only the rows and columns inside the product.
          for (int64_t ib = 0; ib * kBlock < mc; ++ib)
            for (int64_t jb = 0; jb * kBlock < nc; ++jb)
              block(acc.data() + ib * kBlock * ncp + jb * kBlock, ncp, apack.data() + ib * kBlock * kcp,
                    bpack + jb * pairs * kBlock * 2 + (k0 / 2) * kBlock * 2, kcp, k0 > 0);
        }
        finish(acc.data(), ncp, i0, i0 + mc, j0, j0 + nc);
      }
      release_tiles();
    });
  }
#else
  (void)a, (void)b, (void)m, (void)n, (void)k, (void)trans_a, (void)trans_b, (void)finish;
  throw Error("the AMX bf16 product was built without x86-64 Linux intrinsics");
#endif
}

void bf16_amx_product(float* c, const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, bool trans_a,
                      bool trans_b) {
  bf16_amx_product(a, b, m, n, k, trans_a, trans_b, [&](const float* acc, int64_t ld, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(c + i * n + j0, acc + (i - i0) * ld, static_cast<size_t>(j1 - j0) * 4);
  });
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
