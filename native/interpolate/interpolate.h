// Multi-resolution interpolation: bilinear / nearest / bicubic resize (PyTorch F.interpolate semantics, antialias
// for bilinear and bicubic, size or scale_factor), the CPE eval crop (resize to the max side and keep the top-left
// corner, in one pass) and the CPE train crop (per-sample bilinear grid_sample, zeros padding, align_corners true),
// forward and backward, NCHW and token (NLC) layouts. One Geometry describes all three; every backend derives its
// sampling taps from the functions below, so the index rounding is the same everywhere.
//
// Bilinear, nearest and the crop have at most two taps per axis, recomputed wherever they are needed. Bicubic (four
// taps) and antialias (a window whose width grows with the downsampling ratio) are "windowed": each output index
// along an axis reads a contiguous input window [first, first + count) with precomputed weights, and those tables
// are built once per call (window_fill) into scratch, which every backend then reads the same way.
//
// Backward is a gather: each input element sums the output gradients that sampled it, over a fixed range in a
// fixed order, so the result has the same bits run to run (no float atomics).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace interpolate {

enum class Layout : int32_t { NCHW = 0, NLC = 1 };
enum class Mode : int32_t { Bilinear = 0, Nearest = 1, GridSample = 2, Bicubic = 3 };

struct Geometry {
  Layout layout;
  Mode mode;
  bool align_corners;  // Bilinear and Bicubic; GridSample always aligns corners (RADIO's CPE)
  bool antialias;      // Bilinear and Bicubic: PyTorch's antialias=True (_upsample_*2d_aa)
  int batch;           // output batch; the input batch is the same, except GridSample reads one shared map
  int channels;
  int in_h, in_w;
  int out_h, out_w;    // the part of the output that is computed
  int virt_h, virt_w;  // the output size the sampling ratio is taken from: out_h/out_w, or larger for a crop
  // PyTorch's scale_factor per axis, or 0: when given (and alignCorners is off) the coordinate ratio is
  // float(1 / factor), as torch uses it when recompute_scale_factor is not set, rather than in / virt.
  double factor_h, factor_w;
  // GridSample only, on the op's backend: scale [batch, 2] (sx, sy), offset [batch, 2], keep [batch] (0 drops).
  const float* scale;
  const float* offset;
  const float* keep;
};

inline int64_t input_elements(const Geometry& g) {
  return int64_t(g.mode == Mode::GridSample ? 1 : g.batch) * g.channels * g.in_h * g.in_w;
}
inline int64_t output_elements(const Geometry& g) { return int64_t(g.batch) * g.channels * g.out_h * g.out_w; }
// Samples with their own sampling taps: one per batch item for GridSample, one shared by all otherwise.
inline int plan_samples(const Geometry& g) { return g.mode == Mode::GridSample ? g.batch : 1; }
AMR_HD bool windowed(const Geometry& g) { return g.mode == Mode::Bicubic || g.antialias; }

// The source coordinate ratio along an axis: PyTorch's area_pixel_compute_scale in float (nearest's
// compute_scales_value is the same without align_corners).
AMR_HD float axis_ratio(const Geometry& g, int axis) {
  const int in = axis == 0 ? g.in_h : g.in_w, virt = axis == 0 ? g.virt_h : g.virt_w;
  const double factor = axis == 0 ? g.factor_h : g.factor_w;
  if (g.align_corners) return virt > 1 ? float(in - 1) / float(virt - 1) : 0.f;
  return factor > 0. ? float(1.0 / factor) : float(in) / float(virt);
}

// Antialias: the filter's half-width in input pixels (PyTorch's support: widened by the ratio when downsampling).
AMR_HD int interp_size(const Geometry& g) { return g.mode == Mode::Bicubic ? 4 : 2; }
AMR_HD float aa_support(const Geometry& g, float ratio) {
  return ratio >= 1.f ? float(interp_size(g) * 0.5 * double(ratio)) : float(interp_size(g) * 0.5);
}

