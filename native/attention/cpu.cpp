#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../runtime/thread_pool.h"
#include "attention.h"

namespace amr {
namespace attention {
namespace cpu {

namespace {

// Zeroes the prefix rows of a [B, T, width] tensor (window mode leaves them out).
template <typename T>
void zero_prefix(T* x, const Geometry& g, int64_t width) {
  if (!g.window) return;
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t t = 0; t < g.prefix; ++t)
      for (int64_t c = 0; c < width; ++c) Elem<T>::store(x, (b * g.tokens + t) * width + c, 0.f);
}

// Loads one (batch, head, window) problem's rows of part (q, k, v) as f32 [L, hd].
template <typename T>
void gather(std::vector<float>& dst, const T* qkv, const Geometry& g, int64_t b, int64_t h, int64_t w, int part) {
  const int64_t L = g.length(), hd = g.head_dim;
  dst.resize(L * hd);
  for (int64_t i = 0; i < L; ++i) {
    const int64_t o = g.qkv_offset(b, g.token(w, i), part, h);
    for (int64_t d = 0; d < hd; ++d) dst[i * hd + d] = Elem<T>::load(qkv, o + d);
  }
}

template <typename T>
void gather_qkv(std::vector<float>& q, std::vector<float>& k, std::vector<float>& v, const T* qkv, const Geometry& g,
                int64_t b, int64_t h, int64_t w) {
  gather(q, qkv, g, b, h, w, 0);
  gather(k, qkv, g, b, h, w, 1);
  gather(v, qkv, g, b, h, w, 2);
}

}  // namespace

void attention_forward(GpuStream, void* out, float* lse, const void* qkv_, const void* bias_, const Geometry& g,
                       DType dt) {
  with_float_dtype(dt, "attention", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const T* bias = static_cast<const T*>(bias_);
    T* O = static_cast<T*>(out);
    const int64_t L = g.length(), hd = g.head_dim, nw = g.windows();
    zero_prefix(O, g, g.dim());
    parallel_for(g.batch * g.heads * nw, 1, [&](int64_t p0, int64_t p1) {
      std::vector<float> q, k, v, s(L), acc(hd);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t w = p % nw, h = (p / nw) % g.heads, b = p / (nw * g.heads);
        gather_qkv(q, k, v, qkv, g, b, h, w);
        for (int64_t i = 0; i < L; ++i) {
          float m = -INFINITY;
          for (int64_t j = 0; j < L; ++j) {
            float dot = 0.f;
            for (int64_t d = 0; d < hd; ++d) dot += q[i * hd + d] * k[j * hd + d];
            s[j] = dot * g.scale + (bias ? Elem<T>::load(bias, (h * L + i) * L + j) : 0.f);
            m = std::max(m, s[j]);
          }
          float sum = 0.f;
          for (int64_t j = 0; j < L; ++j) sum += (s[j] = std::exp(s[j] - m));
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int64_t j = 0; j < L; ++j)
            for (int64_t d = 0; d < hd; ++d) acc[d] += s[j] * v[j * hd + d];
          const int64_t o = g.out_offset(b, g.token(w, i), h);
          for (int64_t d = 0; d < hd; ++d) Elem<T>::store(O, o + d, acc[d] / sum);
          lse[p * L + i] = m + std::log(sum);
        }
      }
    });
  });
}

void attention_backward(GpuStream, void* dqkv_, void* dbias_, const void* dout_, const void* qkv_, const void* out_,
                        const float* lse, const void* bias_, const Geometry& g, DType dt, float* scratch) {
  with_float_dtype(dt, "attention backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const T* bias = static_cast<const T*>(bias_);
    const T* dO = static_cast<const T*>(dout_);
    const T* O = static_cast<const T*>(out_);
    T* dqkv = static_cast<T*>(dqkv_);
    const int64_t L = g.length(), hd = g.head_dim, nw = g.windows();
    float* partial = scratch + g.stat_rows();
    zero_prefix(dqkv, g, 3 * g.dim());
    parallel_for(g.batch * g.heads * nw, 1, [&](int64_t p0, int64_t p1) {
      std::vector<float> q, k, v, go(L * hd), dq, dk, dv, P(L * L), dS(L * L), delta(L);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t w = p % nw, h = (p / nw) % g.heads, b = p / (nw * g.heads);
        gather_qkv(q, k, v, qkv, g, b, h, w);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t o = g.out_offset(b, g.token(w, i), h);
          float dl = 0.f;
          for (int64_t d = 0; d < hd; ++d) {
            go[i * hd + d] = Elem<T>::load(dO, o + d);
            dl += go[i * hd + d] * Elem<T>::load(O, o + d);
          }
          delta[i] = dl;
        }
        for (int64_t i = 0; i < L; ++i)
          for (int64_t j = 0; j < L; ++j) {
            float dot = 0.f, dp = 0.f;
            for (int64_t d = 0; d < hd; ++d) {
              dot += q[i * hd + d] * k[j * hd + d];
              dp += go[i * hd + d] * v[j * hd + d];
            }
            const float sc = dot * g.scale + (bias ? Elem<T>::load(bias, (h * L + i) * L + j) : 0.f);
            const float pr = std::exp(sc - lse[p * L + i]);
            P[i * L + j] = pr;
            dS[i * L + j] = pr * (dp - delta[i]);
          }
        dq.assign(L * hd, 0.f);
        dk.assign(L * hd, 0.f);
        dv.assign(L * hd, 0.f);
        for (int64_t i = 0; i < L; ++i)
          for (int64_t j = 0; j < L; ++j) {
            const float pr = P[i * L + j], ds = dS[i * L + j];
            for (int64_t d = 0; d < hd; ++d) {
              dq[i * hd + d] += ds * k[j * hd + d];
              dk[j * hd + d] += ds * q[i * hd + d];
              dv[j * hd + d] += pr * go[i * hd + d];
            }
          }
        for (int64_t i = 0; i < L; ++i) {
          const int64_t t = g.token(w, i);
          const int64_t oq = g.qkv_offset(b, t, 0, h), ok = g.qkv_offset(b, t, 1, h), ov = g.qkv_offset(b, t, 2, h);
          for (int64_t d = 0; d < hd; ++d) {
            Elem<T>::store(dqkv, oq + d, dq[i * hd + d] * g.scale);
            Elem<T>::store(dqkv, ok + d, dk[i * hd + d] * g.scale);
            Elem<T>::store(dqkv, ov + d, dv[i * hd + d]);
          }
        }
        if (bias) std::memcpy(partial + ((b * nw + w) * g.heads + h) * L * L, dS.data(), L * L * sizeof(float));
      }
    });
    if (bias) {
      T* dbias = static_cast<T*>(dbias_);
      const int64_t n = g.heads * L * L, parts = g.batch * nw;
      parallel_for(n, 1024, [&](int64_t e0, int64_t e1) {
        for (int64_t e = e0; e < e1; ++e) {
          float s = 0.f;
          for (int64_t k = 0; k < parts; ++k) s += partial[k * n + e];
          Elem<T>::store(dbias, e, s);
        }
      });
    }
  });
}

}  // namespace cpu
}  // namespace attention
}  // namespace amr
