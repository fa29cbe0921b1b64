#include <algorithm>
#include <cstring>
#include <type_traits>

#include "../runtime/thread_pool.h"
#include "layout.h"

namespace amr {
namespace layout {
namespace cpu {

namespace {

// Roughly this many elements per parallel chunk, so small copies stay on one thread.
constexpr int64_t kGrain = 1 << 14;

int64_t rows_grain(int64_t row) { return row >= kGrain ? 1 : kGrain / (row > 0 ? row : 1); }

// One row (the innermost dimension) at a time, its flat index split once. Along a row every offset and axis
// coordinate moves by a constant, so the part [j0, j1) where each axis moving with the row (one coordinate per
// step: pads and crops) is inside is a fixed-stride run, a memcpy when both sides are contiguous; only the elements
// outside it (the padding) map their coordinates one by one.
template <typename T>
void copy_plan(const CopyPlan& p, T* out, const T* in) {
  const int last = p.rank - 1;
  const int64_t row = p.rank > 0 ? p.size[last] : 1;
  const int64_t rows = plan_elements(p) / row;
  const int64_t ss = p.rank > 0 ? p.src_stride[last] : 0, ds = p.rank > 0 ? p.dst_stride[last] : 0;
  int64_t coef[kMaxAxes] = {0, 0, 0, 0};
  bool unit = true;  // every moving axis moves by one coordinate per step
  int64_t run_ss = ss, run_ds = ds;
  for (int a = 0; a < p.axes; ++a) {
    coef[a] = p.rank > 0 ? p.axis[a].coef[last] : 0;
    if (coef[a] == 0) continue;
    unit = unit && coef[a] == 1;
    (p.axis[a].dst ? run_ds : run_ss) += p.axis[a].stride;
  }
  const bool contiguous = run_ss == 1 && run_ds == 1 && p.scale == 1.f;
  parallel_for(rows, rows_grain(row), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const Cursor c = plan_cursor(p, r * row);
      auto at = [&](int64_t j) {
        Cursor e = c;
        e.src += j * ss;
        e.dst += j * ds;
        for (int a = 0; a < p.axes; ++a) e.coord[a] += j * coef[a];
        return e;
      };
      int64_t j0 = 0, j1 = unit ? row : 0;
      for (int a = 0; a < p.axes; ++a)
        if (coef[a] == 1) {
          j0 = std::max(j0, -c.coord[a]);
          j1 = std::min(j1, p.axis[a].extent - c.coord[a]);
        }
      j0 = std::min(j0, row);
      j1 = std::max(j1, j0);
      Step s;
      for (int64_t j = 0; j < j0; ++j)
        if (cursor_step(p, at(j), &s)) copy_element(p, out, in, s);
      if (j0 < j1 && cursor_step(p, at(j0), &s)) {
        if (s.src >= 0 && contiguous) {
          std::memcpy(out + s.dst, in + s.src, size_t(j1 - j0) * sizeof(T));
        } else {
          const int64_t step = s.src < 0 ? 0 : run_ss;  // a row whose fixed axis is outside is all padding
          for (int64_t j = j0; j < j1; ++j, s.src += step, s.dst += run_ds) copy_element(p, out, in, s);
        }
      }
      for (int64_t j = j1; j < row; ++j)
        if (cursor_step(p, at(j), &s)) copy_element(p, out, in, s);
    }
  });
}

// The transposing permutes (see transposed_dim), in 32 x 32 tiles of (b, innermost): a tile's reads and writes
// each stay within 32 cache lines.
template <typename T>
void transpose_plan(const CopyPlan& p, int b, T* out, const T* in) {
  constexpr int64_t kTile = 32;
  const int last = p.rank - 1;
  const int64_t na = p.size[last], nb = p.size[b], sa = p.src_stride[last], db = p.dst_stride[b];
  const int64_t ta = (na + kTile - 1) / kTile, tb = (nb + kTile - 1) / kTile;
  const int64_t outer = plan_elements(p) / (na * nb);
  parallel_for(outer * ta * tb, kGrain / (kTile * kTile), [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t z = item / (ta * tb), t = item % (ta * tb);
      const int64_t a0 = t / tb * kTile, b0 = t % tb * kTile;
      const int64_t a1 = std::min(a0 + kTile, na), b1 = std::min(b0 + kTile, nb);
      int64_t src, dst;
      outer_offsets(p, b, z, &src, &dst);
      for (int64_t j = b0; j < b1; ++j)
        for (int64_t a = a0; a < a1; ++a) out[dst + j * db + a] = in[src + j + a * sa];
    }
  });
}

}  // namespace

void copy(GpuStream, const CopyPlan& plan, void* out, const void* in, DType dt) {
  const CopyPlan p = simplify(plan);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int b = transposed_dim(p);
    if (b >= 0)
      transpose_plan(p, b, static_cast<T*>(out), static_cast<const T*>(in));
    else
      copy_plan(p, static_cast<T*>(out), static_cast<const T*>(in));
  });
}

void pad_backward(GpuStream, const PadGeometry& g, void* grad_in, const void* grad_out, DType dt) {
  with_float_dtype(dt, "pad2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* gi = static_cast<T*>(grad_in);
    const T* go = static_cast<const T*>(grad_out);
    const int64_t total = g.planes * g.in_h * g.in_w * g.inner;
    parallel_for(total, kGrain / 8, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) Elem<T>::store(gi, size_t(e), pad_gather(g, go, e));
    });
  });
}

// Work items are (outer row, block of up to kColumns inner values), so a reduction with one outer row (the
// summary mean) still spreads over the threads; each block accumulates the n input rows in order, reading them
// contiguously.
constexpr int64_t kColumns = 512;

// A contiguous row's sum in 8 interleaved partials added in a fixed order: one running sum would wait on the
// add latency for every element.
template <typename T>
float row_sum(const T* src, int64_t n) {
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) part[j] += Elem<T>::load(src, size_t(k + j));
  for (; k < n; ++k) part[k % 8] += Elem<T>::load(src, size_t(k));
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

void reduce(GpuStream, const ReduceGeometry& g, void* out, const void* in, DType dt) {
  with_float_dtype(dt, "sum", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(in);
    const int64_t blocks = (g.inner + kColumns - 1) / kColumns;
    parallel_for(g.outer * blocks, rows_grain(g.n * std::min(g.inner, kColumns)), [&](int64_t lo, int64_t hi) {
      float acc[kColumns];
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t r = item / blocks, i0 = item % blocks * kColumns, w = std::min(kColumns, g.inner - i0);
        std::fill(acc, acc + w, 0.f);
        const T* src = x + r * g.n * g.inner + i0;
        if (g.inner == 1) {
          Elem<T>::store(o, size_t(r), row_sum(src, g.n) * g.alpha);
          continue;
        }
        for (int64_t k = 0; k < g.n; ++k)
          for (int64_t i = 0; i < w; ++i) acc[i] += Elem<T>::load(src, size_t(k * g.inner + i));
        for (int64_t i = 0; i < w; ++i) Elem<T>::store(o, size_t(r * g.inner + i0 + i), acc[i] * g.alpha);
      }
    });
  });
}

}  // namespace cpu
}  // namespace layout
}  // namespace amr