// Weight slots per output index along an axis in the windowed modes: bicubic's four taps, or antialias's
// max_interp_size, ceil(support)·2 + 1.
AMR_HD int window_slots(const Geometry& g, int axis) {
  if (!g.antialias) return 4;
  return int(ceilf(aa_support(g, axis_ratio(g, axis)))) * 2 + 1;
}

// The window tables (windowed modes): int32 (first, count) per output row then per output column, then the f32
// weights, window_slots apart, rows then columns.
inline int64_t window_table_bytes(const Geometry& g) {
  if (!windowed(g)) return 0;
  const int64_t pairs = 2 * (int64_t(g.out_h) + g.out_w);
  const int64_t weights = int64_t(g.out_h) * window_slots(g, 0) + int64_t(g.out_w) * window_slots(g, 1);
  return (pairs + weights) * int64_t(sizeof(int32_t));
}
// Scratch the forward needs: the window tables (nothing for the two-tap modes).
inline int64_t forward_scratch_bytes(const Geometry& g) { return window_table_bytes(g); }
// Scratch the backward needs: an int32 [lo, hi) range of outputs per (sample, input row or column), then the
// window tables.
inline int64_t plan_bytes(const Geometry& g) {
  return int64_t(plan_samples(g)) * (g.in_h + g.in_w) * 2 * int64_t(sizeof(int32_t));
}
inline int64_t backward_scratch_bytes(const Geometry& g) { return plan_bytes(g) + window_table_bytes(g); }

// Why a geometry cannot run, or empty: the one list of the family's limits, asked by the binding. The kernels index
// elements (and their tables and plans) with 32-bit integers.
inline std::string unsupported(const Geometry& g) {
  if (g.antialias && g.mode != Mode::Bilinear && g.mode != Mode::Bicubic)
    return "antialias applies only to modes bilinear and bicubic";
  if (g.mode == Mode::GridSample && (g.factor_h > 0. || g.factor_w > 0.))
    return "factorH and factorW do not apply to mode gridSample";
  if (g.out_h > g.virt_h || g.out_w > g.virt_w)
    return "the output (" + std::to_string(g.out_h) + "x" + std::to_string(g.out_w) + ") must fit in the resized map (" +
           std::to_string(g.virt_h) + "x" + std::to_string(g.virt_w) + ")";
  const int64_t max = std::numeric_limits<int32_t>::max();
  if (input_elements(g) > max || output_elements(g) > max ||
      int64_t(plan_samples(g)) * (int64_t(g.in_h) + g.in_w) > max / 4 || window_table_bytes(g) > max)
    return "tensors of 2^31 elements or more are not supported";
  return std::string();
}

// scratch holds forward_scratch_bytes / backward_scratch_bytes (the cpu backend keeps its tables on the host).
#define AMR_INTERPOLATE_FUNCS                                                                             \
  void forward(GpuStream s, const Geometry& g, void* out, const void* in, DType dt, void* scratch);      \
  void backward(GpuStream s, const Geometry& g, void* grad_in, const void* grad_out, DType dt, void* scratch);

namespace cpu { AMR_INTERPOLATE_FUNCS }
namespace cuda { AMR_INTERPOLATE_FUNCS }
namespace sim { AMR_INTERPOLATE_FUNCS }

// Calls f with a null pointer of the storage type (float, or uint16_t for bf16); i32 is an Error.
template <typename F>
inline void with_float_dtype(DType dt, F&& f) {
  if (dt == DType::I32) throw Error("interpolate: i32 tensors are not supported");
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) f(tag);
  });
}

// One output index's two source taps along an axis. An index of -1 is no tap (zero padding, or nearest's
// unused second tap).
struct Tap {
  int i0, i1;
  float w0, w1;
};

