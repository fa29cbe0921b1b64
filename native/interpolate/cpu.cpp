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

// The taps of one axis turned around: for each (sample, input index), the outputs that read it with a nonzero
// weight, in output order (compressed rows). The gpu gathers over a plan range and skips zero weights, which
// visits the same outputs in the same order; these lists are exact, so there is nothing to skip.
struct Sources {
  std::vector<int32_t> begin;  // [sample * in + i] .. [.. + 1] indexes out and weight
  std::vector<int32_t> out;
  std::vector<float> weight;

  Sources(const std::vector<Tap>& taps, int samples, int in, int out_n) {
    begin.assign(size_t(samples) * in + 1, 0);
    each(taps, samples, in, out_n, [&](size_t k, int, float) { ++begin[k + 1]; });
    for (size_t k = 1; k < begin.size(); ++k) begin[k] += begin[k - 1];
    out.resize(size_t(begin.back()));
    weight.resize(size_t(begin.back()));
    std::vector<int32_t> next(begin.begin(), begin.end() - 1);
    each(taps, samples, in, out_n, [&](size_t k, int o, float w) {
      out[size_t(next[k])] = o;
      weight[size_t(next[k]++)] = w;
    });
  }

  template <typename F>
  static void each(const std::vector<Tap>& taps, int samples, int in, int out_n, F&& f) {
    for (int s = 0; s < samples; ++s)
      for (int o = 0; o < out_n; ++o) {
        const Tap& t = taps[size_t(s) * out_n + o];
        for (int i : {t.i0, t.i1 != t.i0 ? t.i1 : -1}) {
          const float w = i >= 0 ? tap_weight(t, i) : 0.f;
          if (w != 0.f) f(size_t(s) * in + i, o, w);
        }
      }
  }
};

template <typename T>
void forward_nlc(const Geometry& g, const Taps& taps, T* out, const T* in) {
  const bool per_sample = g.mode == Mode::GridSample;  // per-sample taps over one shared input map
  const int C = g.channels;
  const int64_t hw = int64_t(g.out_h) * g.out_w, row_stride = int64_t(g.in_w) * C;
  // An absent tap reads a row of zeros, which keeps the channel loop free of branches.
  const std::vector<T> zeros(size_t(C), T(0));
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
      const T* src = in + (per_sample ? 0 : b) * int64_t(g.in_h) * row_stride;
      auto at = [&](int iy, int ix) { return iy < 0 || ix < 0 ? zeros.data() : src + iy * row_stride + int64_t(ix) * C; };
      const T *p00 = at(ty.i0, tx.i0), *p01 = at(ty.i0, tx.i1), *p10 = at(ty.i1, tx.i0), *p11 = at(ty.i1, tx.i1);
      for (int c = 0; c < C; ++c)
        Elem<T>::store(o, c, bilerp(ty, tx, Elem<T>::load(p00, c), Elem<T>::load(p01, c), Elem<T>::load(p10, c),
                                    Elem<T>::load(p11, c)));
    }
  });
}

// NCHW: one output row of one plane per item. Bilinear taps are always inside the map and nearest has one, so
// only the crop's zero padding needs the checked path.
template <typename T>
void forward_nchw(const Geometry& g, const Taps& taps, T* out, const T* in) {
  const bool per_sample = g.mode == Mode::GridSample;
  const int C = g.channels;
  const int64_t in_plane = int64_t(g.in_h) * g.in_w;
  parallel_for(int64_t(g.batch) * C * g.out_h, grain(g.out_w), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t plane = r / g.out_h;
      const int oy = int(r % g.out_h), b = int(plane / C), c = int(plane % C);
      T* o = out + r * g.out_w;
      const int s = per_sample ? b : 0;
      const Tap& ty = taps.y[size_t(s) * g.out_h + oy];
      const Tap* tx = &taps.x[size_t(s) * g.out_w];
      const T* src = in + (per_sample ? c : plane) * in_plane;
      const T* row0 = src + int64_t(std::max(ty.i0, 0)) * g.in_w;  // used only when the taps are inside
      const T* row1 = src + int64_t(std::max(ty.i1, 0)) * g.in_w;
      const bool kept = sample_kept(g, b);
      auto v = [&](int iy, int ix) { return iy < 0 || ix < 0 ? 0.f : Elem<T>::load(src, size_t(iy) * g.in_w + ix); };
      for (int ox = 0; ox < g.out_w; ++ox) {
        const Tap& t = tx[ox];
        float value;
        if (!kept)
          value = 0.f;
        else if (g.mode == Mode::Nearest)
          value = Elem<T>::load(row0, size_t(t.i0));
        else if (g.mode == Mode::Bilinear)
          value = bilerp(ty, t, Elem<T>::load(row0, size_t(t.i0)), Elem<T>::load(row0, size_t(t.i1)),
                         Elem<T>::load(row1, size_t(t.i0)), Elem<T>::load(row1, size_t(t.i1)));
        else
          value = bilerp(ty, t, v(ty.i0, t.i0), v(ty.i0, t.i1), v(ty.i1, t.i0), v(ty.i1, t.i1));
        Elem<T>::store(o, size_t(ox), value);
      }
    }
  });
}

