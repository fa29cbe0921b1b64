// 2-D convolution, NCHW, PyTorch's Conv2d semantics (any kernel, stride, padding, dilation, groups; optional bias),
// as im2col + the GEMM family's matrix product, so conv runs on whatever GEMM runs on (BLAS on cpu, the
// tensor-core tiles for bf16 on cuda) and gets faster with it. Three entry points cover conv2d and its transpose:
//   forward          y  = act(conv(x, w) + bias) + residual
//   backward_input   dx = conv(·, w)ᵀ dy (+ bias): also the forward of ConvTranspose2d, whose weight is conv's
//   backward_weight  dw = dy ⋆ x: the weight gradient of both
// Columns are laid out [K, N·Ho·Wo] (K = Cg·kh·kw, one row per input channel and tap, one column per output
// pixel of every image), so one product per group covers the whole batch: the weight gradient then sums over the
// batch inside the product's f32 accumulator instead of in rounded storage, and a channel's outputs form one row.
// col2im is a gather (each input pixel sums the columns that read it, in a fixed order): no float atomics, the
// same bits run to run. In bf16 on cuda and sim the gradients (and the forward when K is a multiple of 8) are
// implicit GEMMs instead: the columns are gathered inside the tensor-core tile, never written (see the implicit_*
// predicates below and cuda.cu).
#pragma once
#include <atomic>
#include <cstdint>

#include "../activation/activation.h"
#include "../gemm/gemm.h"
#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace conv {