// PyTorch's bilinear source index (area_pixel_compute_source_index, clamped at 0 for linear), in float as
// PyTorch computes it, from the axis ratio (axis_ratio). Like PyTorch's compute_source_index_and_lambda, an axis
// resized to its own size is copied, whatever the ratio (a scale factor of 1.1 on 5 pixels gives 5 again).
AMR_HD Tap linear_tap_at(int o, int in, int virt, float ratio, bool align) {
  if (virt == in) return Tap{o, o, 1.f, 0.f};
  float src;
  if (align) {
    src = ratio * float(o);
  } else {
    src = ratio * (float(o) + 0.5f) - 0.5f;
    if (src < 0.f) src = 0.f;
  }
  int i0 = int(src);
  if (i0 > in - 1) i0 = in - 1;
  const float w1 = src - float(i0);
  return Tap{i0, i0 < in - 1 ? i0 + 1 : i0, 1.f - w1, w1};
}
// The same with the ratio taken from the sizes, as a resize to virt (the loss family aligns maps with it).
AMR_HD Tap linear_tap(int o, int in, int virt, bool align) {
  const float ratio = align ? (virt > 1 ? float(in - 1) / float(virt - 1) : 0.f) : float(in) / float(virt);
  return linear_tap_at(o, in, virt, ratio, align);
}

// PyTorch's legacy 'nearest': floor(o · ratio) in float, as its contiguous NCHW kernel computes it. (Torch 1.13's
// channels-last kernel copies, or halves the index, when a scale factor yields the input size or twice it; from a
// size the two agree, since the ratio is then exactly 1 or 0.5.)
AMR_HD Tap nearest_tap(int o, int in, float ratio) {
  int i = int(floorf(float(o) * ratio));
  if (i > in - 1) i = in - 1;
  return Tap{i, -1, 1.f, 0.f};
}

// RADIO's training crop along one axis: grid = 2·(linspace(0,1,out)·s + p) − 1, then grid_sample's
// align_corners unnormalisation ((grid + 1) / 2)·(in − 1); taps outside the map read zero.
AMR_HD Tap grid_tap(int o, int in, int out, float s, float p) {
  const float lin = out > 1 ? float(o) / float(out - 1) : 0.f;
  const float grid = 2.f * (lin * s + p) - 1.f;
  const float c = (grid + 1.f) / 2.f * float(in - 1);
  // Also rejects NaN, and keeps the int conversion below in range.
  if (!(c > -1.f && c < float(in))) return Tap{-1, -1, 0.f, 0.f};
  const float f = floorf(c);
  const int i0 = int(f);
  const float w1 = c - f;
  return Tap{i0 >= 0 ? i0 : -1, i0 + 1 <= in - 1 ? i0 + 1 : -1, 1.f - w1, w1};
}

// The taps of output index o along axis 0 (rows) or 1 (columns), for sample b.
AMR_HD Tap axis_tap(const Geometry& g, int axis, int b, int o) {
  const int in = axis == 0 ? g.in_h : g.in_w;
  switch (g.mode) {
    case Mode::Bilinear:
      return linear_tap_at(o, in, axis == 0 ? g.virt_h : g.virt_w, axis_ratio(g, axis), g.align_corners);
    case Mode::Nearest: return nearest_tap(o, in, axis_ratio(g, axis));
    default: {
      // scale and offset are (x, y) pairs: x goes with columns (axis 1).
      const int k = 2 * b + (axis == 0 ? 1 : 0);
      return grid_tap(o, in, axis == 0 ? g.out_h : g.out_w, g.scale[k], g.offset[k]);
    }
  }
}

// The sampled value from the four corner values (0 where a tap is absent), in PyTorch's order.
AMR_HD float bilerp(const Tap& y, const Tap& x, float a00, float a01, float a10, float a11) {
  return y.w0 * (x.w0 * a00 + x.w1 * a01) + y.w1 * (x.w0 * a10 + x.w1 * a11);
}

// How much input index i receives from a tap (both taps may name the same index at the border).
AMR_HD float tap_weight(const Tap& t, int i) { return (t.i0 == i ? t.w0 : 0.f) + (t.i1 == i ? t.w1 : 0.f); }

