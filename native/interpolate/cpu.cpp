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

// One axis of the sampling turned around: for each (sample, input index), the outputs that read it with a nonzero
// weight, in output order (compressed rows). The gpu gathers over a plan range and skips zero weights, which
// visits the same outputs in the same order; these lists are exact, so there is nothing to skip.
struct Sources {
  std::vector<int32_t> begin;  // [sample * in + i] .. [.. + 1] indexes out and weight
  std::vector<int32_t> out;
  std::vector<float> weight;

  // each(f) calls f(key, output, weight) for every nonzero weight, outputs in increasing order; key is
  // sample * in + input index, below keys.
  template <typename Each>
  Sources(size_t keys, Each&& each) {
    begin.assign(keys + 1, 0);
    each([&](size_t k, int, float) { ++begin[k + 1]; });
    for (size_t k = 1; k < begin.size(); ++k) begin[k] += begin[k - 1];
    out.resize(size_t(begin.back()));
    weight.resize(size_t(begin.back()));
    std::vector<int32_t> next(begin.begin(), begin.end() - 1);
    each([&](size_t k, int o, float w) {
      out[size_t(next[k])] = o;
      weight[size_t(next[k]++)] = w;
    });
  }
};

// The two-tap modes' sources along one axis, from each sample's taps.
Sources tap_sources(const std::vector<Tap>& taps, int samples, int in, int out_n) {
  return Sources(size_t(samples) * in, [&](auto&& f) {
    for (int s = 0; s < samples; ++s)
      for (int o = 0; o < out_n; ++o) {
        const Tap& t = taps[size_t(s) * out_n + o];
        for (int i : {t.i0, t.i1 != t.i0 ? t.i1 : -1}) {
          const float w = i >= 0 ? tap_weight(t, i) : 0.f;
          if (w != 0.f) f(size_t(s) * in + i, o, w);
        }
      }
  });
}

// The windowed modes' sources along one axis (one sample), from the window tables.
Sources window_sources(const Geometry& g, const int32_t* tables, int axis) {
  const int in = axis == 0 ? g.in_h : g.in_w, out_n = axis == 0 ? g.out_h : g.out_w;
  return Sources(size_t(in), [&](auto&& f) {
    for (int o = 0; o < out_n; ++o) {
      const Window w = window_at(g, tables, axis, o);
      for (int j = 0; j < w.count; ++j)
        if (w.w[j] != 0.f) f(size_t(w.first + j), o, w.w[j]);
    }
  });
}

// The windowed modes' tables, built on the host by the same window_fill the gpu runs.
struct WindowTables {
  std::vector<int32_t> data;
  explicit WindowTables(const Geometry& g) : data(size_t(window_table_bytes(g) / int64_t(sizeof(int32_t)))) {
    for (int o = 0; o < g.out_h; ++o) window_fill(g, data.data(), 0, o);
    for (int o = 0; o < g.out_w; ++o) window_fill(g, data.data(), 1, o);
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

// Windowed forward, token layout: out = Σ_y w_y · (Σ_x w_x · in) per channel, rows of the window outermost as in
// PyTorch's separable passes.
template <typename T>
void forward_window_nlc(const Geometry& g, const int32_t* tables, T* out, const T* in) {
  const int C = g.channels;
  const int64_t hw = int64_t(g.out_h) * g.out_w, row_stride = int64_t(g.in_w) * C;
  parallel_for(g.batch * hw, grain(C), [&](int64_t lo, int64_t hi) {
    std::vector<float> acc(static_cast<size_t>(C)), row(static_cast<size_t>(C));
    for (int64_t p = lo; p < hi; ++p) {
      const int b = int(p / hw), oy = int(p % hw / g.out_w), ox = int(p % g.out_w);
      const Window wy = window_at(g, tables, 0, oy), wx = window_at(g, tables, 1, ox);
      const T* src = in + int64_t(b) * g.in_h * row_stride + int64_t(wx.first) * C;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int jy = 0; jy < wy.count; ++jy) {
        std::fill(row.begin(), row.end(), 0.f);
        const T* r = src + (wy.first + jy) * row_stride;
        for (int jx = 0; jx < wx.count; ++jx)
          for (int c = 0; c < C; ++c) row[size_t(c)] += wx.w[jx] * Elem<T>::load(r, size_t(jx) * C + c);
        for (int c = 0; c < C; ++c) acc[size_t(c)] += wy.w[jy] * row[size_t(c)];
      }
      for (int c = 0; c < C; ++c) Elem<T>::store(out + p * C, size_t(c), acc[size_t(c)]);
    }
  });
}

// Windowed forward, NCHW: one output row of one plane per item.
template <typename T>
void forward_window_nchw(const Geometry& g, const int32_t* tables, T* out, const T* in) {
  const int64_t in_plane = int64_t(g.in_h) * g.in_w;
  parallel_for(int64_t(g.batch) * g.channels * g.out_h, grain(g.out_w), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t plane = r / g.out_h;
      const Window wy = window_at(g, tables, 0, int(r % g.out_h));
      const T* src = in + plane * in_plane;
      for (int ox = 0; ox < g.out_w; ++ox) {
        const Window wx = window_at(g, tables, 1, ox);
        float acc = 0.f;
        for (int jy = 0; jy < wy.count; ++jy) {
          const T* row = src + int64_t(wy.first + jy) * g.in_w + wx.first;
          float v = 0.f;
          for (int jx = 0; jx < wx.count; ++jx) v += wx.w[jx] * Elem<T>::load(row, size_t(jx));
          acc += wy.w[jy] * v;
        }
        Elem<T>::store(out + r * g.out_w, size_t(ox), acc);
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

void forward(GpuStream, const Geometry& g, void* out, const void* in, DType dt, void*) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(in);
    if (windowed(g)) {
      const WindowTables tables(g);
      if (g.layout == Layout::NLC)
        forward_window_nlc(g, tables.data.data(), o, x);
      else
        forward_window_nchw(g, tables.data.data(), o, x);
      return;
    }
    const Taps taps(g);
    if (g.layout == Layout::NLC)
      forward_nlc(g, taps, o, x);
    else
      forward_nchw(g, taps, o, x);
  });
}

void backward(GpuStream, const Geometry& g, void* grad_in, const void* grad_out, DType dt, void*) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    auto run = [&](const Sources& sy, const Sources& sx) {
      if (g.layout == Layout::NLC)
        backward_nlc(g, sy, sx, static_cast<T*>(grad_in), static_cast<const T*>(grad_out));
      else
        backward_nchw(g, sy, sx, static_cast<T*>(grad_in), static_cast<const T*>(grad_out));
    };
    if (windowed(g)) {
      const WindowTables tables(g);
      run(window_sources(g, tables.data.data(), 0), window_sources(g, tables.data.data(), 1));
      return;
    }
    const Taps taps(g);
    run(tap_sources(taps.y, plan_samples(g), g.in_h, g.out_h), tap_sources(taps.x, plan_samples(g), g.in_w, g.out_w));
  });
}

}  // namespace cpu
}  // namespace interpolate
}  // namespace amr
