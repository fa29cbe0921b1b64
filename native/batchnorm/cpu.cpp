// BatchNorm2d and LayerNorm2d on the cpu backend: the thread pool over (n, c) planes or pixel tiles, inner loops
// over H·W with independent accumulators so they vectorise without reassociating a sum.
#include "../runtime/thread_pool.h"
#include "batchnorm.h"

namespace amr {
namespace batchnorm {
namespace cpu {

namespace {

struct Pair {
  float a, b;
};

// Σ f(p) over p in [0, hw) for both members of the pair, in 8 fixed lanes: the compiler may vectorise the lanes,
// and the lane split depends only on hw, so the bits never change.
template <typename F>
Pair plane_sums(int64_t hw, F&& f) {
  float a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t p = 0;
  for (; p + 8 <= hw; p += 8)
    for (int j = 0; j < 8; ++j) {
      const Pair v = f(p + j);
      a[j] += v.a;
      b[j] += v.b;
    }
  for (int j = 0; p < hw; ++p, ++j) {
    const Pair v = f(p);
    a[j] += v.a;
    b[j] += v.b;
  }
  return {((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])),
          ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))};
}

template <typename T, typename P, typename S>
void bn_forward(GpuStream, const BatchNormForward& a, float* partial) {
  const T* x = static_cast<const T*>(a.x);
  const P* w = static_cast<const P*>(a.weight);
  const P* b = static_cast<const P*>(a.bias);
  T* y = static_cast<T*>(a.y);
  const int64_t c = a.c, hw = a.hw, planes = a.n * a.c, count = a.n * a.hw;
  if (a.training) {
    // Pass 0: Σ (x − x0), the shifted mean; pass 1: Σ (x − x0 − mean)², the variance around it.
    for (int pass = 0; pass < 2; ++pass) {
      parallel_for(planes, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t ch = q % c;
          const T* xp = x + q * hw;
          const float x0 = Elem<T>::load(x, ch * hw), mu = pass ? a.mean[ch] : 0.f;
          partial[q] = plane_sums(hw, [&](int64_t p) {
                         const float d = centred(Elem<T>::load(xp, p), x0, mu);
                         return Pair{pass ? d * d : d, 0.f};
                       }).a;
        }
      });
      parallel_for(c, 64, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch) {
          const float s = sum_over_n(partial, a.n, c, ch);
          if (pass == 0) a.mean[ch] = s / count;
          else
            a.invstd[ch] = finish_channel(s, a.mean[ch], Elem<T>::load(x, ch * hw), ch, count, a.eps, a.momentum,
                                          static_cast<S*>(a.running_mean), static_cast<S*>(a.running_var));
        }
      });
    }
  } else {
    for (int64_t ch = 0; ch < c; ++ch)
      eval_channel(a.mean, a.invstd, static_cast<const S*>(a.running_mean), static_cast<const S*>(a.running_var), ch, a.eps);
  }
  parallel_for(planes, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t ch = q % c;
      const float x0 = channel_shift(x, ch, hw, a.training), mu = a.mean[ch];
      const float scale = a.invstd[ch] * param_or(w, ch, 1.f), shift = param_or(b, ch, 0.f);
      const T* xp = x + q * hw;
      T* yp = y + q * hw;
      for (int64_t p = 0; p < hw; ++p) Elem<T>::store(yp, p, centred(Elem<T>::load(xp, p), x0, mu) * scale + shift);
    }
  });
}

template <typename T, typename P>
void bn_backward(GpuStream, const BatchNormBackward& a, float* scratch) {
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  const P* w = static_cast<const P*>(a.weight);
  const int64_t c = a.c, hw = a.hw, planes = a.n * a.c, count = a.n * a.hw;
  float* p_dy = scratch;
  float* p_dyxh = scratch + planes;
  float* sum_dy = scratch + 2 * planes;
  float* sum_dyxh = sum_dy + c;
  // The eval-mode dx needs no sums; dweight and dbias are those sums.
  if (a.training || a.dweight || a.dbias) {
    parallel_for(planes, 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t ch = q % c;
        const float x0 = channel_shift(x, ch, hw, a.training), mu = a.mean[ch], is = a.invstd[ch];
        const T* xp = x + q * hw;
        const T* gp = dy + q * hw;
        const Pair s = plane_sums(hw, [&](int64_t p) {
          const float g = Elem<T>::load(gp, p);
          return Pair{g, g * (centred(Elem<T>::load(xp, p), x0, mu) * is)};
        });
        p_dy[q] = s.a;
        p_dyxh[q] = s.b;
      }
    });
    for (int64_t ch = 0; ch < c; ++ch) {
      sum_dy[ch] = sum_over_n(p_dy, a.n, c, ch);
      sum_dyxh[ch] = sum_over_n(p_dyxh, a.n, c, ch);
      if (a.dbias) Elem<P>::store(static_cast<P*>(a.dbias), ch, sum_dy[ch]);
      if (a.dweight) Elem<P>::store(static_cast<P*>(a.dweight), ch, sum_dyxh[ch]);
    }
  } else {
    for (int64_t ch = 0; ch < c; ++ch) sum_dy[ch] = sum_dyxh[ch] = 0.f;
  }
  if (!a.dx) return;
  parallel_for(planes, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t ch = q % c;
      const float x0 = channel_shift(x, ch, hw, a.training), mu = a.mean[ch], is = a.invstd[ch];
      const float wc = param_or(w, ch, 1.f), sd = sum_dy[ch], sdx = sum_dyxh[ch];
      const T* xp = x + q * hw;
      const T* gp = dy + q * hw;
      T* dxp = static_cast<T*>(a.dx) + q * hw;
      for (int64_t p = 0; p < hw; ++p) {
        const float xh = centred(Elem<T>::load(xp, p), x0, mu) * is;
        Elem<T>::store(dxp, p, batch_norm_dx(Elem<T>::load(gp, p), wc, xh, is, sd, sdx, count, a.training));
      }
    }
  });
}

