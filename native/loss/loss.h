// Fused multi-teacher distillation loss (spec §3, §4.1): for every teacher term, the summary cosine loss and the
// feature loss (cosine + smooth-L1, or MSE) on the common grid, together with the student gradients, in one pass.
//
// The common grid is the per-axis maximum of the student and teacher grids, so a map is only ever upsampled (or left
// alone) along each axis; in the paper's setups one map is larger on both axes and this is "resize the smaller map to
// the larger". Resizing is bilinear with align_corners=False (PyTorch F.interpolate, no antialias) and happens on the
// fly: the resized map is never written. The student gradient of an upsampled student map is the adjoint of that
// resize, gathered per source token, so no two threads write the same output and results are deterministic.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "../interpolate/interpolate.h"
#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace loss {

// Terms per call: the plan travels as a kernel argument, so its size is bounded.
constexpr int kMaxTerms = 16;
// Why a call of `terms` teacher terms cannot run, or empty: the one list of that limit, asked by the TypeScript op
// (native.lossUnsupported), the binding and make_plan. The per-term rules are make_plan's.
inline std::string unsupported_terms(int64_t terms) {
  if (terms < 1) return "at least 1 teacher term per call, got " + std::to_string(terms);
  if (terms > kMaxTerms)
    return "at most " + std::to_string(kMaxTerms) + " teacher terms per call, got " + std::to_string(terms);
  return std::string();
}
// PyTorch's cosine_similarity default; clamps each norm separately.
constexpr float kCosEps = 1e-8f;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Work-item sizes. A summary item is one row per warp; a direct feature item is a run of tokens of the flattened
// (batch, token) space; a gather item is a band of student rows of one sample.
constexpr int kSummaryRows = kWarps;
constexpr int kTokensPerItem = 32;
constexpr int kGatherTokens = 256;

enum class Mode : int { CosineSmoothL1 = 0, Mse = 1 };

// A tensor operand: f32 or bf16 storage, chosen per tensor at run time (a warp-uniform branch).
struct In {
  const void* p = nullptr;
  int bf16 = 0;
};
struct Out {
  void* p = nullptr;  // null: the gradient is not wanted
  int bf16 = 0;
};

AMR_HD float load(In x, int64_t i) {
  return x.bf16 ? bf16_to_f32(static_cast<const uint16_t*>(x.p)[i]) : static_cast<const float*>(x.p)[i];
}
AMR_HD void store(Out x, int64_t i, float v) {
  if (x.bf16) static_cast<uint16_t*>(x.p)[i] = f32_to_bf16(v);
  else static_cast<float*>(x.p)[i] = v;
}

// One teacher's term. Summaries are [batch, cs]; features are [batch, hs*ws, cf] (student) and [batch, ht*wt, cf]
// (teacher), compared on the gh x gw grid.
struct Term {
  int batch = 0;
  int cs = 0;  // 0: no summary term
  In ys, zs;
  Out gys;
  int cf = 0;  // 0: no feature term
  In f, g;
  Out gf;
  int hs = 0, ws = 0, ht = 0, wt = 0, gh = 0, gw = 0;
  // Gradient factors d total / d(per-row or per-token value): lambda/batch for summaries, gamma*alpha/tokens for the
  // feature cosine, gamma*beta/elements (or gamma/elements for MSE) for the elementwise part.
  float w_summary = 0, w_cos = 0, w_elem = 0;
  float lambda = 1, gamma = 1;
  float* out_summary = nullptr;  // unweighted Ls_t and Lf_t, f32 scalars
  float* out_features = nullptr;
  // Work list, filled by make_plan.
  int64_t first_item = 0, summary_items = 0, feature_items = 0;
  int rows_per_item = 0;  // student rows per gather item; 0: student is on the common grid (direct items)
};

struct Plan {
  int terms = 0;
  Mode mode = Mode::CosineSmoothL1;
  float alpha = 0.9f, beta = 0.1f, delta = 1.f;
  Term term[kMaxTerms];
  float* total = nullptr;
  int64_t items = 0;
  int stats_capacity = 0;  // target tokens whose gradient factors one gather item keeps (two floats each)
};

// Fills the grids, gradient factors and work list; throws amr::Error naming the term on inconsistent sizes.
void make_plan(Plan& plan);
// Device scratch the gpu kernels need: two f32 partial sums per work item.
int64_t scratch_bytes(const Plan& plan);

#define AMR_LOSS_FUNCS                                                           \
  void multi_teacher(GpuStream s, const Plan& plan, void* scratch);             \
  /* out[i] = a[i] * scalar[0] (scalar is f32): the backward of the kept gradients */ \
  void scale_by(GpuStream s, void* out, const void* a, DType dt, int64_t n, const float* scalar);

namespace cpu { AMR_LOSS_FUNCS }
namespace cuda { AMR_LOSS_FUNCS }
namespace sim { AMR_LOSS_FUNCS }

