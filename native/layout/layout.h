// Layout ops (permute, cat, narrow/chunk, pad2d, window partition/reverse, sum/mean over a dim): every data
// movement among them is one strided copy described by a CopyPlan, so one kernel per backend serves them all
// and the bounds check in the binding covers every op at once.
//
// A plan walks an iteration space of up to kMaxDims dimensions in row-major order. Each element's source and
// destination offsets are linear in its index, plus up to kMaxAxes "axes": a coordinate that is a linear form of
// the index (window partition's h = wh·ws + r spans two dimensions) checked against an extent. A source axis out
// of range reads as padding (zero, or a reflected / replicated coordinate); a destination axis out of range is
// not written (window reverse dropping the padded rows). The one gather that is not a copy, the reflect and
// replicate pad backward, has its own PadGeometry; it sums in a fixed order, so there are no float atomics.
#pragma once
#include <cstdint>
#include <string>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace layout {

constexpr int kMaxDims = 6;
constexpr int kMaxAxes = 4;

enum class PadMode : int32_t { Zero = 0, Reflect = 1, Replicate = 2 };

struct Axis {
  int64_t coef[kMaxDims];  // coordinate = Σ index[d]·coef[d] − lo
  int64_t lo, extent;      // valid coordinates are [0, extent)
  int64_t stride;          // elements per coordinate step in the source (or, for a destination axis, the output)
  int32_t dst;             // 1: a destination axis (skip the write outside), 0: a source axis (pad outside)
};

struct CopyPlan {
  int32_t rank;
  int64_t size[kMaxDims];
  int64_t src_stride[kMaxDims], dst_stride[kMaxDims];
  int64_t src_offset, dst_offset;
  int32_t axes;
  Axis axis[kMaxAxes];
  PadMode mode;  // what a source axis out of range reads
  float scale;   // multiplies every value (mean's backward); 1 copies the bits of f32 and bf16 exactly
};

// Why tensors of `rank` dimensions cannot be laid out, or empty: the one list of the family's rank limit, asked by
// the TypeScript ops (native.layoutUnsupported) before they plan; the binding bounds a plan's sizes by kMaxDims.
inline std::string unsupported_rank(int64_t rank) {
  if (rank <= kMaxDims) return std::string();
  return "tensors of rank " + std::to_string(rank) + " are not supported (at most " + std::to_string(kMaxDims) + " dims)";
}

inline int64_t plan_elements(const CopyPlan& p) {
  int64_t n = 1;
  for (int d = 0; d < p.rank; ++d) n *= p.size[d];
  return n;
}

// Merges each dimension into the one before it wherever the pair walks memory (source, destination and every
// axis) as one dimension would, and drops dimensions of size 1: a permute of a contiguous block or a narrow of the
// leading dimension becomes a copy of rank 1 or 2, which the kernels walk with one division per dimension left.
inline CopyPlan simplify(CopyPlan p) {
  CopyPlan q = p;
  q.rank = 0;
  for (int d = 0; d < p.rank; ++d) {
    if (p.size[d] == 1) continue;
    const int k = q.rank;
    bool merge = k > 0;
    if (merge) {
      const int64_t n = p.size[d];
      merge = q.src_stride[k - 1] == n * p.src_stride[d] && q.dst_stride[k - 1] == n * p.dst_stride[d];
      for (int a = 0; a < p.axes && merge; ++a) merge = q.axis[a].coef[k - 1] == n * p.axis[a].coef[d];
    }
    if (merge) {
      q.size[k - 1] *= p.size[d];
      q.src_stride[k - 1] = p.src_stride[d];
      q.dst_stride[k - 1] = p.dst_stride[d];
      for (int a = 0; a < p.axes; ++a) q.axis[a].coef[k - 1] = p.axis[a].coef[d];
      continue;
    }
    q.size[k] = p.size[d];
    q.src_stride[k] = p.src_stride[d];
    q.dst_stride[k] = p.dst_stride[d];
    for (int a = 0; a < p.axes; ++a) q.axis[a].coef[k] = p.axis[a].coef[d];
    ++q.rank;
  }
  return q;
}

