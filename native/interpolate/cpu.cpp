#include <algorithm>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "interpolate.h"

namespace amr {
namespace interpolate {
namespace cpu {

namespace {

// Roughly this many elements per parallel chunk, so small maps stay on one thread.
constexpr int64_t kGrainElements = 1 << 14;

int64_t grain(int64_t per_item) { return per_item >= kGrainElements ? 1 : kGrainElements / per_item; }

// Each sample's taps along both axes, computed once per call.
struct Taps {
  std::vector<Tap> y, x;  // [sample][out_h], [sample][out_w]
  explicit Taps(const Geometry& g) {
    const int ns = plan_samples(g);
    y.resize(size_t(ns) * g.out_h);
    x.resize(size_t(ns) * g.out_w);
    for (int s = 0; s < ns; ++s) {
      for (int o = 0; o < g.out_h; ++o) y[size_t(s) * g.out_h + o] = axis_tap(g, 0, s, o);
      for (int o = 0; o < g.out_w; ++o) x[size_t(s) * g.out_w + o] = axis_tap(g, 1, s, o);
    }
  }
};

// The input element under tap (ty, tx), or null where either tap is absent (zero padding).
template <typename T>
const T* corner(const T* map, const Tap& ty, bool y1, const Tap& tx, bool x1, int64_t row_stride, int64_t col_stride) {
  const int iy = y1 ? ty.i1 : ty.i0, ix = x1 ? tx.i1 : tx.i0;
  return iy < 0 || ix < 0 ? nullptr : map + iy * row_stride + ix * col_stride;
}

template <typename T>
float value(const T* p, int64_t i) {
  return p ? Elem<T>::load(p, size_t(i)) : 0.f;
}

template <typename T>
void forward_impl(const Geometry& g, T* out, const T* in) {
  const Taps taps(g);
  const bool per_sample = g.mode == Mode::GridSample;  // per-sample taps over one shared input map
  const int C = g.channels;
  const int64_t in_plane = int64_t(g.in_h) * g.in_w;
  if (g.layout == Layout::NLC) {
    const int64_t hw = int64_t(g.out_h) * g.out_w;
    parallel_for(g.batch * hw, grain(C), [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p) {
        const int b = int(p / hw), oy = int(p % hw / g.out_w), ox = int(p % g.out_w);
        T* o = out + p * C;
        if (!sample_kept(g, b)) {
          for (int c = 0; c < C; ++c) Elem<T>::store(o, c, 0.f);
          continue;
        }
        const int s = per_sample ? b : 0;
        const Tap& ty = taps.y[size_t(s) * g.out_h + oy];
        const Tap& tx = taps.x[size_t(s) * g.out_w + ox];
        const T* src = in + (per_sample ? 0 : b) * in_plane * C;
        const int64_t rs = int64_t(g.in_w) * C;
        const T *p00 = corner(src, ty, 0, tx, 0, rs, C), *p01 = corner(src, ty, 0, tx, 1, rs, C);
        const T *p10 = corner(src, ty, 1, tx, 0, rs, C), *p11 = corner(src, ty, 1, tx, 1, rs, C);
        for (int c = 0; c < C; ++c)
          Elem<T>::store(o, c, bilerp(ty, tx, value(p00, c), value(p01, c), value(p10, c), value(p11, c)));
      }
    });
    return;
  }
  // NCHW: one output row of one plane per item.
  const int64_t rows = int64_t(g.batch) * C * g.out_h;
  parallel_for(rows, grain(g.out_w), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t plane = r / g.out_h;
      const int oy = int(r % g.out_h), b = int(plane / C), c = int(plane % C);
      T* o = out + r * g.out_w;
      if (!sample_kept(g, b)) {
        for (int ox = 0; ox < g.out_w; ++ox) Elem<T>::store(o, ox, 0.f);
        continue;
      }
      const int s = per_sample ? b : 0;
      const Tap& ty = taps.y[size_t(s) * g.out_h + oy];
      const T* src = in + (per_sample ? c : plane) * in_plane;
      for (int ox = 0; ox < g.out_w; ++ox) {
        const Tap& tx = taps.x[size_t(s) * g.out_w + ox];
        auto v = [&](bool y1, bool x1) { return value(corner(src, ty, y1, tx, x1, g.in_w, 1), 0); };
        Elem<T>::store(o, ox, bilerp(ty, tx, v(0, 0), v(0, 1), v(1, 0), v(1, 1)));
      }
    }
  });
}

// Gather backward: every input element sums w_y · w_x · grad over the outputs its plan range names, in
// (sample, row, column) order.
template <typename T>
void backward_impl(const Geometry& g, T* grad_in, const T* grad_out) {
  const Taps taps(g);
  const int ns = plan_samples(g);
  std::vector<int32_t> plan(size_t(backward_scratch_bytes(g) / sizeof(int32_t)));
  for (int s = 0; s < ns; ++s)
    for (int axis = 0; axis < 2; ++axis)
      for (int i = 0; i < (axis == 0 ? g.in_h : g.in_w); ++i) {
        int32_t* r = &plan[size_t(plan_offset(g, axis, s) + 2 * i)];
        plan_range(g, axis, s, i, r, r + 1);
      }
  const bool all_samples = g.mode == Mode::GridSample;
  const int C = g.channels;
  const int64_t in_hw = int64_t(g.in_h) * g.in_w;
  // Calls add(sample b, output row oy, output column ox, weight) for every output that feeds (bi, iy, ix).
  auto for_each_source = [&](int bi, int iy, int ix, auto&& add) {
    const int b_end = all_samples ? g.batch : bi + 1;
    for (int b = all_samples ? 0 : bi; b < b_end; ++b) {
      if (!sample_kept(g, b)) continue;
      const int s = all_samples ? b : 0;
      const int32_t* ry = &plan[size_t(plan_offset(g, 0, s) + 2 * iy)];
      const int32_t* rx = &plan[size_t(plan_offset(g, 1, s) + 2 * ix)];
      for (int oy = ry[0]; oy < ry[1]; ++oy) {
        const float wy = tap_weight(taps.y[size_t(s) * g.out_h + oy], iy);
        if (wy == 0.f) continue;
        for (int ox = rx[0]; ox < rx[1]; ++ox) {
          const float wx = tap_weight(taps.x[size_t(s) * g.out_w + ox], ix);
          if (wx != 0.f) add(b, oy, ox, wy * wx);
        }
      }
    }
  };
  const int in_batch = all_samples ? 1 : g.batch;
  if (g.layout == Layout::NLC) {
    parallel_for(in_batch * in_hw, grain(C), [&](int64_t lo, int64_t hi) {
      std::vector<float> acc(static_cast<size_t>(C));
      for (int64_t p = lo; p < hi; ++p) {
        const int bi = int(p / in_hw), iy = int(p % in_hw / g.in_w), ix = int(p % g.in_w);
        std::fill(acc.begin(), acc.end(), 0.f);
        for_each_source(bi, iy, ix, [&](int b, int oy, int ox, float w) {
          const T* src = grad_out + ((int64_t(b) * g.out_h + oy) * g.out_w + ox) * C;
          for (int c = 0; c < C; ++c) acc[size_t(c)] += w * Elem<T>::load(src, size_t(c));
        });
        for (int c = 0; c < C; ++c) Elem<T>::store(grad_in + p * C, size_t(c), acc[size_t(c)]);
      }
    });
    return;
  }
  const int64_t rows = int64_t(in_batch) * C * g.in_h;
  parallel_for(rows, grain(g.in_w), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t plane = r / g.in_h;
      const int iy = int(r % g.in_h), bi = int(plane / C), c = int(plane % C);
      for (int ix = 0; ix < g.in_w; ++ix) {
        float acc = 0.f;
        for_each_source(bi, iy, ix, [&](int b, int oy, int ox, float w) {
          acc += w * Elem<T>::load(grad_out, size_t(((int64_t(b) * C + c) * g.out_h + oy) * g.out_w + ox));
        });
        Elem<T>::store(grad_in + r * g.in_w, size_t(ix), acc);
      }
    }
  });
}

}  // namespace

void forward(GpuStream, const Geometry& g, void* out, const void* in, DType dt) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    forward_impl(g, static_cast<T*>(out), static_cast<const T*>(in));
  });
}

void backward(GpuStream, const Geometry& g, void* grad_in, const void* grad_out, DType dt, void*) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    backward_impl(g, static_cast<T*>(grad_in), static_cast<const T*>(grad_out));
  });
}

}  // namespace cpu
}  // namespace interpolate
}  // namespace amr
