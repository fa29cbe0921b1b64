// The readable reference for the fused loss: per teacher, per-token statistics over the common grid, then the student
// gradient gathered per source token. Sums are double and taken in a fixed order, so results do not depend on the
// thread count.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "loss.h"

namespace amr {
namespace loss {
namespace cpu {

namespace {

// Per-token results on the common grid: the loss contributions and the cosine gradient factors.
struct TokenStats {
  double cos_loss = 0, elem = 0;
  float kt = 0, ka = 0;
};

// Sum over the batch of 1 - cos(student, teacher) for the summaries; writes their gradient when wanted.
double summary_sum(const Term& t) {
  std::vector<double> per_row(t.batch);
  parallel_for(t.batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const int64_t base = b * t.cs;
      double dot = 0, ss = 0, zz = 0;
      for (int c = 0; c < t.cs; ++c) {
        const double y = load(t.ys, base + c), z = load(t.zs, base + c);
        dot += y * z;
        ss += y * y;
        zz += z * z;
      }
      const CosGrad k = cos_grad(static_cast<float>(dot), static_cast<float>(ss), static_cast<float>(zz));
      per_row[b] = 1.0 - k.cos;
      if (!t.gys.p) continue;
      for (int c = 0; c < t.cs; ++c)
        store(t.gys, base + c, t.w_summary * (k.kt * load(t.zs, base + c) + k.ka * load(t.ys, base + c)));
    }
  });
  double sum = 0;
  for (double v : per_row) sum += v;
  return sum;
}

struct FeatureSums {
  double cos_loss = 0, elem = 0;
};

// One map's channels at a grid token into dst, with the same arithmetic as sample() but the dtype and tap choices
// made once per token instead of once per element.
void resample(In m, int64_t base, int width, int C, Tap y, Tap x, float* dst) {
  with_dtype(m.bf16 ? DType::BF16 : DType::F32, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (!std::is_same<T, int32_t>::value) {
      const T* p = static_cast<const T*>(m.p) + base;
      const T* v00 = p + (int64_t(y.i0) * width + x.i0) * C;
      const T* v01 = p + (int64_t(y.i0) * width + x.i1) * C;
      const T* v10 = p + (int64_t(y.i1) * width + x.i0) * C;
      const T* v11 = p + (int64_t(y.i1) * width + x.i1) * C;
      for (int c = 0; c < C; ++c) {
        float r0 = x.w0 * Elem<T>::load(v00, c);
        if (x.w1 != 0.f) r0 += x.w1 * Elem<T>::load(v01, c);
        if (y.w1 == 0.f) {
          dst[c] = y.w0 * r0;
          continue;
        }
        float r1 = x.w0 * Elem<T>::load(v10, c);
        if (x.w1 != 0.f) r1 += x.w1 * Elem<T>::load(v11, c);
        dst[c] = y.w0 * r0 + y.w1 * r1;
      }
    }
  });
}

// A grid token's student and teacher vectors.
struct TokenPair {
  std::vector<float> a, g;
  explicit TokenPair(int C) : a(C), g(C) {}
  void load(const Term& t, int64_t b, int i, int j) {
    resample(t.f, b * t.hs * t.ws * t.cf, t.ws, t.cf, axis_tap(t.hs, t.gh, i), axis_tap(t.ws, t.gw, j), a.data());
    resample(t.g, b * t.ht * t.wt * t.cf, t.wt, t.cf, axis_tap(t.ht, t.gh, i), axis_tap(t.wt, t.gw, j), g.data());
  }
};

FeatureSums feature_sums(const Term& t, Mode mode, float delta) {
  const int64_t tokens = int64_t(t.gh) * t.gw;
  const bool direct = t.hs == t.gh && t.ws == t.gw;
  std::vector<TokenStats> stats(static_cast<size_t>(t.batch * tokens));
  // Pass 1: every token of the common grid, with both maps resampled on the fly.
  parallel_for(t.batch * tokens, 16, [&](int64_t lo, int64_t hi) {
    TokenPair v(t.cf);
    for (int64_t n = lo; n < hi; ++n) {
      const int64_t b = n / tokens;
      v.load(t, b, static_cast<int>((n % tokens) / t.gw), static_cast<int>(n % t.gw));
      double dot = 0, ss = 0, tt = 0, elem = 0;
      for (int c = 0; c < t.cf; ++c) {
        const float a = v.a[c], g = v.g[c];
        dot += double(a) * g;
        ss += double(a) * a;
        tt += double(g) * g;
        elem += elem_loss(mode, a - g, delta);
      }
      const CosGrad k = cos_grad(static_cast<float>(dot), static_cast<float>(ss), static_cast<float>(tt));
      stats[n] = TokenStats{1.0 - k.cos, elem, k.kt, k.ka};
      if (!direct || !t.gf.p) continue;
      // The student is on the grid: its gradient is written while the token is still in cache.
      for (int c = 0; c < t.cf; ++c) {
        const float a = v.a[c], g = v.g[c];
        store(t.gf, n * t.cf + c, t.w_cos * (k.kt * g + k.ka * a) + t.w_elem * elem_grad(mode, a - g, delta));
      }
    }
  });
  // Pass 2, for an upsampled student: each student token gathers from the grid tokens that read it, so the gradient
  // is the exact adjoint of the resize.
  if (t.gf.p && !direct) {
    const int64_t src_tokens = int64_t(t.hs) * t.ws;
    parallel_for(t.batch * src_tokens, 4, [&](int64_t lo, int64_t hi) {
      std::vector<double> acc(t.cf);
      TokenPair v(t.cf);
      for (int64_t n = lo; n < hi; ++n) {
        const int64_t b = n / src_tokens;
        const int r = static_cast<int>((n % src_tokens) / t.ws), x = static_cast<int>(n % t.ws);
        int i0, i1, j0, j1;
        readers_of(t.hs, t.gh, r, &i0, &i1);
        readers_of(t.ws, t.gw, x, &j0, &j1);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int i = i0; i < i1; ++i) {
          const float wr = tap_weight(axis_tap(t.hs, t.gh, i), r);
          if (wr == 0.f) continue;
          for (int j = j0; j < j1; ++j) {
            const float w = wr * tap_weight(axis_tap(t.ws, t.gw, j), x);
            if (w == 0.f) continue;
            const TokenStats& k = stats[b * tokens + int64_t(i) * t.gw + j];
            v.load(t, b, i, j);
            for (int c = 0; c < t.cf; ++c) {
              const float a = v.a[c], g = v.g[c];
              acc[c] += double(w) * (t.w_cos * (k.kt * g + k.ka * a) + t.w_elem * elem_grad(mode, a - g, delta));
            }
          }
        }
        for (int c = 0; c < t.cf; ++c) store(t.gf, n * t.cf + c, static_cast<float>(acc[c]));
      }
    });
  }
  FeatureSums sums;
  for (const TokenStats& s : stats) {
    sums.cos_loss += s.cos_loss;
    sums.elem += s.elem;
  }
  return sums;
}

}  // namespace

void multi_teacher(GpuStream, const Plan& plan, void*) {
  double total = 0;
  for (int k = 0; k < plan.terms; ++k) {
    const Term& t = plan.term[k];
    if (t.cs > 0) {
      const double ls = summary_sum(t) / t.batch;
      *t.out_summary = static_cast<float>(ls);
      total += t.lambda * ls;
    }
    if (t.cf > 0) {
      const FeatureSums s = feature_sums(t, plan.mode, plan.delta);
      const double tokens = double(t.batch) * t.gh * t.gw, elements = tokens * t.cf;
      const double lf = plan.mode == Mode::Mse ? s.elem / elements
                                               : plan.alpha * s.cos_loss / tokens + plan.beta * s.elem / elements;
      *t.out_features = static_cast<float>(lf);
      total += t.gamma * lf;
    }
  }
  *plan.total = static_cast<float>(total);
}

void scale_by(GpuStream, void* out, const void* a, DType dt, int64_t n, const float* scalar) {
  const float s = *scalar;
  const Out o{out, dt == DType::BF16};
  const In x{a, dt == DType::BF16};
  parallel_for(n, 1 << 15, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) store(o, i, load(x, i) * s);
  });
}

}  // namespace cpu
}  // namespace loss
}  // namespace amr