// A source coordinate brought inside [0, n) as PyTorch's padding modes do. Reflect assumes the pad is below n
// (the ops check it); the clamp after it keeps any coordinate in range whatever the plan says.
AMR_HD int64_t pad_coordinate(int64_t c, int64_t n, PadMode mode) {
  if (mode == PadMode::Reflect && n > 1) {
    if (c < 0) c = -c;
    if (c >= n) c = 2 * (n - 1) - c;
  }
  return c < 0 ? 0 : (c >= n ? n - 1 : c);
}

// Where element i of the iteration space comes from and goes to; false when it is not written at all.
// src < 0 means the element reads as zero padding.
struct Step {
  int64_t src, dst;
};

// The linear parts of an element's step: offsets before the axes, and each axis's coordinate. Walking along the
// innermost dimension changes them by constants, so the cpu loop splits a flat index once per row.
struct Cursor {
  int64_t src, dst;
  int64_t coord[kMaxAxes];
};

template <typename I>
AMR_HD Cursor plan_cursor(const CopyPlan& p, I i) {
  Cursor c{p.src_offset, p.dst_offset, {0, 0, 0, 0}};
  for (int a = 0; a < p.axes; ++a) c.coord[a] = -p.axis[a].lo;
  for (int d = p.rank - 1; d >= 0; --d) {
    const I n = I(p.size[d]);
    const I q = i / n;
    const int64_t idx = int64_t(i - q * n);
    i = q;
    c.src += idx * p.src_stride[d];
    c.dst += idx * p.dst_stride[d];
    for (int a = 0; a < p.axes; ++a) c.coord[a] += idx * p.axis[a].coef[d];
  }
  return c;
}

AMR_HD bool cursor_step(const CopyPlan& p, const Cursor& c, Step* s) {
  int64_t src = c.src, dst = c.dst;
  bool zero = false;
  for (int a = 0; a < p.axes; ++a) {
    const Axis& ax = p.axis[a];
    const int64_t k = c.coord[a];
    const bool inside = k >= 0 && k < ax.extent;
    if (ax.dst) {
      if (!inside) return false;
      dst += k * ax.stride;
    } else if (!inside && p.mode == PadMode::Zero) {
      zero = true;
    } else {
      src += pad_coordinate(k, ax.extent, p.mode) * ax.stride;
    }
  }
  s->src = zero ? -1 : src;
  s->dst = dst;
  return true;
}

template <typename I>
AMR_HD bool plan_step(const CopyPlan& p, I i, Step* s) {
  return cursor_step(p, plan_cursor(p, i), s);
}

// Permutes that move the source's contiguous dim away from the innermost position (NCHW <-> NHWC, token
// transposes) go through tiles of (that dim, the innermost dim) on every backend, so neither side is walked one
// element per cache line. The dim paired with the innermost one, or -1 when the plan is not such a permute.
inline int transposed_dim(const CopyPlan& p) {
  const int last = p.rank - 1;
  if (p.rank < 2 || p.axes != 0 || p.scale != 1.f || p.dst_stride[last] != 1 || p.src_stride[last] == 1) return -1;
  for (int d = 0; d < last; ++d)
    if (p.src_stride[d] == 1) return d;
  return -1;
}

// Offsets of the z-th combination of the dims other than b and the innermost (row-major), for the tile walks.
AMR_HD void outer_offsets(const CopyPlan& p, int b, int64_t z, int64_t* src, int64_t* dst) {
  *src = p.src_offset;
  *dst = p.dst_offset;
  for (int d = p.rank - 2; d >= 0; --d) {
    if (d == b) continue;
    const int64_t i = z % p.size[d];
    z /= p.size[d];
    *src += i * p.src_stride[d];
    *dst += i * p.dst_stride[d];
  }
}

// Storage moved by one element: floats scale (exact for scale 1), i32 copies.
template <typename T>
AMR_HD void copy_element(const CopyPlan& p, T* out, const T* in, const Step& s) {
  if (s.src < 0) {
    out[s.dst] = T(0);  // +0 in every dtype
  } else if (p.scale == 1.f) {
    out[s.dst] = in[s.src];
  } else {
    Elem<T>::store(out, size_t(s.dst), Elem<T>::load(in, size_t(s.src)) * p.scale);
  }
}
template <>
AMR_HD void copy_element<int32_t>(const CopyPlan&, int32_t* out, const int32_t* in, const Step& s) {
  out[s.dst] = s.src < 0 ? 0 : in[s.src];
}