// The outputs [lo, hi) along an axis that may sample input index i, for sample b. Found by scanning every
// output, so it holds for any sampling (a negative crop scale included); widened by one each side so that an
// index rounding a hair differently in another kernel (fused multiply-add) is still covered. The gather
// recomputes each tap, so extra outputs in the range add nothing.
AMR_HD void plan_range(const Geometry& g, int axis, int b, int i, int32_t* lo, int32_t* hi) {
  const int out = axis == 0 ? g.out_h : g.out_w;
  int first = out, last = -1;
  for (int o = 0; o < out; ++o) {
    const Tap t = axis_tap(g, axis, b, o);
    if (t.i0 == i || t.i1 == i) {
      if (o < first) first = o;
      last = o;
    }
  }
  if (last < 0) {
    *lo = *hi = 0;
    return;
  }
  *lo = first > 0 ? first - 1 : 0;
  *hi = last + 2 < out ? last + 2 : out;
}

// Where sample b's ranges for axis start in the plan: per sample, in_h row ranges then in_w column ranges.
AMR_HD int64_t plan_offset(const Geometry& g, int axis, int b) {
  return 2 * (int64_t(b) * (g.in_h + g.in_w) + (axis == 0 ? 0 : g.in_h));
}

AMR_HD bool sample_kept(const Geometry& g, int b) { return g.mode != Mode::GridSample || g.keep[b] != 0.f; }

// ---------------------------------------------------------------------------------------------------------------
// The windowed modes (bicubic, antialias).

// PyTorch's cubic convolution (upsample_bicubic2d, A = −0.75), for the distances 1 + t, t, 1 − t, 2 − t.
AMR_HD float cubic_convolution1(float x, float a) { return ((a + 2.f) * x - (a + 3.f)) * x * x + 1.f; }
AMR_HD float cubic_convolution2(float x, float a) { return ((a * x - 5.f * a) * x + 8.f * a) * x - 4.f * a; }

// Antialias filters as PyTorch's aa_filter (double math on a float argument): the triangle, and Keys' cubic with
// a = −0.5 (PIL's, not upsample_bicubic2d's −0.75).
AMR_HD float aa_filter(bool cubic, float xf) {
  double x = xf < 0.f ? -double(xf) : double(xf);
  if (!cubic) return x < 1.0 ? float(1.0 - x) : 0.f;
  const double a = -0.5;
  if (x < 1.0) return float(((a + 2.0) * x - (a + 3.0)) * x * x + 1.0);
  if (x < 2.0) return float((((x - 5.0) * x + 8.0) * x - 4.0) * a);
  return 0.f;
}

// The table entries of output index o along an axis: (first, count) and window_slots weights.
AMR_HD int32_t* window_pair(const Geometry& g, int32_t* tables, int axis, int o) {
  return tables + 2 * (axis == 0 ? o : g.out_h + o);
}
AMR_HD const int32_t* window_pair(const Geometry& g, const int32_t* tables, int axis, int o) {
  return tables + 2 * (axis == 0 ? o : g.out_h + o);
}
AMR_HD int64_t window_weight_offset(const Geometry& g, int axis, int o) {
  const int64_t base = 2 * (int64_t(g.out_h) + g.out_w);
  return axis == 0 ? base + int64_t(o) * window_slots(g, 0)
                   : base + int64_t(g.out_h) * window_slots(g, 0) + int64_t(o) * window_slots(g, 1);
}

