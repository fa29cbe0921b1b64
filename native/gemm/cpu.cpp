#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "../activation/rows.h"
#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "blas.h"
#include "cpu_bf16.h"
#include "cpu_microkernel.h"
#include "gemm.h"

namespace amr {
namespace gemm {
namespace cpu {

namespace {

// out[j] = a[j] + b[j] (b may be null: a copy), in the vector clones: the f32 epilogue's bias and residual passes,
// which as plain loops in the template below stayed scalar (about 4% of a ViT-B forward).
AMR_VECTOR_CLONES void add_row(float* out, const float* a, const float* b, int64_t n) {
  if (b)
    for (int64_t j = 0; j < n; ++j) out[j] = a[j] + b[j];
  else
    for (int64_t j = 0; j < n; ++j) out[j] = a[j];
}

// C = act(acc + bias) + residual over rows [i0, i1) and columns [j0, j1) of batch entry e, from the f32 product
// acc (ldacc apart, pointing at element (i0, j0); it may be C itself, in place), keeping the preactivation when
// asked. Serial: the built-in product calls it on each finished tile from inside its own parallel loop.
template <typename T>
void epilogue_block(const GemmArgs& g, int64_t e, const float* acc, int64_t ldacc, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) {
  const T* bias = static_cast<const T*>(g.bias);
  const T* res = g.residual ? static_cast<const T*>(g.residual) + e * g.stride_c : nullptr;
  T* pre = g.preactivation ? static_cast<T*>(g.preactivation) + e * g.stride_c : nullptr;
  T* C = static_cast<T*>(g.c) + e * g.stride_c;
  // Per row: bias and preactivation, then the activation over the whole segment (activation/rows.h's loops that
  // vectorize), then the residual.
  thread_local std::vector<float> row;
  if (int64_t(row.size()) < j1 - j0) row.resize(size_t(j1 - j0));
  float* v = row.data() - j0;
  if constexpr (std::is_same_v<T, float>) {
    // The same operations in the same order, on whole rows.
    const int64_t n = j1 - j0;
    for (int64_t i = i0; i < i1; ++i) {
      add_row(row.data(), acc + (i - i0) * ldacc, bias ? bias + j0 : nullptr, n);
      if (pre) std::copy(row.data(), row.data() + n, pre + i * g.n + j0);
      activation::cpu::apply_row(g.activation, row.data(), n);
      add_row(C + i * g.n + j0, row.data(), res ? res + i * g.n + j0 : nullptr, n);
    }
    return;
  }
  for (int64_t i = i0; i < i1; ++i) {
    const float* a = acc + (i - i0) * ldacc - j0;
    for (int64_t j = j0; j < j1; ++j) {
      v[j] = bias ? a[j] + Elem<T>::load(bias, j) : a[j];
      if (pre) Elem<T>::store(pre, i * g.n + j, v[j]);
    }
    activation::cpu::apply_row(g.activation, row.data(), j1 - j0);
    for (int64_t j = j0; j < j1; ++j)
      Elem<T>::store(C, i * g.n + j, res ? v[j] + Elem<T>::load(res, i * g.n + j) : v[j]);
  }
}

bool has_epilogue(const GemmArgs& g) {
  return g.bias || g.residual || g.preactivation || g.activation != Activation::None;
}

// The whole of batch entry e's epilogue, rows in parallel, over C in place (after the host BLAS).
void apply_epilogue_f32(const GemmArgs& g, int64_t e) {
  float* C = static_cast<float*>(g.c) + e * g.stride_c;
  parallel_for(g.m, 16,
               [&](int64_t r0, int64_t r1) { epilogue_block<float>(g, e, C + r0 * g.n, g.n, r0, r1, 0, g.n); });
}

// f32 through the host BLAS straight from and into the caller's buffers: the transpositions go to sgemm, C is
// written by it and the epilogue (when there is one) runs over C in place, so no operand or result is copied.
// Not when the residual is C itself (sgemm would overwrite it before it is read).
bool direct_f32(const GemmArgs& g, SgemmFn sgemm) {
  return sgemm && g.dtype == DType::F32 && g.m > 0 && g.n > 0 && g.k > 0 && (!g.residual || g.residual != g.c);
}

void gemm_f32_blas(const GemmArgs& g, SgemmFn sgemm) {
  for (int64_t e = 0; e < g.batch; ++e) {
    const float* A = static_cast<const float*>(g.a) + e * g.stride_a;
    const float* B = static_cast<const float*>(g.b) + e * g.stride_b;
    float* C = static_cast<float*>(g.c) + e * g.stride_c;
    sgemm(kCblasRowMajor, g.trans_a ? kCblasTrans : kCblasNoTrans, g.trans_b ? kCblasTrans : kCblasNoTrans, (int)g.m,
          (int)g.n, (int)g.k, 1.f, A, (int)(g.trans_a ? g.m : g.k), B, (int)(g.trans_b ? g.k : g.n), 0.f, C, (int)g.n);
    if (has_epilogue(g)) apply_epilogue_f32(g, e);
  }
}

// op(B) is packed whole along k for a block of at most this many floats at a time (shared by all threads, read
// from L3), so each pass over the threads packs it once and every block of op(A) then runs over all of it.
constexpr int64_t kPackedBFloats = int64_t(4) << 20;

// The built-in product. With rows enough for the threads, work is cut into units (batch entry, block of columns),
// whose op(B) is packed in one parallel pass, and tasks (unit, block of rows, group of columns), each of which packs
// its rows of op(A) one k slice at a time, runs the micro-kernel over its tile of C for all of k and applies the
// epilogue while the tile is still in cache. With few rows, tasks are groups of columns alone. Every element of C is
// one task's fused chain over k in increasing order, so the result is the same for any split and thread count.
template <typename T>
void gemm_builtin(const GemmArgs& g) {
  const MicroKernel& uk = micro_kernel();
  const int64_t mr = uk.mr, nr = uk.nr, K = g.k, nc_l2 = block_n(uk);
  // Where the product accumulates: C itself when it is f32 and does not hold the residual the epilogue still has to
  // read; otherwise a per-task f32 scratch tile.
  const bool direct = std::is_same<T, float>::value && g.residual != g.c;
  const bool epilogue = has_epilogue(g) || !direct;
  const T* A = static_cast<const T*>(g.a);
  const T* B = static_cast<const T*>(g.b);
  const int64_t a_rs = g.trans_a ? 1 : K, a_ps = g.trans_a ? g.m : 1;
  const int64_t b_rs = g.trans_b ? K : 1, b_ps = g.trans_b ? 1 : g.n;
  const int64_t kk = std::max<int64_t>(K, 1);
  // Blocks of columns as even as the budget allows (a multiple of NR), so no pass is left with a sliver.
  const int64_t panels_fit = std::max<int64_t>(1, kPackedBFloats / (kk * nr));
  const int64_t jc_blocks = ((g.n + nr - 1) / nr + panels_fit - 1) / panels_fit;
  const int64_t nc_max = ((g.n + jc_blocks - 1) / jc_blocks + nr - 1) / nr * nr;
  // Rows of op(A) per task: blocks of equal size (a multiple of MR), so that no task is left with a sliver.
  const int64_t ic_blocks = (g.m + block_m(uk) - 1) / block_m(uk);
  const int64_t mc_max = ((g.m + ic_blocks - 1) / ic_blocks + mr - 1) / mr * mr;
  const int64_t want = 4 * int64_t(thread_count());  // tasks enough for the pool to even out uneven ones
  // Where a task accumulates its block of C (rows from i0, columns from j0, w wide) of batch entry e, and its row
  // stride: C itself, or the task's scratch, zeroed when there is no k to sum over.
  const auto accumulator = [&](Scratch& scratch, int64_t e, int64_t i0, int64_t rows, int64_t j0, int64_t w) {
    float* acc = direct ? reinterpret_cast<float*>(g.c) + e * g.stride_c + i0 * g.n + j0 : scratch.get(rows * w);
    const int64_t ld = direct ? g.n : w;
    if (K == 0)
      for (int64_t i = 0; i < rows; ++i) std::fill(acc + i * ld, acc + i * ld + w, 0.f);
    return std::make_pair(acc, ld);
  };

  if (ic_blocks * g.batch < want) {
    // Few rows: tasks are groups of columns, each over all rows, packing its own columns of op(B) one k slice at a
    // time, so op(B) is still packed once and no separate pass (and wait for the pool) is needed.
    const int64_t panels = (g.n + nr - 1) / nr;
    const int64_t groups = std::min(panels, (want + g.batch - 1) / g.batch);
    const int64_t group_w = (panels + groups - 1) / groups * nr;
    parallel_for(g.batch * groups, 1, [&](int64_t t0, int64_t t1) {
      thread_local Scratch a_buf, b_buf, c_buf;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t e = t / groups, j0 = t % groups * group_w;
        if (j0 >= g.n) continue;
        const int64_t w = std::min(group_w, g.n - j0);
        const auto [acc, ldacc] = accumulator(c_buf, e, 0, g.m, j0, w);
        for (int64_t p0 = 0; p0 < K; p0 += kBlockK) {
          const int64_t kc = std::min(kBlockK, K - p0);
          float* bp = b_buf.get((w + nr - 1) / nr * nr * kc);
          pack_panels(bp, kc * nr, B + e * g.stride_b + j0 * b_rs, b_rs, b_ps, w, p0, kc, int(nr), 1.f);
          for (int64_t i0 = 0; i0 < g.m; i0 += mc_max) {
            const int64_t mc = std::min(mc_max, g.m - i0);
            float* ap = a_buf.get((mc + mr - 1) / mr * mr * kc);
            pack_panels(ap, kc * mr, A + e * g.stride_a + i0 * a_rs, a_rs, a_ps, mc, p0, kc, int(mr), 1.f);
            for (int64_t js = 0; js < w; js += nc_l2)
              macro_kernel(uk, mc, std::min(nc_l2, w - js), kc, ap, bp + js * kc, kc * nr, acc + i0 * ldacc + js,
                           ldacc, p0 > 0);
          }
        }
        if (epilogue) epilogue_block<T>(g, e, acc, ldacc, 0, g.m, j0, j0 + w);
      }
    });
    return;
  }