// Gather backward: every input element sums w_y · w_x · grad over the outputs that read it, in (sample, row,
// column) order.
template <typename T>
void backward_nlc(const Geometry& g, const Sources& sy, const Sources& sx, T* grad_in, const T* grad_out) {
  const bool all_samples = g.mode == Mode::GridSample;
  const int C = g.channels;
  const int64_t in_hw = int64_t(g.in_h) * g.in_w;
  parallel_for((all_samples ? 1 : g.batch) * in_hw, grain(C), [&](int64_t lo, int64_t hi) {
    std::vector<float> acc(static_cast<size_t>(C));
    for (int64_t p = lo; p < hi; ++p) {
      const int bi = int(p / in_hw), iy = int(p % in_hw / g.in_w), ix = int(p % g.in_w);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int b = all_samples ? 0 : bi; b < (all_samples ? g.batch : bi + 1); ++b) {
        if (!sample_kept(g, b)) continue;
        const size_t ky = size_t(all_samples ? b : 0) * g.in_h + iy, kx = size_t(all_samples ? b : 0) * g.in_w + ix;
        for (int32_t j = sy.begin[ky]; j < sy.begin[ky + 1]; ++j)
          for (int32_t k = sx.begin[kx]; k < sx.begin[kx + 1]; ++k) {
            const float w = sy.weight[size_t(j)] * sx.weight[size_t(k)];
            const T* src = grad_out + ((int64_t(b) * g.out_h + sy.out[size_t(j)]) * g.out_w + sx.out[size_t(k)]) * C;
            for (int c = 0; c < C; ++c) acc[size_t(c)] += w * Elem<T>::load(src, size_t(c));
          }
      }
      for (int c = 0; c < C; ++c) Elem<T>::store(grad_in + p * C, size_t(c), acc[size_t(c)]);
    }
  });
}

// NCHW: one input row of one plane per item; the row accumulates output row by output row, which keeps each
// element's (sample, row, column) order.
template <typename T>
void backward_nchw(const Geometry& g, const Sources& sy, const Sources& sx, T* grad_in, const T* grad_out) {
  const bool all_samples = g.mode == Mode::GridSample;
  const int C = g.channels;
  parallel_for(int64_t(all_samples ? 1 : g.batch) * C * g.in_h, grain(g.in_w), [&](int64_t lo, int64_t hi) {
    std::vector<float> acc(static_cast<size_t>(g.in_w));
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t plane = r / g.in_h;
      const int iy = int(r % g.in_h), bi = int(plane / C), c = int(plane % C);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int b = all_samples ? 0 : bi; b < (all_samples ? g.batch : bi + 1); ++b) {
        if (!sample_kept(g, b)) continue;
        const size_t ky = size_t(all_samples ? b : 0) * g.in_h + iy, x0 = size_t(all_samples ? b : 0) * g.in_w;
        for (int32_t j = sy.begin[ky]; j < sy.begin[ky + 1]; ++j) {
          const T* row = grad_out + ((int64_t(b) * C + c) * g.out_h + sy.out[size_t(j)]) * g.out_w;
          const float wy = sy.weight[size_t(j)];
          for (int ix = 0; ix < g.in_w; ++ix) {
            float a = acc[size_t(ix)];  // a local, so the compiler need not assume the weights alias acc
            for (int32_t k = sx.begin[x0 + ix]; k < sx.begin[x0 + ix + 1]; ++k)
              a += wy * sx.weight[size_t(k)] * Elem<T>::load(row, size_t(sx.out[size_t(k)]));
            acc[size_t(ix)] = a;
          }
        }
      }
      for (int ix = 0; ix < g.in_w; ++ix) Elem<T>::store(grad_in + r * g.in_w, size_t(ix), acc[size_t(ix)]);
    }
  });
}

}  // namespace

void forward(GpuStream, const Geometry& g, void* out, const void* in, DType dt) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const Taps taps(g);
    if (g.layout == Layout::NLC)
      forward_nlc(g, taps, static_cast<T*>(out), static_cast<const T*>(in));
    else
      forward_nchw(g, taps, static_cast<T*>(out), static_cast<const T*>(in));
  });
}

void backward(GpuStream, const Geometry& g, void* grad_in, const void* grad_out, DType dt, void*) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const Taps taps(g);
    const Sources sy(taps.y, plan_samples(g), g.in_h, g.out_h), sx(taps.x, plan_samples(g), g.in_w, g.out_w);
    if (g.layout == Layout::NLC)
      backward_nlc(g, sy, sx, static_cast<T*>(grad_in), static_cast<const T*>(grad_out));
    else
      backward_nchw(g, sy, sx, static_cast<T*>(grad_in), static_cast<const T*>(grad_out));
  });
}

}  // namespace cpu
}  // namespace interpolate
}  // namespace amr