// ---- Math shared by every backend, so each element is computed the same way everywhere. ----

// The two input taps of output index o of a linear resize from `in` to `out` samples, align_corners=False: the
// interpolation family's own taps, so the loss aligns maps exactly as ops.interpolate resizes them. An identity axis
// has one tap of weight 1 (same value, one read fewer).
using ::amr::interpolate::Tap;
AMR_HD Tap axis_tap(int in, int out, int o) {
  if (in == out) return Tap{o, o, 1.f, 0.f};
  return ::amr::interpolate::linear_tap(o, in, out, false);
}
using ::amr::interpolate::tap_weight;
// A range [lo, hi) of outputs that contains every output reading input r; callers test each with tap_weight.
AMR_HD void readers_of(int in, int out, int r, int* lo, int* hi) {
  if (in == out) {
    *lo = r;
    *hi = r + 1;
    return;
  }
  const float inv = static_cast<float>(out) / static_cast<float>(in);
  int a = static_cast<int>(floorf((static_cast<float>(r) - 0.5f) * inv - 0.5f)) - 2;
  int b = static_cast<int>(ceilf((static_cast<float>(r) + 1.5f) * inv - 0.5f)) + 2;
  *lo = a < 0 ? 0 : a;
  *hi = b > out ? out : b;
}
// Target rows a gather item for student rows [r0, r1) needs: those reading any of its rows. Contiguous because the
// first tap is monotone in the output index.
AMR_HD void band_rows(const Term& t, int r0, int r1, int* lo, int* hi) {
  int a, b, c, d;
  readers_of(t.hs, t.gh, r0, &a, &b);
  readers_of(t.hs, t.gh, r1 - 1, &c, &d);
  *lo = t.gh;
  *hi = 0;
  for (int i = a; i < d; ++i) {
    const Tap y = axis_tap(t.hs, t.gh, i);
    const bool reads = (y.i0 >= r0 && y.i0 < r1) || (y.w1 != 0.f && y.i1 >= r0 && y.i1 < r1);
    if (reads) {
      if (i < *lo) *lo = i;
      if (i + 1 > *hi) *hi = i + 1;
    }
  }
}

// Channel c of the bilinear sample at taps (y, x) of a [rows, width, C] map starting at base, in PyTorch's order
// (along x first, then y).
AMR_HD float sample(In m, int64_t base, int width, int C, Tap y, Tap x, int c) {
  auto at = [&](int yy, int xx) { return load(m, base + (static_cast<int64_t>(yy) * width + xx) * C + c); };
  float r0 = x.w0 * at(y.i0, x.i0);
  if (x.w1 != 0.f) r0 += x.w1 * at(y.i0, x.i1);
  if (y.w1 == 0.f) return y.w0 * r0;
  float r1 = x.w0 * at(y.i1, x.i0);
  if (x.w1 != 0.f) r1 += x.w1 * at(y.i1, x.i1);
  return y.w0 * r0 + y.w1 * r1;
}

// Elementwise part of the feature loss on d = student - teacher, and its derivative. delta = 0 is plain L1, as in
// PyTorch. Both smooth-L1 branches are evaluated and one selected, because on real data the branch is a coin flip;
// the unselected quadratic branch may be 0/0 when delta = 0 and is discarded.
AMR_HD float elem_loss(Mode m, float d, float delta) {
  if (m == Mode::Mse) return d * d;
  const float ad = fabsf(d);
  const float quadratic = 0.5f * d * d / delta, linear = ad - 0.5f * delta;
  return ad < delta ? quadratic : linear;
}
AMR_HD float elem_grad(Mode m, float d, float delta) {
  if (m == Mode::Mse) return 2.f * d;
  if (delta > 0.f) return fminf(fmaxf(d / delta, -1.f), 1.f);  // d/delta inside the band, the sign outside
  return d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
}

// From a token's dot product and squared norms: its cosine and the factors k_t, k_a with
// d(1 - cos)/d student = k_t * teacher + k_a * student. Below eps this follows PyTorch 1.13's autograd rather than
// the clamped function: torch clamps the norm in place under no_grad, so its norm backward divides by the clamped
// norm, k_a = cos / max(|s|, eps)^2 (the same as the true derivative above eps).
struct CosGrad {
  float cos, kt, ka;
};
AMR_HD CosGrad cos_grad(float dot, float ss, float tt) {
  const float ns = sqrtf(ss), nt = sqrtf(tt);
  const float cs = ns > kCosEps ? ns : kCosEps, ct = nt > kCosEps ? nt : kCosEps;
  const float inv = 1.f / (cs * ct);
  const float cos = dot * inv;
  return CosGrad{cos, -inv, cos / (cs * cs)};
}

}  // namespace loss
}  // namespace amr