  // Units jc-major so that, when op(B) is shared by the batch (stride 0), a pass packs it once for all entries.
  const int64_t units = jc_blocks * g.batch;
  const bool shared_b = g.stride_b == 0;
  thread_local Scratch packed;
  for (int64_t u0 = 0; u0 < units;) {
    // A pass: as many consecutive units as their packed op(B) fits in the budget (at least one).
    struct Unit {
      int64_t e, j0, nc;
      float* b;  // packed op(B) panels, K·NR apart (set after the slots are laid out)
      int64_t slot;
    };
    std::vector<Unit> pass;
    std::vector<int64_t> slot_offset;  // floats into `packed`
    int64_t floats = 0;
    for (int64_t u = u0; u < units; ++u) {
      const int64_t jc = u / g.batch, e = u % g.batch;
      const int64_t j0 = jc * nc_max, nc = std::min(nc_max, g.n - j0);
      const bool new_slot = pass.empty() || !shared_b || pass.back().j0 != j0;
      const int64_t need = (nc + nr - 1) / nr * nr * kk;
      if (new_slot && !pass.empty() && floats + need > kPackedBFloats) break;
      if (new_slot) {
        slot_offset.push_back(floats);
        floats += need;
      }
      pass.push_back(Unit{e, j0, nc, nullptr, int64_t(slot_offset.size()) - 1});
    }
    u0 += int64_t(pass.size());
    float* packed_b = packed.get(floats);
    for (Unit& un : pass) un.b = packed_b + slot_offset[un.slot];

    // Pack each slot's panels, all of k, in parallel (a panel is one item).
    std::vector<int64_t> slot_unit, panel_start{0};
    for (size_t i = 0; i < pass.size(); ++i)
      if (slot_unit.empty() || pass[i].slot != pass[slot_unit.back()].slot) {
        slot_unit.push_back(int64_t(i));
        panel_start.push_back(panel_start.back() + (pass[i].nc + nr - 1) / nr);
      }
    if (K > 0)
      parallel_for(panel_start.back(), std::max<int64_t>(1, 16384 / (K * nr)), [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t s = std::upper_bound(panel_start.begin(), panel_start.end(), q) - panel_start.begin() - 1;
          const Unit& un = pass[slot_unit[s]];
          const int64_t j = (q - panel_start[s]) * nr;
          pack_panels(un.b + j * K, K * nr, B + un.e * g.stride_b + (un.j0 + j) * b_rs, b_rs, b_ps,
                      std::min(nr, un.nc - j), 0, K, int(nr), 1.f);
        }
      });