// Builds output index o's window along an axis.
//  - bicubic: src = area_pixel_compute_source_index (not clamped at 0), t = src − floor(src), the four taps
//    floor(src) − 1 .. floor(src) + 2 clamped to [0, in − 1]; a clamped tap's weight joins its border pixel's,
//    so the window is contiguous.
//  - antialias: PyTorch's _compute_weights_aa: centre = ratio·(o + 0.5), the window [centre − support + 0.5,
//    centre + support + 0.5) truncated and clipped to [0, in), weights filter((j − centre + 0.5)·invscale)
//    normalised to sum 1; with PyTorch's mix of float and double.
AMR_HD void window_fill(const Geometry& g, int32_t* tables, int axis, int o) {
  const int in = axis == 0 ? g.in_h : g.in_w;
  const int slots = window_slots(g, axis);
  const float ratio = axis_ratio(g, axis);
  int32_t* pair = window_pair(g, tables, axis, o);
  float* w = reinterpret_cast<float*>(tables + window_weight_offset(g, axis, o));
  for (int j = 0; j < slots; ++j) w[j] = 0.f;
  if (!g.antialias) {
    const float src = g.align_corners ? ratio * float(o) : ratio * (float(o) + 0.5f) - 0.5f;
    const float fl = floorf(src);
    const int i = int(fl);
    const float t = src - fl;
    const float a = -0.75f;
    const float coeffs[4] = {cubic_convolution2(t + 1.f, a), cubic_convolution1(t, a), cubic_convolution1(1.f - t, a),
                             cubic_convolution2(1.f - t + 1.f, a)};
    const int first = i - 1 < 0 ? 0 : (i - 1 > in - 1 ? in - 1 : i - 1);
    const int last = i + 2 > in - 1 ? in - 1 : (i + 2 < 0 ? 0 : i + 2);
    for (int k = 0; k < 4; ++k) {
      int idx = i - 1 + k;
      idx = idx < 0 ? 0 : (idx > in - 1 ? in - 1 : idx);
      w[idx - first] += coeffs[k];
    }
    pair[0] = first;
    pair[1] = last - first + 1;
    return;
  }
  const float support = aa_support(g, ratio);
  const float center = float(double(ratio) * (o + 0.5));
  const float invscale = ratio >= 1.f ? float(1.0 / double(ratio)) : 1.f;
  int64_t lo = int64_t(double(center - support) + 0.5);
  int64_t hi = int64_t(double(center + support) + 0.5);
  lo = lo > 0 ? lo : 0;
  hi = hi < in ? hi : in;
  const int count = hi > lo ? int(hi - lo) : 0;
  float total = 0.f;
  for (int j = 0; j < count; ++j) {
    w[j] = aa_filter(g.mode == Mode::Bicubic, float((double(float(j + lo) - center) + 0.5) * double(invscale)));
    total += w[j];
  }
  if (total != 0.f)
    for (int j = 0; j < count; ++j) w[j] /= total;
  pair[0] = int32_t(lo);
  pair[1] = count;
}

// One output index's window, read back from the tables.
struct Window {
  int first, count;
  const float* w;
};
AMR_HD Window window_at(const Geometry& g, const int32_t* tables, int axis, int o) {
  const int32_t* pair = window_pair(g, tables, axis, o);
  return Window{pair[0], pair[1], reinterpret_cast<const float*>(tables + window_weight_offset(g, axis, o))};
}
// How much input index i receives from output index o's window (0 outside it).
AMR_HD float window_weight(const Geometry& g, const int32_t* tables, int axis, int o, int i) {
  const Window w = window_at(g, tables, axis, o);
  const int j = i - w.first;
  return j >= 0 && j < w.count ? w.w[j] : 0.f;
}
// The outputs [lo, hi) along an axis whose windows hold input index i: the backward's gather range. Exact, since
// every kernel reads the same tables.
AMR_HD void window_range(const Geometry& g, const int32_t* tables, int axis, int i, int32_t* lo, int32_t* hi) {
  const int out = axis == 0 ? g.out_h : g.out_w;
  int first = out, last = -1;
  for (int o = 0; o < out; ++o) {
    const int32_t* pair = window_pair(g, tables, axis, o);
    if (i >= pair[0] && i < pair[0] + pair[1]) {
      if (o < first) first = o;
      last = o;
    }
  }
  *lo = last < 0 ? 0 : first;
  *hi = last < 0 ? 0 : last + 1;
}

// n / d and n % d by multiply-high and shift (Granlund-Montgomery), for 0 <= n < 2^31: the gpu kernels split
// flat indices with it, since GPUs have no divide instruction and the emulated one costs more than an element's
// memory traffic.
struct FastDiv {
  uint32_t d = 1, mul = 1, shift = 0;
  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    while ((uint64_t(1) << shift) < d) ++shift;
    mul = uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d) / d + 1);
  }
  AMR_HD uint32_t div(uint32_t n) const { return (uint32_t((uint64_t(n) * mul) >> 32) + n) >> shift; }
  AMR_HD uint32_t mod(uint32_t n, uint32_t q) const { return n - q * d; }
};

}  // namespace interpolate
}  // namespace amr