struct Geometry {
  int batch = 0, in_c = 0, in_h = 0, in_w = 0;
  int out_c = 0, out_h = 0, out_w = 0;
  int groups = 1;
  int kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

// PyTorch's output size of a convolution along one axis; < 1 means the input is too small for the kernel.
AMR_HD int64_t out_size(int64_t in, int k, int s, int p, int d) { return (in + 2 * int64_t(p) - int64_t(d) * (k - 1) - 1) / s + 1; }

AMR_HD int64_t group_in(const Geometry& g) { return g.in_c / g.groups; }
AMR_HD int64_t group_out(const Geometry& g) { return g.out_c / g.groups; }
AMR_HD int64_t col_rows(const Geometry& g) { return group_in(g) * g.kh * g.kw; }
AMR_HD int64_t col_cols(const Geometry& g) { return int64_t(g.batch) * g.out_h * g.out_w; }
AMR_HD int64_t input_elements(const Geometry& g) { return int64_t(g.batch) * g.in_c * g.in_h * g.in_w; }
AMR_HD int64_t output_elements(const Geometry& g) { return int64_t(g.batch) * g.out_c * g.out_h * g.out_w; }
AMR_HD int64_t weight_elements(const Geometry& g) { return int64_t(g.out_c) * col_rows(g); }

// The im2col path's scratch, in elements of the storage dtype: one group's columns, the [O, N·Ho·Wo] channel-major
// copy of y or dy, and (backward_input) one group's transposed weight.
inline int64_t workspace_elements(const Geometry& g) {
  return col_rows(g) * col_cols(g) + int64_t(g.out_c) * col_cols(g) + weight_elements(g);
}

// Depthwise-style convs (one input channel per group: E-RADIO's pre-convs and neck) run direct, one output, input
// or weight element per thread: as products they would be one 1-row GEMM per channel.
AMR_HD bool direct(const Geometry& g) { return g.groups > 1 && group_in(g) == 1; }

// Whether forward runs as an implicit GEMM on the tensor-core tile (cuda and sim, bf16): its A rows (the weight)
// are read 16 bytes at a time, so K must be a multiple of 8 and the weight 16-byte aligned.
inline bool implicit_gemm(const Geometry& g, DType dt, BackendKind k, const void* weight) {
  return k != BackendKind::Cpu && dt == DType::BF16 && !direct(g) && col_rows(g) % 8 == 0 &&
         (reinterpret_cast<uintptr_t>(weight) & 15u) == 0;
}

// The input gradient as an implicit GEMM, dx[c, (n, iy, ix)] = Σ over (o, i, j) of wᵀ[c, (o, i, j)] ·
// dy[n, o, oy(iy, i), ox(ix, j)], per group and per phase (below): A is the weight transposed into scratch with its
// K padded to a multiple of 8 (zero columns), so cp.async reads it whatever the shape; B gathers dy. Every
// non-direct bf16 geometry on cuda and sim takes it.
inline bool implicit_backward_input(const Geometry& g, DType dt, BackendKind k) {
  return k != BackendKind::Cpu && dt == DType::BF16 && !direct(g);
}

// With stride s > 1 an input pixel is reached only by the taps i with (iy + pad − i·d) % s == 0, which depends on iy
// mod s alone: the input pixels split into sh·sw phases (iy = py + sh·u, ix = px + sw·v), and within a phase its
// taps i = i0 + step·a (step = s / gcd(s, d)) reach oy = u + base − a·dstep, a stride-1 correlation. One GEMM per
// phase with only its taps in A does the MACs that matter; gathering zeros for the taps that miss would do sh·sw
// times as many (4x for E-RADIO's stride-2 stem and downsamples). Stride 1 is the single phase with every tap.
struct DgradAxis {
  int pos0 = 0, pixels = 0;  // the phase's first input index and how many it has per image (iy = pos0 + s·u)
  int tap0 = 0, step = 1, taps = 0;  // its taps: tap0 + step·a for a < taps
  int base = 0, dstep = 0;   // o = u + base − a·dstep
};
AMR_HD DgradAxis dgrad_axis(int phase, int in, int k, int s, int p, int d) {
  DgradAxis a;
  a.pos0 = phase;
  a.pixels = phase < in ? (in - phase + s - 1) / s : 0;
  int gcd = s, b = d;
  while (b) { const int t = gcd % b; gcd = b; b = t; }
  a.step = s / gcd;
  for (int i = 0; i < a.step && i < k; ++i)
    if (((phase + p - i * d) % s + s) % s == 0) {
      a.tap0 = i;
      a.taps = (k - i + a.step - 1) / a.step;
      a.base = (phase + p - i * d) / s;  // exact: the numerator is a multiple of s
      a.dstep = a.step * d / s;
      break;
    }
  return a;
}
struct DgradPhase {
  DgradAxis y, x;
  int64_t kp = 0;      // K = Og · (y taps) · (x taps), padded to a multiple of 8
  int64_t offset = 0;  // where its A [groups][Cg][kp] starts in the scratch
};
// Phase (py, px) with its scratch offset: phases are laid out in row-major order, each [groups][Cg][kp].
inline DgradPhase dgrad_phase(const Geometry& g, int py, int px) {
  DgradPhase ph;
  for (int p = 0; p <= py * g.sw + px; ++p) {
    ph.offset += int64_t(g.groups) * group_in(g) * ph.kp;
    ph.y = dgrad_axis(p / g.sw, g.in_h, g.kh, g.sh, g.ph, g.dh);
    ph.x = dgrad_axis(p % g.sw, g.in_w, g.kw, g.sw, g.pw, g.dw);
    ph.kp = (group_out(g) * ph.y.taps * ph.x.taps + 7) / 8 * 8;
  }
  return ph;
}
// The scratch of every phase's A, in elements.
inline int64_t dgrad_weight_elements(const Geometry& g) {
  const DgradPhase last = dgrad_phase(g, g.sh - 1, g.sw - 1);
  return last.offset + int64_t(g.groups) * group_in(g) * last.kp;
}

// The weight gradient as an implicit GEMM, dw[o, (c, i, j)] = Σ over q = (n, oy, ox) of dy[n, o, q] · x[col_source]:
// its K is every output pixel of the batch (N·Ho·Wo, long) and its M·N only Og × Cg·kh·kw, so the K range is split
// over blocks (grid z) when the product alone would not fill the device. Splits write f32 partials to scratch and a
// second pass sums them in split order: deterministic, no float atomics. A split is a whole number of k tiles. The
// partials stay small: splits > 1 only while the 64×64 tiles number fewer than kWgradBlocks, so splits·Og·Kc is
// under 2·kWgradBlocks·64·64 f32 (8.6 MB; one group at a time), against the column matrix's Kc·N·Ho·Wo.
constexpr int kWgradTileK = 32;       // the tile's k step (gemm::kMmaTileK)
constexpr int64_t kWgradBlocks = 264;  // blocks to aim for (two per SM of the largest GPUs we target)
constexpr int64_t kWgradMinTiles = 8;  // k tiles per split at least, so a split's pipeline runs full
inline int64_t wgrad_splits(const Geometry& g) {
  const int64_t blocks = ((group_out(g) + 63) / 64) * ((col_rows(g) + 63) / 64) * g.groups;
  const int64_t ktiles = (col_cols(g) + kWgradTileK - 1) / kWgradTileK;
  int64_t s = (kWgradBlocks + blocks - 1) / blocks;
  if (s > ktiles / kWgradMinTiles) s = ktiles / kWgradMinTiles;
  if (s > 64) s = 64;
  return s < 1 ? 1 : s;
}
// The k tiles of each split (the last may have fewer).
inline int64_t wgrad_split_tiles(const Geometry& g) {
  const int64_t ktiles = (col_cols(g) + kWgradTileK - 1) / kWgradTileK, s = wgrad_splits(g);
  return (ktiles + s - 1) / s;
}
inline bool implicit_backward_weight(const Geometry& g, DType dt, BackendKind k) {
  return k != BackendKind::Cpu && dt == DType::BF16 && !direct(g);
}

// The scratch in bytes: f32 on cpu (its products compute in f32), the storage dtype on cuda and sim; none for the
// direct and the implicit-GEMM forward (`weight` given only by forward).
inline int64_t workspace_bytes(const Geometry& g, DType dt, BackendKind k, const void* forward_weight = nullptr) {
  if (direct(g) || (forward_weight && implicit_gemm(g, dt, k, forward_weight))) return 16;
  return workspace_elements(g) * int64_t(k == BackendKind::Cpu ? 4 : dtype_size(dt));
}
// backward_input's: the implicit path needs only the phases' padded transposed weights (about the weight, bf16).
inline int64_t workspace_bytes_backward_input(const Geometry& g, DType dt, BackendKind k) {
  if (!direct(g) && implicit_backward_input(g, dt, k)) return dgrad_weight_elements(g) * 2 + 16;
  return workspace_bytes(g, dt, k);
}
// backward_weight's: the implicit path needs one group's f32 partials when it splits K, nothing otherwise.
inline int64_t workspace_bytes_backward_weight(const Geometry& g, DType dt, BackendKind k) {
  if (!direct(g) && implicit_backward_weight(g, dt, k)) {
    const int64_t s = wgrad_splits(g);
    return s > 1 ? s * group_out(g) * col_rows(g) * 4 : 16;
  }
  return workspace_bytes(g, dt, k);
}

// How many times each implicit-GEMM path ran (every backend, process-wide): the tests' proof that a geometry took
// the path they mean to check.
struct ImplicitCounts {
  std::atomic<int64_t> forward{0}, backward_input{0}, backward_weight{0};
};
inline ImplicitCounts& implicit_counts() {
  static ImplicitCounts c;
  return c;
}

// Why a geometry cannot run, or nullptr: the one list of limits, asked by the binding (and so by every caller).
inline const char* unsupported(const Geometry& g) {
  if (g.batch < 1 || g.in_c < 1 || g.in_h < 1 || g.in_w < 1 || g.out_c < 1) return "sizes must be positive";
  if (g.groups < 1 || g.in_c % g.groups != 0 || g.out_c % g.groups != 0)
    return "groups must divide both the input and the output channels";
  if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.ph < 0 || g.pw < 0)
    return "kernel, stride and dilation must be >= 1 and padding >= 0";
  if (g.out_h != out_size(g.in_h, g.kh, g.sh, g.ph, g.dh) || g.out_w != out_size(g.in_w, g.kw, g.sw, g.pw, g.dw))
    return "the output size does not follow from the input, kernel, stride, padding and dilation";
  if (g.out_h < 1 || g.out_w < 1) return "the input is smaller than the dilated kernel";
  // The kernels index with 32-bit integers within a tensor.
  const int64_t lim = 2147483647;
  if (input_elements(g) > lim || output_elements(g) > lim || col_rows(g) * col_cols(g) > lim ||
      int64_t(g.out_c) * col_cols(g) > lim)
    return "tensors (or their column matrix) of 2^31 elements or more are not supported";
  return nullptr;
}

