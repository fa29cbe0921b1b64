// BatchNorm2d (statistics per channel over N·H·W) and LayerNorm2d (statistics per pixel over C) on NCHW,
// x viewed as [n, c, hw]. Statistics are f32 whatever the storage.
//
// Every reduction is deterministic without atomics: a fixed-order sum per (n, c) plane into scratch, then per
// channel the planes in order of n. Both backends use the same split, so cpu and sim agree closely and each is
// bitwise reproducible on its own.
//
// BatchNorm in training shifts each channel by its first element x0 = x[0, c, 0] before summing (as norm.h does per
// row): x − x0 is exact near x0, so a channel whose mean is large (1e4) keeps a precise mean and variance. The
// kept `mean` is then the mean of x − x0; in eval it is the running mean and the shift is 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../norm/norm.h"
#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace batchnorm {

using norm::centred;
using norm::with_param_type;

// The [n, c, hw] view of an NCHW tensor every call of the family shares, and its storage dtypes (x in dt, the
// parameters and their gradients in pdt: dt or f32): what the TypeScript ops plan (BatchNormGeometry in
// ts/native.ts) and the binding reads once. Each call's arguments below extend it.
struct Geometry {
  int64_t n = 0, c = 0, hw = 0;
  DType dt = DType::F32, pdt = DType::F32;
};

struct BatchNormForward : Geometry {
  void* y;
  const void* x;
  const void* weight;  // [c] in pdt, or null (1)
  const void* bias;    // [c] in pdt, or null (0)
  void* running_mean;  // [c] in sdt, or null: read in eval, updated in place in training
  void* running_var;
  float* mean;    // [c] out: the (shifted, see above) mean used, kept for backward
  float* invstd;  // [c] out: 1 / sqrt(var + eps)
  float eps, momentum;
  bool training;
  DType sdt;  // running statistics: dt or f32
};

struct BatchNormBackward : Geometry {
  void* dx;  // each output may be null when that gradient is not wanted
  void* dweight;
  void* dbias;
  const void* dy;
  const void* x;
  const void* weight;  // null: 1
  const float* mean;
  const float* invstd;
  bool training;  // dx then includes the terms through the batch statistics
};

struct LayerNorm2dForward : Geometry {
  void* y;
  float* mean;  // [n, hw] out: the mean of x − x[n, 0, p] (shifted per pixel)
  float* rstd;  // [n, hw]
  const void* x;
  const void* weight;
  const void* bias;
  float eps;
};

struct LayerNorm2dBackward : Geometry {
  void* dx;
  void* dweight;
  void* dbias;
  const void* dy;
  const void* x;
  const void* weight;
  const float* mean;
  const float* rstd;
};

// Why a call cannot run, or nullptr: the one list of the family's limits, asked by the binding. Sizes must keep
// every offset (and the scratch) in range; parameters and running statistics are stored like x or in f32 (norm.h's
// rule), and eps must keep 1 / sqrt(var + eps) finite.
inline const char* unsupported(const Geometry& g) {
  const double n = double(g.n), c = double(g.c), hw = double(g.hw);
  if (n * c * hw > 9.0e15 || (2 * n + 2) * c > 9.0e15) return "tensor too large";
  return norm::param_dtype_unsupported(g.dt, g.pdt) ? "paramDtype must be the input's dtype or f32" : nullptr;
}
inline const char* unsupported(const BatchNormForward& a) {
  if (const char* why = unsupported(static_cast<const Geometry&>(a))) return why;
  if (norm::param_dtype_unsupported(a.dt, a.sdt)) return "statsDtype must be the input's dtype or f32";
  if (!a.running_mean != !a.running_var) return "runningMean and runningVar must be given together";
  if (!a.training && !a.running_mean) return "eval mode needs runningMean and runningVar";
  // The unbiased variance the running statistics take divides by N·H·W − 1.
  if (a.training && a.n * a.hw < 2) return "training needs more than one value per channel";
  if (!(a.eps > 0.f)) return "eps must be > 0";
  if (!(a.momentum >= 0.f && a.momentum <= 1.f)) return "momentum must be in [0, 1]";
  return nullptr;
}
inline const char* unsupported(const BatchNormBackward& a) { return unsupported(static_cast<const Geometry&>(a)); }
inline const char* unsupported(const LayerNorm2dForward& a) {
  if (const char* why = unsupported(static_cast<const Geometry&>(a))) return why;
  return a.eps > 0.f ? nullptr : "eps must be > 0";
}
inline const char* unsupported(const LayerNorm2dBackward& a) { return unsupported(static_cast<const Geometry&>(a)); }

// f32 scratch every call takes: two partials per plane, then two sums per channel.
inline int64_t scratch_bytes(int64_t n, int64_t c) { return (2 * n * c + 2 * c) * int64_t(sizeof(float)); }

// The shift of channel ch: its first element in training, 0 in eval (running stats are true means).
template <typename T>
AMR_HD float channel_shift(const T* x, int64_t ch, int64_t hw, bool training) {
  return training ? Elem<T>::load(x, ch * hw) : 0.f;
}