// The reflect / replicate pad's backward: planes × [in_h, in_w] × inner gathers the gradient of planes × [out_h,
// out_w] × inner, whose (0, 0) is the input's (-top, -left). inner is 1 for NCHW maps (pad2d) and C for NHWC
// (window partition).
// What the TypeScript ops plan (LayoutPadGeometry in ts/native.ts) and the binding reads.
struct PadGeometry {
  int64_t planes, inner;
  int32_t in_h, in_w, out_h, out_w, top, left;
  PadMode mode;
};

// Why a pad backward cannot run, or empty: offsets of either side must stay exact (the binding bounds each side's
// size when it reads it).
inline std::string unsupported(const PadGeometry& g) {
  const double p = double(g.planes) * double(g.inner);
  if (p * g.in_h * g.in_w > 9.0e15 || p * g.out_h * g.out_w > 9.0e15) return "tensor too large";
  return std::string();
}

// The output coordinates along one axis that read input coordinate s, as up to three [begin, end) ranges in
// increasing order (so every backend sums in the same order). Mirrors pad_coordinate.
struct Ranges {
  int32_t n;
  int32_t begin[3], end[3];
};
AMR_HD Ranges source_ranges(int32_t s, int32_t in, int32_t out, int32_t lo, PadMode mode) {
  Ranges r{0, {0, 0, 0}, {0, 0, 0}};
  auto add = [&](int32_t b, int32_t e) {
    if (b < 0) b = 0;
    if (e > out) e = out;
    if (b < e) {
      r.begin[r.n] = b;
      r.end[r.n] = e;
      ++r.n;
    }
  };
  if (mode == PadMode::Replicate) {
    add(s == 0 ? 0 : s + lo, s == in - 1 ? out : s + lo + 1);
  } else {
    if (s > 0 && in > 1) add(lo - s, lo - s + 1);
    add(lo + s, lo + s + 1);
    if (s < in - 1 && in > 1) add(lo + 2 * (in - 1) - s, lo + 2 * (in - 1) - s + 1);
  }
  return r;
}

// Input element e (flat over planes × in_h × in_w × inner): the sum of the output gradients read from it.
template <typename T>
AMR_HD float pad_gather(const PadGeometry& g, const T* grad_out, int64_t e) {
  const int64_t ch = e % g.inner, pixel = e / g.inner;
  const int32_t w = int32_t(pixel % g.in_w), h = int32_t(pixel / g.in_w % g.in_h);
  const int64_t plane = pixel / g.in_w / g.in_h;
  const Ranges rh = source_ranges(h, g.in_h, g.out_h, g.top, g.mode);
  const Ranges rw = source_ranges(w, g.in_w, g.out_w, g.left, g.mode);
  const T* base = grad_out + plane * g.out_h * g.out_w * g.inner + ch;
  float acc = 0.f;
  for (int a = 0; a < rh.n; ++a)
    for (int32_t oh = rh.begin[a]; oh < rh.end[a]; ++oh)
      for (int b = 0; b < rw.n; ++b)
        for (int32_t ow = rw.begin[b]; ow < rw.end[b]; ++ow)
          acc += Elem<T>::load(base, size_t((int64_t(oh) * g.out_w + ow) * g.inner));
  return acc;
}

// out [outer, inner] = alpha · Σ_k x [outer, n, inner], accumulated in f32 (sum and mean over one dim).
// What the TypeScript ops plan (LayoutReduceGeometry in ts/native.ts) and the binding reads.
struct ReduceGeometry {
  int64_t outer, n, inner;
  float alpha;
};

// Why a reduction cannot run, or empty: its element counts must keep offsets exact.
inline std::string unsupported(const ReduceGeometry& g) {
  return double(g.outer) * double(g.n) * double(g.inner) > 9.0e15 ? "tensor too large" : std::string();
}

#define AMR_LAYOUT_FUNCS                                                                          \
  void copy(GpuStream s, const CopyPlan& p, void* out, const void* in, DType dt);                \
  void pad_backward(GpuStream s, const PadGeometry& g, void* grad_in, const void* grad_out, DType dt); \
  void reduce(GpuStream s, const ReduceGeometry& g, void* out, const void* in, DType dt);

namespace cpu { AMR_LAYOUT_FUNCS }
namespace cuda { AMR_LAYOUT_FUNCS }
namespace sim { AMR_LAYOUT_FUNCS }

}  // namespace layout
}  // namespace amr