// The fused epilogue of forward, per output channel o: v = acc + bias[o]; pre = v; v = act(v); v += residual.
struct Epilogue {
  const void* bias = nullptr;      // [O]
  activation::Kind activation = activation::Kind::None;
  const void* residual = nullptr;  // like y
  void* preactivation = nullptr;   // like y; what the activation's backward needs
};

// The scratch's three parts, in elements of S (f32 on cpu, the storage dtype on cuda and sim): one group's
// columns [K, Q], the channel-major copy of y or dy [O, Q], and a weight-sized slot [O, K].
template <typename S>
struct Scratch {
  S *col, *rows, *weight;
  Scratch(const Geometry& g, void* ws)
      : col(static_cast<S*>(ws)), rows(col + col_rows(g) * col_cols(g)), weight(rows + int64_t(g.out_c) * col_cols(g)) {}
};

// C [m, n] = op(A) · op(B), the GEMM family's arguments for one group's product.
inline gemm::GemmArgs product(int64_t m, int64_t n, int64_t k, const void* a, const void* b, void* c, DType dt,
                              bool trans_a = false, bool trans_b = false) {
  gemm::GemmArgs p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = a;
  p.b = b;
  p.c = c;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.dtype = dt;
  return p;
}

#define AMR_CONV_FUNCS                                                                                             \
  void forward(GpuStream s, const Geometry& g, const Epilogue& e, void* y, const void* x, const void* w, DType dt, \
               void* workspace);                                                                                 \
  /* bias (optional, [C]) is added to dx: ConvTranspose2d's bias. */                                              \
  void backward_input(GpuStream s, const Geometry& g, void* dx, const void* dy, const void* w, const void* bias,  \
                      DType dt, void* workspace);                                                                \
  void backward_weight(GpuStream s, const Geometry& g, void* dw, const void* x, const void* dy, DType dt,        \
                       void* workspace);                                                                         \
  /* db[c] = Σ over n, y, x of t[n, c, y, x]: the bias gradient of conv (t = dy) and of its transpose. */         \
  void channel_sum(GpuStream s, void* out, const void* t, int64_t n, int64_t c, int64_t hw, DType dt);