// LayerNorm2d works on tiles of kTile pixels of one image: per-pixel accumulators, the loop over channels outside
// and over the tile's pixels inside (contiguous in NCHW, so it vectorises). The sums run over c in order, as the
// cuda kernel's one thread per pixel does.
constexpr int64_t kTile = 256;

template <typename F>
void for_each_tile(int64_t n, int64_t hw, F&& f) {
  const int64_t tiles = (hw + kTile - 1) / kTile;
  parallel_for(n * tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / tiles, p0 = (t % tiles) * kTile;
      f(img, p0, hw - p0 < kTile ? hw - p0 : kTile);
    }
  });
}

template <typename T, typename P>
void ln_forward(GpuStream, const LayerNorm2dForward& a) {
  const T* x = static_cast<const T*>(a.x);
  const P* w = static_cast<const P*>(a.weight);
  const P* b = static_cast<const P*>(a.bias);
  T* y = static_cast<T*>(a.y);
  const int64_t c = a.c, hw = a.hw;
  for_each_tile(a.n, hw, [&](int64_t img, int64_t p0, int64_t len) {
    float x0[kTile], mu[kTile], v[kTile];
    const T* xi = x + img * c * hw + p0;
    T* yi = y + img * c * hw + p0;
    for (int64_t p = 0; p < len; ++p) x0[p] = Elem<T>::load(xi, p), mu[p] = 0.f, v[p] = 0.f;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < len; ++p) mu[p] += Elem<T>::load(xi, ch * hw + p) - x0[p];
    for (int64_t p = 0; p < len; ++p) mu[p] /= c;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < len; ++p) {
        const float d = centred(Elem<T>::load(xi, ch * hw + p), x0[p], mu[p]);
        v[p] += d * d;
      }
    for (int64_t p = 0; p < len; ++p) {
      v[p] = 1.f / sqrtf(v[p] / c + a.eps);
      a.mean[img * hw + p0 + p] = mu[p];
      a.rstd[img * hw + p0 + p] = v[p];
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      const float wc = Elem<P>::load(w, ch), bc = Elem<P>::load(b, ch);
      for (int64_t p = 0; p < len; ++p)
        Elem<T>::store(yi, ch * hw + p, centred(Elem<T>::load(xi, ch * hw + p), x0[p], mu[p]) * v[p] * wc + bc);
    }
  });
}

template <typename T, typename P>
void ln_backward(GpuStream, const LayerNorm2dBackward& a, float* scratch) {
  const T* x = static_cast<const T*>(a.x);
  const T* dy = static_cast<const T*>(a.dy);
  const P* w = static_cast<const P*>(a.weight);
  const int64_t c = a.c, hw = a.hw, planes = a.n * a.c;
  for_each_tile(a.n, hw, [&](int64_t img, int64_t p0, int64_t len) {
    float x0[kTile], sg[kTile], sgx[kTile];
    const int64_t o = img * c * hw + p0, s = img * hw + p0;
    for (int64_t p = 0; p < len; ++p) x0[p] = Elem<T>::load(x, o + p), sg[p] = 0.f, sgx[p] = 0.f;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float wc = Elem<P>::load(w, ch);
      for (int64_t p = 0; p < len; ++p) {
        const float g = Elem<T>::load(dy, o + ch * hw + p) * wc;
        sg[p] += g;
        sgx[p] += g * (centred(Elem<T>::load(x, o + ch * hw + p), x0[p], a.mean[s + p]) * a.rstd[s + p]);
      }
    }
    for (int64_t p = 0; p < len; ++p) sg[p] /= c, sgx[p] /= c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float wc = Elem<P>::load(w, ch);
      for (int64_t p = 0; p < len; ++p) {
        const float g = Elem<T>::load(dy, o + ch * hw + p) * wc;
        const float xh = centred(Elem<T>::load(x, o + ch * hw + p), x0[p], a.mean[s + p]) * a.rstd[s + p];
        Elem<T>::store(static_cast<T*>(a.dx), o + ch * hw + p, layer_norm_dx(g, xh, a.rstd[s + p], sg[p], sgx[p]));
      }
    }
  });
  // dweight and dbias: per-plane partials of Σ dy·x̂ and Σ dy, then the planes of each channel in order of n.
  float* p_dyxh = scratch;
  float* p_dy = scratch + planes;
  parallel_for(planes, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t img = q / c;
      const T* xp = x + q * hw;
      const T* x0p = x + img * c * hw;
      const T* gp = dy + q * hw;
      const float* mu = a.mean + img * hw;
      const float* rs = a.rstd + img * hw;
      const Pair r = plane_sums(hw, [&](int64_t p) {
        const float g = Elem<T>::load(gp, p);
        return Pair{g * (centred(Elem<T>::load(xp, p), Elem<T>::load(x0p, p), mu[p]) * rs[p]), g};
      });
      p_dyxh[q] = r.a;
      p_dy[q] = r.b;
    }
  });
  for (int64_t ch = 0; ch < c; ++ch) {
    Elem<P>::store(static_cast<P*>(a.dweight), ch, sum_over_n(p_dyxh, a.n, c, ch));
    Elem<P>::store(static_cast<P*>(a.dbias), ch, sum_over_n(p_dy, a.n, c, ch));
  }
}

}  // namespace

AMR_BATCHNORM_ENTRY_POINTS

}  // namespace cpu
}  // namespace batchnorm
}  // namespace amr