// Biased variance and the running-stat update of one channel, PyTorch's rule: the running variance takes the
// unbiased estimate var·count/(count − 1).
template <typename S>
AMR_HD float finish_channel(float sum_sq, float shifted_mean, float shift, int64_t ch, int64_t count, float eps,
                            float momentum, S* running_mean, S* running_var) {
  const float var = sum_sq / count;
  if (running_mean) {
    const float rm = Elem<S>::load(running_mean, ch), rv = Elem<S>::load(running_var, ch);
    const float unbiased = var * (static_cast<float>(count) / static_cast<float>(count - 1));
    Elem<S>::store(running_mean, ch, (1.f - momentum) * rm + momentum * (shift + shifted_mean));
    Elem<S>::store(running_var, ch, (1.f - momentum) * rv + momentum * unbiased);
  }
  return 1.f / sqrtf(var + eps);
}

// Eval statistics of one channel: the running mean as it is (shift 0), 1 / sqrt(running_var + eps).
template <typename S>
AMR_HD void eval_channel(float* mean, float* invstd, const S* running_mean, const S* running_var, int64_t ch, float eps) {
  mean[ch] = Elem<S>::load(running_mean, ch);
  invstd[ch] = 1.f / sqrtf(Elem<S>::load(running_var, ch) + eps);
}

// dx of one element given g = dy·w and x̂. Training: w·invstd/n·(n·dy − Σdy − x̂·Σdy·x̂), written with the channel
// sums of dy and dy·x̂ (those sums are also dbias and dweight); eval: the statistics are constants.
AMR_HD float batch_norm_dx(float dy, float w, float xh, float invstd, float sum_dy, float sum_dyxh, int64_t count,
                           bool training) {
  if (!training) return dy * w * invstd;
  const float inv_n = 1.f / static_cast<float>(count);
  return w * invstd * (dy - sum_dy * inv_n - xh * sum_dyxh * inv_n);
}

// Σ over n of the per-plane partials of channel ch, in order of n: the second, fixed-order step of every reduction.
AMR_HD float sum_over_n(const float* partial, int64_t n, int64_t c, int64_t ch) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += partial[i * c + ch];
  return s;
}

// LayerNorm2d's dx at one pixel, as norm's per-row rule: rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w.
AMR_HD float layer_norm_dx(float g, float xh, float rstd, float mean_g, float mean_gxh) {
  return rstd * (g - mean_g - xh * mean_gxh);
}

template <typename P>
AMR_HD float param_or(const P* p, int64_t i, float fallback) {
  return p ? Elem<P>::load(p, i) : fallback;
}

// Calls f with null pointers of x's storage type T and the parameters' type P (x's or f32).
template <typename F>
void with_types(DType dt, DType pdt, const char* op, F&& f) {
  with_float_dtype(dt, op, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    with_param_type<T>(pdt, [&](auto* ptag) { f(tag, ptag); });
  });
}

#define AMR_BATCHNORM_FUNCS                                                       \
  void batch_norm_forward(GpuStream s, const BatchNormForward& a, float* scratch);   \
  void batch_norm_backward(GpuStream s, const BatchNormBackward& a, float* scratch); \
  void layer_norm2d_forward(GpuStream s, const LayerNorm2dForward& a);               \
  void layer_norm2d_backward(GpuStream s, const LayerNorm2dBackward& a, float* scratch);

// The four entry points of one backend: each picks the storage types and calls that backend's templates
// bn_forward<T, P, S>, bn_backward<T, P>, ln_forward<T, P>, ln_backward<T, P> (same arguments as the entry point).
#define AMR_BATCHNORM_ENTRY_POINTS                                                                              \
  void batch_norm_forward(GpuStream s, const BatchNormForward& a, float* scratch) {                             \
    with_types(a.dt, a.pdt, "batchNorm2d", [&](auto* tag, auto* ptag) {                                         \
      using T = std::remove_pointer_t<decltype(tag)>;                                                           \
      using P = std::remove_pointer_t<decltype(ptag)>;                                                          \
      with_param_type<T>(a.sdt, [&](auto* stag) { bn_forward<T, P, std::remove_pointer_t<decltype(stag)>>(s, a, scratch); }); \
    });                                                                                                         \
  }                                                                                                             \
  void batch_norm_backward(GpuStream s, const BatchNormBackward& a, float* scratch) {                           \
    with_types(a.dt, a.pdt, "batchNorm2d backward", [&](auto* tag, auto* ptag) {                                \
      bn_backward<std::remove_pointer_t<decltype(tag)>, std::remove_pointer_t<decltype(ptag)>>(s, a, scratch);  \
    });                                                                                                         \
  }                                                                                                             \
  void layer_norm2d_forward(GpuStream s, const LayerNorm2dForward& a) {                                         \
    with_types(a.dt, a.pdt, "layerNorm2d", [&](auto* tag, auto* ptag) {                                         \
      ln_forward<std::remove_pointer_t<decltype(tag)>, std::remove_pointer_t<decltype(ptag)>>(s, a);            \
    });                                                                                                         \
  }                                                                                                             \
  void layer_norm2d_backward(GpuStream s, const LayerNorm2dBackward& a, float* scratch) {                       \
    with_types(a.dt, a.pdt, "layerNorm2d backward", [&](auto* tag, auto* ptag) {                                \
      ln_backward<std::remove_pointer_t<decltype(tag)>, std::remove_pointer_t<decltype(ptag)>>(s, a, scratch);  \
    });                                                                                                         \
  }

namespace cpu { AMR_BATCHNORM_FUNCS }
namespace cuda { AMR_BATCHNORM_FUNCS }
namespace sim { AMR_BATCHNORM_FUNCS }

}  // namespace batchnorm
}  // namespace amr
