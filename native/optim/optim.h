// AdamW (decoupled weight decay, bias correction) over many tensors in one pass. bf16 parameters keep an f32
// master copy: the update is applied to the master and rounded once into the bf16 parameter.
#pragma once
#include <cmath>
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace optim {

// One tensor's slice of the step. Plain data: it is copied to the device as a table.
struct AdamTensor {
  void* param;         // f32 or bf16
  const void* grad;    // same dtype as param
  float* m;            // f32 first moment
  float* v;            // f32 second moment
  float* master;       // f32 master weights (bf16 params), else nullptr
  int64_t n;
  int64_t offset;      // first element of this tensor in the flattened step (prefix sum of n)
  int32_t is_bf16;
  int32_t pad;
};

// Why the step cannot update t, or nullptr: the one list of its limits, asked by the binding. A bf16 parameter
// is updated through its f32 master copy (the scheme at the top of this file), so it must have one.
inline const char* unsupported(const AdamTensor& t) {
  return t.is_bf16 && !t.master ? "is bf16 but has no f32 master copy" : nullptr;
}

struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^t
};

// One step's settings as the TypeScript optimizer gives them (AdamwSettings in ts/native.ts): the hyperparameters
// and the 1-based step count the bias corrections are taken at.
struct AdamSettings {
  double lr, beta1, beta2, eps, weight_decay, step;
};

// Why a step with these settings cannot run, or nullptr: asked by the binding (the optimizer checks the
// hyperparameters' ranges before it steps).
inline const char* unsupported(const AdamSettings& s) { return s.step >= 1 ? nullptr : "step must be at least 1"; }

// The kernels' form of the settings: f32, with the bias corrections 1 − β^t computed once in double.
inline AdamHyper hyper_of(const AdamSettings& s) {
  AdamHyper h;
  h.lr = static_cast<float>(s.lr);
  h.beta1 = static_cast<float>(s.beta1);
  h.beta2 = static_cast<float>(s.beta2);
  h.eps = static_cast<float>(s.eps);
  h.weight_decay = static_cast<float>(s.weight_decay);
  h.bias_correction1 = static_cast<float>(1 - std::pow(static_cast<double>(h.beta1), s.step));
  h.bias_correction2 = static_cast<float>(1 - std::pow(static_cast<double>(h.beta2), s.step));
  return h;
}

AMR_HD float adamw_update(float p, float g, float* m, float* v, const AdamHyper& h) {
  p -= h.lr * h.weight_decay * p;
  const float m1 = h.beta1 * *m + (1.f - h.beta1) * g;
  const float v1 = h.beta2 * *v + (1.f - h.beta2) * g * g;
  *m = m1;
  *v = v1;
  const float denom = sqrtf(v1 / h.bias_correction2) + h.eps;
  return p - h.lr * (m1 / h.bias_correction1) / denom;
}

// Global gradient norm for clipping, over many tensors in one pass, without reading anything back per tensor.
// The flattened gradients are cut into `norm_blocks(total)` fixed chunks (a function of total only), each chunk
// summed in a fixed order and the chunk sums added in order, so the result is bitwise reproducible run to run.
struct NormTensor {
  void* grad;      // f32 or bf16
  int64_t n;
  int64_t offset;  // prefix sum of n, as in AdamTensor
  int32_t is_bf16;
  int32_t pad;
};

// The row of a tensor table (AdamTensor, NormTensor) holding element i of the flattened step: the last row whose
// offset is ≤ i. An empty row shares its successor's offset, so it is never the one chosen.
template <typename Row>
AMR_HD int64_t table_row(const Row* table, int64_t rows, int64_t i) {
  int64_t lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (table[mid].offset <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

AMR_HD float norm_grad_at(const NormTensor& d, int64_t j) {
  return d.is_bf16 ? bf16_to_f32(static_cast<const uint16_t*>(d.grad)[j]) : static_cast<const float*>(d.grad)[j];
}

constexpr int kNormThreads = 256;
constexpr int64_t kNormItemsPerBlock = kNormThreads * 32;
constexpr int64_t kNormMaxBlocks = 1024;
inline int64_t norm_blocks(int64_t total) {
  const int64_t b = (total + kNormItemsPerBlock - 1) / kNormItemsPerBlock;
  return b < 1 ? 1 : b > kNormMaxBlocks ? kNormMaxBlocks : b;
}

// What the clip does with the sum of squares s (both backends evaluate this same expression): the factor every
// gradient is multiplied by. A non-finite norm leaves the gradients alone (factor 1): the step is to be skipped,
// and scaling by NaN would only destroy what a caller may want to inspect.
AMR_HD float clip_coefficient(float s, float max_norm) {
  const float norm = sqrtf(s);
  if (!(max_norm > 0.f) || !(norm <= 3.4e38f)) return 1.f;
  const float c = max_norm / (norm + 1e-6f);
  return c < 1.f ? c : 1.f;
}

#define AMR_OPTIM_FUNCS                                                                                       \
  void adamw_step(GpuStream s, const AdamTensor* table, int64_t tensors, int64_t total, const AdamHyper& h);   \
  /* out[0] = Σ g² over every tensor, out[1] = clip_coefficient(out[0], max_norm); partial: norm_blocks f32 */ \
  void grad_norm(GpuStream s, const NormTensor* table, int64_t tensors, int64_t total, float max_norm,         \
                 float* partial, float* out);                                                                  \
  /* every gradient *= coef[0] (in place) */                                                                   \
  void grad_scale(GpuStream s, const NormTensor* table, int64_t tensors, int64_t total, const float* coef);

namespace cpu { AMR_OPTIM_FUNCS }
namespace cuda { AMR_OPTIM_FUNCS }
namespace sim { AMR_OPTIM_FUNCS }

}  // namespace optim
}  // namespace amr