namespace cpu { AMR_CONV_FUNCS }
namespace cuda { AMR_CONV_FUNCS }
namespace sim { AMR_CONV_FUNCS }

// im2col's one rule, shared by every backend: column row r = (c, i, j) of group channel c and tap (i, j), column
// q = (n, oy, ox), reads x[n, c, oy·sh − ph + i·dh, ox·sw − pw + j·dw], 0 outside. Returns the input offset or −1.
// I = int serves the tensor-core gathers: every value here is below the input's or the column matrix's size, which
// unsupported() keeps under 2^31, and a GPU divides 32-bit integers in a fraction of the instructions of 64-bit ones.
template <typename I = int64_t>
AMR_HD I col_source(const Geometry& g, I group, I r, I q) {
  const I j = r % g.kw, i = (r / g.kw) % g.kh, c = r / (I(g.kw) * g.kh) + group * I(group_in(g));
  const I ox = q % g.out_w, oy = (q / g.out_w) % g.out_h, n = q / (I(g.out_w) * g.out_h);
  const I iy = oy * g.sh - g.ph + i * g.dh, ix = ox * g.sw - g.pw + j * g.dw;
  if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) return -1;
  return ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix;
}

// col2im's gather for input pixel (iy, ix) and tap i along one axis: the output index that read it, or −1.
AMR_HD int64_t tap_output(int64_t in_pos, int tap, int stride, int pad, int dil, int out) {
  const int64_t t = in_pos + pad - int64_t(tap) * dil;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t o = t / stride;
  return o < out ? o : -1;
}

