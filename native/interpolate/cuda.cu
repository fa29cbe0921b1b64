#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "interpolate.h"

namespace amr {
namespace interpolate {
namespace AMR_GPU_NS {

namespace {

constexpr int kThreads = 256;

// V contiguous elements moved by one aligned load or store (16 bytes for the wide packs).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

// Zero bits are +0 in f32 and bf16 alike: the value of an absent tap.
template <typename T, int V>
__device__ Pack<T, V> load_pack_or_zero(const T* p) {
  if (p) return load_pack<T, V>(p);
  Pack<T, V> z;
  for (int v = 0; v < V; ++v) z.v[v] = T(0);
  return z;
}

template <typename T>
__device__ const T* corner(const T* map, int iy, int ix, int64_t row_stride, int64_t col_stride) {
  return iy < 0 || ix < 0 ? nullptr : map + iy * row_stride + ix * col_stride;
}

template <typename T>
__device__ float value_at(const T* map, int iy, int ix, int in_w) {
  return iy < 0 || ix < 0 ? 0.f : Elem<T>::load(map, size_t(iy) * in_w + ix);
}

// The token-layout kernels' thread mapping: a group of 2^lane_bits lanes per pixel p = (b, y, x) of a
// [batch, h, w] grid (w and h·w divided by div_w and div_hw). False for the threads past the last pixel.
struct LanePixel {
  uint32_t p, b, y, x;
  int lane;
};
__device__ bool lane_pixel(int lane_bits, FastDiv div_w, FastDiv div_hw, uint32_t pixels, LanePixel* out) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint32_t p = uint32_t(t >> lane_bits);
  if (p >= pixels) return false;
  const uint32_t b = div_hw.div(p), r = div_hw.mod(p, b);
  const uint32_t y = div_w.div(r);
  *out = LanePixel{p, b, y, div_w.mod(r, y), int(t & ((1 << lane_bits) - 1))};
  return true;
}

// Token layout, forward: a group of 2^lane_bits lanes (at most a warp) per output pixel, each lane moving V
// contiguous channels at a time, so the group's loads of each corner and its store are contiguous runs.
template <typename T, int V>
__global__ void forward_nlc_kernel(Geometry g, T* out, const T* in, int lane_bits, FastDiv div_w, FastDiv div_hw,
                                   uint32_t pixels) {
  LanePixel at;
  if (!lane_pixel(lane_bits, div_w, div_hw, pixels, &at)) return;
  const uint32_t p = at.p, b = at.b, oy = at.y, ox = at.x;
  const int lane = at.lane;
  const int C = g.channels;
  const bool keep = sample_kept(g, int(b));
  const Tap ty = axis_tap(g, 0, int(b), int(oy)), tx = axis_tap(g, 1, int(b), int(ox));
  const T* src = in + (g.mode == Mode::GridSample ? 0 : int64_t(b) * g.in_h * g.in_w * C);
  const int64_t rs = int64_t(g.in_w) * C;
  const T* p00 = corner(src, ty.i0, tx.i0, rs, C);
  const T* p01 = corner(src, ty.i0, tx.i1, rs, C);
  const T* p10 = corner(src, ty.i1, tx.i0, rs, C);
  const T* p11 = corner(src, ty.i1, tx.i1, rs, C);
  T* o = out + int64_t(p) * C;
  for (int k = lane * V; k < C; k += V << lane_bits) {
    Pack<T, V> res;
    if (keep) {
      const Pack<T, V> a00 = load_pack_or_zero<T, V>(p00 ? p00 + k : nullptr);
      const Pack<T, V> a01 = load_pack_or_zero<T, V>(p01 ? p01 + k : nullptr);
      const Pack<T, V> a10 = load_pack_or_zero<T, V>(p10 ? p10 + k : nullptr);
      const Pack<T, V> a11 = load_pack_or_zero<T, V>(p11 ? p11 + k : nullptr);
      for (int v = 0; v < V; ++v)
        Elem<T>::store(res.v, v,
                       bilerp(ty, tx, Elem<T>::load(a00.v, v), Elem<T>::load(a01.v, v), Elem<T>::load(a10.v, v),
                              Elem<T>::load(a11.v, v)));
    } else {
      for (int v = 0; v < V; ++v) Elem<T>::store(res.v, v, 0.f);
    }
    *reinterpret_cast<Pack<T, V>*>(o + k) = res;
  }
}

// NCHW forward: one thread per output element, consecutive threads along the output row.
template <typename T>
__global__ void forward_nchw_kernel(Geometry g, T* out, const T* in, FastDiv div_w, FastDiv div_h, FastDiv div_c,
                                    uint32_t total) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const uint32_t row = div_w.div(e), ox = div_w.mod(e, row);
    const uint32_t plane = div_h.div(row), oy = div_h.mod(row, plane);
    const uint32_t b = div_c.div(plane), c = div_c.mod(plane, b);
    float v = 0.f;
    if (sample_kept(g, int(b))) {
      const Tap ty = axis_tap(g, 0, int(b), int(oy)), tx = axis_tap(g, 1, int(b), int(ox));
      const T* src = in + int64_t(g.mode == Mode::GridSample ? c : plane) * g.in_h * g.in_w;
      v = bilerp(ty, tx, value_at(src, ty.i0, tx.i0, g.in_w), value_at(src, ty.i0, tx.i1, g.in_w),
                 value_at(src, ty.i1, tx.i0, g.in_w), value_at(src, ty.i1, tx.i1, g.in_w));
    }
    Elem<T>::store(out, e, v);
  }
}

// Windowed modes: one thread per output row or column builds its window (window_fill).
__global__ void window_kernel(Geometry g, int32_t* tables, int items) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (t >= items) return;
  if (t < g.out_h)
    window_fill(g, tables, 0, t);
  else
    window_fill(g, tables, 1, t - g.out_h);
}