    // Tasks: columns of each unit split into groups when rows alone give the threads too few tasks. The rows are cut
    // into a multiple of the thread count of blocks, whole MR panels each, as even as the panels allow: 1576 rows in
    // blocks of 112 were 14 full tasks and a sliver, which the pool's chunks of two dealt 4 : 3 to two threads, and
    // one thread idled an eighth of every large product.
    const int64_t panels_m = (g.m + mr - 1) / mr;
    // The pool deals a loop of more than 4·threads items in 4·threads chunks of equal count, so a count that is not a
    // multiple of that is uneven again (1568 rows in 14 blocks: seven chunks of two); a single unit's blocks are
    // rounded up to a multiple of it.
    const int64_t threads = thread_count();
    const int64_t quantum = pass.size() == 1 && ic_blocks > want ? want : threads;
    const int64_t row_blocks = std::min(panels_m, (ic_blocks + quantum - 1) / quantum * quantum);
    const auto block_rows = [&](int64_t ic) {
      const int64_t i0 = ic * panels_m / row_blocks * mr, i1 = std::min(g.m, (ic + 1) * panels_m / row_blocks * mr);
      return std::make_pair(i0, i1 - i0);
    };
    const int64_t row_tasks = int64_t(pass.size()) * row_blocks;
    const int64_t panels_max = (nc_max + nr - 1) / nr;
    const int64_t groups = row_tasks >= want ? 1 : std::min(panels_max, (want + row_tasks - 1) / row_tasks);
    const int64_t group_w = (panels_max + groups - 1) / groups * nr;
    parallel_for(row_tasks * groups, 1, [&](int64_t t0, int64_t t1) {
      thread_local Scratch a_buf, c_buf;
      for (int64_t t = t0; t < t1; ++t) {
        const Unit& un = pass[t / (row_blocks * groups)];
        const int64_t ic = t / groups % row_blocks, jg = t % groups;
        const auto [i0, mc] = block_rows(ic);
        const int64_t jl = jg * group_w;  // within the unit
        if (jl >= un.nc || mc <= 0) continue;
        const int64_t w = std::min(group_w, un.nc - jl), j0 = un.j0 + jl;
        const auto [acc, ldacc] = accumulator(c_buf, un.e, i0, mc, j0, w);
        const T* a = A + un.e * g.stride_a + i0 * a_rs;
        for (int64_t p0 = 0; p0 < K; p0 += kBlockK) {
          const int64_t kc = std::min(kBlockK, K - p0);
          float* ap = a_buf.get((mc + mr - 1) / mr * mr * kc);
          pack_panels(ap, kc * mr, a, a_rs, a_ps, mc, p0, kc, int(mr), 1.f);
          for (int64_t js = 0; js < w; js += nc_l2)
            macro_kernel(uk, mc, std::min(nc_l2, w - js), kc, ap, un.b + (jl + js) * K + p0 * nr, K * nr, acc + js,
                         ldacc, p0 > 0);
        }
        if (epilogue) epilogue_block<T>(g, un.e, acc, ldacc, i0, i0 + mc, j0, j0 + w);
      }
    });
  }
}

}  // namespace

void gemm(GpuStream, const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  if (SgemmFn sgemm = host_sgemm(); direct_f32(g, sgemm)) return gemm_f32_blas(g, sgemm);
  // bf16 on AMX where the CPU has it: the epilogue writes each finished block straight from the tile sums.
  if (g.dtype == DType::BF16 && bf16_amx_enabled()) {
    for (int64_t e = 0; e < g.batch; ++e)
      bf16_amx_product(static_cast<const uint16_t*>(g.a) + e * g.stride_a, static_cast<const uint16_t*>(g.b) + e * g.stride_b,
                       g.m, g.n, g.k, g.trans_a, g.trans_b,
                       [&](const float* acc, int64_t ld, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
                         epilogue_block<uint16_t>(g, e, acc, ld, i0, i1, j0, j1);
                       });
    return;
  }
  // bf16 operands (which the host BLAS cannot read) and an in-place residual: the built-in product, which converts
  // while packing and keeps its sums out of C until the epilogue.
  with_float_dtype(g.dtype, "matmul", [&](auto* tag) { gemm_builtin<std::remove_pointer_t<decltype(tag)>>(g); });
}

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
