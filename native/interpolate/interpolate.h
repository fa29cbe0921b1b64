// Multi-resolution interpolation: bilinear / nearest resize (PyTorch F.interpolate semantics, no antialias), the
// CPE eval crop (resize to the max side and keep the top-left corner, in one pass) and the CPE train crop
// (per-sample bilinear grid_sample, zeros padding, align_corners true), forward and backward, NCHW and token
// (NLC) layouts. One Geometry describes all three; every backend derives its sampling taps from the functions
// below, so the index rounding is the same everywhere.
//
// Backward is a gather: each input element sums the output gradients that sampled it, over a fixed range in a
// fixed order, so the result has the same bits run to run (no float atomics).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace interpolate {

enum class Layout : int32_t { NCHW = 0, NLC = 1 };
enum class Mode : int32_t { Bilinear = 0, Nearest = 1, GridSample = 2 };

struct Geometry {
  Layout layout;
  Mode mode;
  bool align_corners;  // Bilinear only; GridSample always aligns corners (RADIO's CPE)
  int batch;           // output batch; the input batch is the same, except GridSample reads one shared map
  int channels;
  int in_h, in_w;
  int out_h, out_w;    // the part of the output that is computed
  int virt_h, virt_w;  // the output size the sampling ratio is taken from: out_h/out_w, or larger for a crop
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
// Scratch the backward needs: an int32 [lo, hi) range of outputs per (sample, input row or column).
inline int64_t backward_scratch_bytes(const Geometry& g) {
  return int64_t(plan_samples(g)) * (g.in_h + g.in_w) * 2 * int64_t(sizeof(int32_t));
}

#define AMR_INTERPOLATE_FUNCS                                                                             \
  void forward(GpuStream s, const Geometry& g, void* out, const void* in, DType dt);                     \
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

// PyTorch's bilinear source index (area_pixel_compute_source_index), in float as PyTorch computes it.
AMR_HD Tap linear_tap(int o, int in, int virt, bool align) {
  float src;
  if (align) {
    const float scale = virt > 1 ? float(in - 1) / float(virt - 1) : 0.f;
    src = scale * float(o);
  } else {
    const float scale = float(in) / float(virt);
    src = scale * (float(o) + 0.5f) - 0.5f;
    if (src < 0.f) src = 0.f;
  }
  int i0 = int(src);
  if (i0 > in - 1) i0 = in - 1;
  const float w1 = src - float(i0);
  return Tap{i0, i0 < in - 1 ? i0 + 1 : i0, 1.f - w1, w1};
}

// PyTorch's legacy 'nearest': floor(o * in/out) in float, with its exact special cases for ratios 1 and 2.
AMR_HD Tap nearest_tap(int o, int in, int virt) {
  int i;
  if (virt == in) {
    i = o;
  } else if (virt == 2 * in) {
    i = o >> 1;
  } else {
    const float scale = float(in) / float(virt);
    i = int(floorf(float(o) * scale));
    if (i > in - 1) i = in - 1;
  }
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
    case Mode::Bilinear: return linear_tap(o, in, axis == 0 ? g.virt_h : g.virt_w, g.align_corners);
    case Mode::Nearest: return nearest_tap(o, in, axis == 0 ? g.virt_h : g.virt_w);
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