// Windowed token layout, forward: a lane group per output pixel as forward_nlc_kernel, summing the window's rows of
// x-weighted packs.
template <typename T, int V>
__global__ void window_nlc_kernel(Geometry g, T* out, const T* in, const int32_t* tables, int lane_bits, FastDiv div_w,
                                  FastDiv div_hw, uint32_t pixels) {
  LanePixel at;
  if (!lane_pixel(lane_bits, div_w, div_hw, pixels, &at)) return;
  const uint32_t p = at.p, b = at.b, oy = at.y, ox = at.x;
  const int lane = at.lane;
  const int C = g.channels;
  const Window wy = window_at(g, tables, 0, int(oy)), wx = window_at(g, tables, 1, int(ox));
  const int64_t rs = int64_t(g.in_w) * C;
  const T* src = in + int64_t(b) * g.in_h * rs + int64_t(wx.first) * C;
  T* o = out + int64_t(p) * C;
  for (int k = lane * V; k < C; k += V << lane_bits) {
    float acc[V];
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    for (int jy = 0; jy < wy.count; ++jy) {
      float row[V];
      for (int v = 0; v < V; ++v) row[v] = 0.f;
      const T* rp = src + (wy.first + jy) * rs + k;
      for (int jx = 0; jx < wx.count; ++jx) {
        const Pack<T, V> a = load_pack<T, V>(rp + int64_t(jx) * C);
        for (int v = 0; v < V; ++v) row[v] += wx.w[jx] * Elem<T>::load(a.v, v);
      }
      for (int v = 0; v < V; ++v) acc[v] += wy.w[jy] * row[v];
    }
    Pack<T, V> res;
    for (int v = 0; v < V; ++v) Elem<T>::store(res.v, v, acc[v]);
    *reinterpret_cast<Pack<T, V>*>(o + k) = res;
  }
}

// Windowed NCHW forward: one thread per output element.
template <typename T>
__global__ void window_nchw_kernel(Geometry g, T* out, const T* in, const int32_t* tables, FastDiv div_w,
                                   FastDiv div_h, uint32_t total) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const uint32_t row = div_w.div(e), ox = div_w.mod(e, row);
    const uint32_t plane = div_h.div(row), oy = div_h.mod(row, plane);
    const Window wy = window_at(g, tables, 0, int(oy)), wx = window_at(g, tables, 1, int(ox));
    const T* src = in + int64_t(plane) * g.in_h * g.in_w + wx.first;
    float acc = 0.f;
    for (int jy = 0; jy < wy.count; ++jy) {
      const T* rp = src + int64_t(wy.first + jy) * g.in_w;
      float v = 0.f;
      for (int jx = 0; jx < wx.count; ++jx) v += wx.w[jx] * Elem<T>::load(rp, size_t(jx));
      acc += wy.w[jy] * v;
    }
    Elem<T>::store(out, e, acc);
  }
}

// Windowed modes: one thread per input row or column finds the outputs whose windows hold it.
__global__ void window_range_kernel(Geometry g, const int32_t* tables, int32_t* plan, int items) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (t >= items) return;
  const int axis = t < g.in_h ? 0 : 1;
  const int i = axis == 0 ? t : t - g.in_h;
  int32_t* range = plan + plan_offset(g, axis, 0) + 2 * i;
  window_range(g, tables, axis, i, range, range + 1);
}

// One thread per (sample, input row or column): the range of outputs that may sample it.
__global__ void plan_kernel(Geometry g, int32_t* plan, int items) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (t >= items) return;
  const int per_sample = g.in_h + g.in_w;
  const int s = t / per_sample, r = t - s * per_sample;
  const int axis = r < g.in_h ? 0 : 1;
  const int i = axis == 0 ? r : r - g.in_h;
  int32_t* range = plan + plan_offset(g, axis, s) + 2 * i;
  plan_range(g, axis, s, i, range, range + 1);
}