// col2im for input pixel (iy, ix) of group channel cl, image n: the sum of the column gradient entries that read
// it, taps in a fixed order.
template <typename T>
AMR_HD float gather_columns(const Geometry& g, int64_t cl, int64_t n, int64_t iy, int64_t ix, const T* dcol) {
  const int64_t HW = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  float acc = 0.f;
  for (int i = 0; i < g.kh; ++i) {
    const int64_t oy = tap_output(iy, i, g.sh, g.ph, g.dh, g.out_h);
    if (oy < 0) continue;
    for (int j = 0; j < g.kw; ++j) {
      const int64_t ox = tap_output(ix, j, g.sw, g.pw, g.dw, g.out_w);
      if (ox < 0) continue;
      acc += Elem<T>::load(dcol, ((cl * g.kh + i) * g.kw + j) * Q + n * HW + oy * g.out_w + ox);
    }
  }
  return acc;
}

// Direct convolution (see direct()): output element (n, o, oy, ox), taps in a fixed order.
template <typename T>
AMR_HD float direct_output(const Geometry& g, const T* x, const T* w, int64_t n, int64_t o, int64_t oy, int64_t ox) {
  const int64_t c = o / group_out(g);
  const T* plane = x + (n * g.in_c + c) * g.in_h * g.in_w;
  const T* wo = w + o * g.kh * g.kw;
  float acc = 0.f;
  for (int i = 0; i < g.kh; ++i) {
    const int64_t iy = oy * g.sh - g.ph + int64_t(i) * g.dh;
    if (iy < 0 || iy >= g.in_h) continue;
    for (int j = 0; j < g.kw; ++j) {
      const int64_t ix = ox * g.sw - g.pw + int64_t(j) * g.dw;
      if (ix >= 0 && ix < g.in_w) acc += Elem<T>::load(plane, iy * g.in_w + ix) * Elem<T>::load(wo, i * g.kw + j);
    }
  }
  return acc;
}

// Direct input gradient at (n, c, iy, ix): every output channel of c's group, every tap that read the pixel.
template <typename T>
AMR_HD float direct_input_grad(const Geometry& g, const T* dy, const T* w, int64_t n, int64_t c, int64_t iy, int64_t ix) {
  const int64_t Og = group_out(g), HWo = int64_t(g.out_h) * g.out_w;
  float acc = 0.f;
  for (int64_t ol = 0; ol < Og; ++ol) {
    const int64_t o = c * Og + ol;
    const T* plane = dy + (n * g.out_c + o) * HWo;
    for (int i = 0; i < g.kh; ++i) {
      const int64_t oy = tap_output(iy, i, g.sh, g.ph, g.dh, g.out_h);
      if (oy < 0) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int64_t ox = tap_output(ix, j, g.sw, g.pw, g.dw, g.out_w);
        if (ox >= 0) acc += Elem<T>::load(plane, oy * g.out_w + ox) * Elem<T>::load(w, (o * g.kh + i) * g.kw + j);
      }
    }
  }
  return acc;
}

// Part of the direct weight gradient of (o, tap i, j): Σ dy·x over output pixels q = begin, begin + step, ... of
// all N·Ho·Wo, so a block can split the sum over its threads in a fixed way.
template <typename T>
AMR_HD float direct_weight_grad(const Geometry& g, const T* x, const T* dy, int64_t o, int i, int j, int64_t begin, int64_t step) {
  const int64_t c = o / group_out(g), HWo = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  float acc = 0.f;
  for (int64_t q = begin; q < Q; q += step) {
    const int64_t n = q / HWo, oy = (q % HWo) / g.out_w, ox = q % g.out_w;
    const int64_t iy = oy * g.sh - g.ph + int64_t(i) * g.dh, ix = ox * g.sw - g.pw + int64_t(j) * g.dw;
    if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
    acc += Elem<T>::load(dy, (n * g.out_c + o) * HWo + oy * g.out_w + ox) * Elem<T>::load(x, ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix);
  }
  return acc;
}

// forward's epilogue on output element t of channel o: + bias, keep the preactivation, activate, + residual, store.
template <typename T>
AMR_HD void store_output(const Epilogue& e, T* y, int64_t t, int64_t o, float v) {
  if (e.bias) v += Elem<T>::load(static_cast<const T*>(e.bias), o);
  if (e.preactivation) Elem<T>::store(static_cast<T*>(e.preactivation), t, v);
  v = activation::apply(e.activation, v);
  if (e.residual) v += Elem<T>::load(static_cast<const T*>(e.residual), t);
  Elem<T>::store(y, t, v);
}

}  // namespace conv
}  // namespace amr