// How much input index i receives from output o along an axis: from the window tables when there are any, else
// from the output's recomputed taps.
__device__ float source_weight(const Geometry& g, const int32_t* tables, int axis, int b, int o, int i) {
  return tables ? window_weight(g, tables, axis, o, i) : tap_weight(axis_tap(g, axis, b, o), i);
}

// Calls add(b, oy, ox, weight) for every output that sampled input (bi, iy, ix), in a fixed order.
template <typename F>
__device__ void for_each_source(const Geometry& g, const int32_t* plan, const int32_t* tables, int bi, int iy, int ix,
                                F&& add) {
  const bool all_samples = g.mode == Mode::GridSample;
  const int b_end = all_samples ? g.batch : bi + 1;
  for (int b = all_samples ? 0 : bi; b < b_end; ++b) {
    if (!sample_kept(g, b)) continue;
    const int s = all_samples ? b : 0;
    const int32_t* ry = plan + plan_offset(g, 0, s) + 2 * iy;
    const int32_t* rx = plan + plan_offset(g, 1, s) + 2 * ix;
    const int ox_begin = rx[0], ox_end = rx[1];
    for (int oy = ry[0]; oy < ry[1]; ++oy) {
      const float wy = source_weight(g, tables, 0, b, oy, iy);
      if (wy == 0.f) continue;
      for (int ox = ox_begin; ox < ox_end; ++ox) {
        const float wx = source_weight(g, tables, 1, b, ox, ix);
        if (wx != 0.f) add(b, oy, ox, wy * wx);
      }
    }
  }
}

// Token layout, backward: a lane group per input pixel gathers its channels from the outputs that sampled it.
template <typename T, int V>
__global__ void backward_nlc_kernel(Geometry g, T* grad_in, const T* grad_out, const int32_t* plan,
                                    const int32_t* tables, int lane_bits, FastDiv div_w, FastDiv div_hw,
                                    uint32_t pixels) {
  LanePixel at;
  if (!lane_pixel(lane_bits, div_w, div_hw, pixels, &at)) return;
  const uint32_t p = at.p, bi = at.b, iy = at.y, ix = at.x;
  const int lane = at.lane;
  const int C = g.channels;
  for (int k = lane * V; k < C; k += V << lane_bits) {
    float acc[V];
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    for_each_source(g, plan, tables, int(bi), int(iy), int(ix), [&](int b, int oy, int ox, float w) {
      const Pack<T, V> gp = load_pack<T, V>(grad_out + ((int64_t(b) * g.out_h + oy) * g.out_w + ox) * C + k);
      for (int v = 0; v < V; ++v) acc[v] += w * Elem<T>::load(gp.v, v);
    });
    Pack<T, V> res;
    for (int v = 0; v < V; ++v) Elem<T>::store(res.v, v, acc[v]);
    *reinterpret_cast<Pack<T, V>*>(grad_in + int64_t(p) * C + k) = res;
  }
}

// NCHW backward: one thread per input element.
template <typename T>
__global__ void backward_nchw_kernel(Geometry g, T* grad_in, const T* grad_out, const int32_t* plan,
                                     const int32_t* tables, FastDiv div_w, FastDiv div_h, FastDiv div_c,
                                     uint32_t total) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
    const uint32_t row = div_w.div(e), ix = div_w.mod(e, row);
    const uint32_t plane = div_h.div(row), iy = div_h.mod(row, plane);
    const uint32_t bi = div_c.div(plane), c = div_c.mod(plane, bi);
    float acc = 0.f;
    for_each_source(g, plan, tables, int(bi), int(iy), int(ix), [&](int b, int oy, int ox, float w) {
      acc += w * Elem<T>::load(grad_out, size_t(((int64_t(b) * g.channels + c) * g.out_h + oy) * g.out_w + ox));
    });
    Elem<T>::store(grad_in, e, acc);
  }
}

unsigned blocks_for(int64_t threads) { return unsigned((threads + kThreads - 1) / kThreads); }
// Grid-stride kernels: enough blocks to fill any GPU, few enough that the index never wraps.
unsigned capped_blocks_for(int64_t threads) {
  const int64_t b = (threads + kThreads - 1) / kThreads;
  return unsigned(b < 65535 * 8 ? b : 65535 * 8);
}

// Lanes per pixel: enough for one pack each, a power of two, at most a warp.
int lane_bits_for(int packs) {
  int bits = 0;
  while (bits < 5 && (1 << bits) < packs) ++bits;
  return bits;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Runs f with the pack width as a compile-time constant: 16-byte packs when channels and pointers allow.
template <typename T, typename F>
void with_pack_width(const Geometry& g, const void* a, const void* b, F&& f) {
  constexpr int kWide = 16 / int(sizeof(T));
  if (g.channels % kWide == 0 && aligned16(a) && aligned16(b))
    f(std::integral_constant<int, kWide>());
  else
    f(std::integral_constant<int, 1>());
}

}  // namespace

// Builds the window tables of a windowed geometry into tables.
void build_windows(GpuStream s, const Geometry& g, int32_t* tables) {
  const int items = g.out_h + g.out_w;
  launch("interpolate_windows", window_kernel, dim3(blocks_for(items)), dim3(kThreads), 0, s, g, tables, items);
}

void forward(GpuStream s, const Geometry& g, void* out, const void* in, DType dt, void* scratch) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(in);
    const bool win = windowed(g);
    int32_t* tables = static_cast<int32_t*>(scratch);
    if (win) build_windows(s, g, tables);
    if (g.layout == Layout::NLC) {
      const auto pixels = uint32_t(int64_t(g.batch) * g.out_h * g.out_w);
      with_pack_width<T>(g, out, in, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const int bits = lane_bits_for(g.channels / V);
        const dim3 grid(blocks_for(int64_t(pixels) << bits));
        const FastDiv div_w(uint32_t(g.out_w)), div_hw(uint32_t(g.out_h * g.out_w));
        if (win)
          launch("interpolate_window_nlc", window_nlc_kernel<T, V>, grid, dim3(kThreads), 0, s, g, o, x,
                 static_cast<const int32_t*>(tables), bits, div_w, div_hw, pixels);
        else
          launch("interpolate_nlc", forward_nlc_kernel<T, V>, grid, dim3(kThreads), 0, s, g, o, x, bits, div_w, div_hw,
                 pixels);
      });
    } else {
      const auto total = uint32_t(output_elements(g));
      const dim3 grid(capped_blocks_for(total));
      if (win)
        launch("interpolate_window_nchw", window_nchw_kernel<T>, grid, dim3(kThreads), 0, s, g, o, x,
               static_cast<const int32_t*>(tables), FastDiv(uint32_t(g.out_w)), FastDiv(uint32_t(g.out_h)), total);
      else
        launch("interpolate_nchw", forward_nchw_kernel<T>, grid, dim3(kThreads), 0, s, g, o, x,
               FastDiv(uint32_t(g.out_w)), FastDiv(uint32_t(g.out_h)), FastDiv(uint32_t(g.channels)), total);
    }
  });
}

void backward(GpuStream s, const Geometry& g, void* grad_in, const void* grad_out, DType dt, void* scratch) {
  with_float_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* gi = static_cast<T*>(grad_in);
    const T* go = static_cast<const T*>(grad_out);
    int32_t* plan = static_cast<int32_t*>(scratch);
    // Scratch: the plan ranges, then (windowed modes) the window tables the ranges are found from.
    int32_t* tables = windowed(g) ? plan + plan_bytes(g) / int64_t(sizeof(int32_t)) : nullptr;
    const int items = plan_samples(g) * (g.in_h + g.in_w);
    if (tables) {
      build_windows(s, g, tables);
      launch("interpolate_window_ranges", window_range_kernel, dim3(blocks_for(items)), dim3(kThreads), 0, s, g,
             static_cast<const int32_t*>(tables), plan, items);
    } else {
      launch("interpolate_plan", plan_kernel, dim3(blocks_for(items)), dim3(kThreads), 0, s, g, plan, items);
    }
    const int32_t* cplan = plan;
    const int32_t* ctables = tables;
    const int in_batch = g.mode == Mode::GridSample ? 1 : g.batch;
    if (g.layout == Layout::NLC) {
      const auto pixels = uint32_t(int64_t(in_batch) * g.in_h * g.in_w);
      with_pack_width<T>(g, grad_in, grad_out, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const int bits = lane_bits_for(g.channels / V);
        launch("interpolate_nlc_backward", backward_nlc_kernel<T, V>, dim3(blocks_for(int64_t(pixels) << bits)),
               dim3(kThreads), 0, s, g, gi, go, cplan, ctables, bits, FastDiv(uint32_t(g.in_w)),
               FastDiv(uint32_t(g.in_h * g.in_w)), pixels);
      });
    } else {
      const auto total = uint32_t(input_elements(g));
      launch("interpolate_nchw_backward", backward_nchw_kernel<T>, dim3(capped_blocks_for(total)), dim3(kThreads), 0, s,
             g, gi, go, cplan, ctables, FastDiv(uint32_t(g.in_w)), FastDiv(uint32_t(g.in_h)),
             FastDiv(uint32_t(g.channels)), total);
    }
  });
}

}  // namespace AMR_GPU_NS
}  // namespace interpolate
}  // namespace amr
