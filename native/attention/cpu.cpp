#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "../runtime/vector_math.h"
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

// [L, hd] → [hd, L], so products over the head dim become row updates along L.
void transpose(std::vector<float>& dst, const std::vector<float>& src, int64_t L, int64_t hd) {
  dst.resize(L * hd);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t d = 0; d < hd; ++d) dst[d * L + i] = src[i * hd + d];
}

// Rows i0 .. i0 + n (n <= kRows) of A [L, hd] times Bt [hd, L]: out[r][j] = Σ_d A[i0 + r][d]·Bt[d][j]. The inner
// loop runs along j with independent accumulators, so the compiler vectorizes it without reassociating a sum (the
// build keeps IEEE order), and each Bt row loaded serves the block's rows. The clones let the loader pick AVX-512
// or AVX2 code where the CPU has it (the baseline build is SSE2).
constexpr int64_t kRows = 4;

AMR_VECTOR_CLONES
void rows_times(float* out, const float* A, const float* Bt, int64_t i0, int64_t n, int64_t L, int64_t hd) {
  std::fill(out, out + n * L, 0.f);
  for (int64_t d = 0; d < hd; ++d) {
    const float* b = Bt + d * L;
    for (int64_t r = 0; r < n; ++r) {
      const float a = A[(i0 + r) * hd + d];
      float* o = out + r * L;
      for (int64_t j = 0; j < L; ++j) o[j] += a * b[j];
    }
  }
}

// acc[r][d] += Σ_j w[r][j]·V[j][d] for a block of rows: along d, V's row j loaded once for the block.
AMR_VECTOR_CLONES
void weights_times(float* acc, const float* w, const float* V, int64_t n, int64_t L, int64_t hd) {
  for (int64_t j = 0; j < L; ++j) {
    const float* v = V + j * hd;
    for (int64_t r = 0; r < n; ++r) {
      const float pr = w[r * L + j];
      float* a = acc + r * hd;
      for (int64_t d = 0; d < hd; ++d) a[d] += pr * v[d];
    }
  }
}

// dK[j] += Σ_r dS[r][j]·Q[r], dV[j] += Σ_r P[r][j]·dO[r] over a block of query rows, for every key j.
AMR_VECTOR_CLONES
void key_grads(float* dk, float* dv, const float* dS, const float* P, const float* q, const float* go, int64_t n, int64_t L, int64_t hd) {
  for (int64_t j = 0; j < L; ++j) {
    float* dkj = dk + j * hd;
    float* dvj = dv + j * hd;
    for (int64_t r = 0; r < n; ++r) {
      const float a = dS[r * L + j], c = P[r * L + j];
      const float* qi = q + r * hd;
      const float* gi = go + r * hd;
      for (int64_t d = 0; d < hd; ++d) {
        dkj[d] += a * qi[d];
        dvj[d] += c * gi[d];
      }
    }
  }
}

}  // namespace

// Per (batch, head, window) problem, blocks of kRows query rows: scores against every key, softmax, then the
// weighted sum of values; no [L, L] matrix is held, only the block's rows.
void attention_forward(GpuStream, void* out, float* lse, const void* qkv_, const void* bias_, const void* rel_h_,
                       const void* rel_w_, const Geometry& g, DType dt) {
  with_float_dtype(dt, "attention", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const T* bias = static_cast<const T*>(bias_);
    const T* rel_h = static_cast<const T*>(rel_h_);
    const T* rel_w = static_cast<const T*>(rel_w_);
    T* O = static_cast<T*>(out);
    const int64_t L = g.length(), hd = g.head_dim, nw = g.windows();
    zero_prefix(O, g, g.dim());
    parallel_for(g.batch * g.heads * nw, 1, [&](int64_t p0, int64_t p1) {
      std::vector<float> q, k, v, kt, s(kRows * L), acc(kRows * hd);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t w = p % nw, h = (p / nw) % g.heads, b = p / (nw * g.heads);
        gather_qkv(q, k, v, qkv, g, b, h, w);
        transpose(kt, k, L, hd);
        for (int64_t i0 = 0; i0 < L; i0 += kRows) {
          const int64_t n = std::min(kRows, L - i0);
          rows_times(s.data(), q.data(), kt.data(), i0, n, L, hd);
          float sums[kRows];
          for (int64_t r = 0; r < n; ++r) {
            float* sr = s.data() + r * L;
            const int64_t i = i0 + r;
            float m = -INFINITY;
            for (int64_t j = 0; j < L; ++j) {
              sr[j] = sr[j] * g.scale + (bias ? Elem<T>::load(bias, (h * L + i) * L + j) : 0.f) +
                      (rel_h ? rel_pos_at(rel_h, rel_w, g, p * L + i, j) : 0.f);
              m = std::max(m, sr[j]);
            }
            float sum = 0.f;
            for (int64_t j = 0; j < L; ++j) sr[j] = exp_nonpositive(sr[j] - m);
            for (int64_t j = 0; j < L; ++j) sum += sr[j];
            sums[r] = sum;
            lse[p * L + i] = m + std::log(sum);
          }
          std::fill(acc.begin(), acc.end(), 0.f);
          weights_times(acc.data(), s.data(), v.data(), n, L, hd);
          for (int64_t r = 0; r < n; ++r) {
            const int64_t o = g.out_offset(b, g.token(w, i0 + r), h);
            for (int64_t d = 0; d < hd; ++d) Elem<T>::store(O, o + d, acc[r * hd + d] / sums[r]);
          }
        }
      }
    });
  });
}

// The same blocks of rows: P and dS = P ∘ (dO·Vᵀ − delta) for the block, then dQ (block rows), and dK, dV
// accumulated over the blocks in row order, so the sums run in one fixed order. The relative position gradients are
// sums of a query's dS row (over a key row for dh, down a key column for dw), taken while the row is at hand.
void attention_backward(GpuStream, void* dqkv_, void* dbias_, void* drel_h_, void* drel_w_, const void* dout_,
                        const void* qkv_, const void* out_, const float* lse, const void* bias_, const void* rel_h_,
                        const void* rel_w_, const Geometry& g, DType dt, float* scratch) {
  with_float_dtype(dt, "attention backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* qkv = static_cast<const T*>(qkv_);
    const T* bias = static_cast<const T*>(bias_);
    const T* rel_h = static_cast<const T*>(rel_h_);
    const T* rel_w = static_cast<const T*>(rel_w_);
    T* drel_h = static_cast<T*>(drel_h_);
    T* drel_w = static_cast<T*>(drel_w_);
    const T* dO = static_cast<const T*>(dout_);
    const T* O = static_cast<const T*>(out_);
    T* dqkv = static_cast<T*>(dqkv_);
    const int64_t L = g.length(), hd = g.head_dim, nw = g.windows();
    float* partial = scratch + g.stat_rows();
    zero_prefix(dqkv, g, 3 * g.dim());
    parallel_for(g.batch * g.heads * nw, 1, [&](int64_t p0, int64_t p1) {
      std::vector<float> q, k, v, kt, vt, go(L * hd), dq(L * hd), dk, dv, P(kRows * L), dS(kRows * L), delta(L),
          dw(g.rel_gw);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t w = p % nw, h = (p / nw) % g.heads, b = p / (nw * g.heads);
        gather_qkv(q, k, v, qkv, g, b, h, w);
        transpose(kt, k, L, hd);
        transpose(vt, v, L, hd);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t o = g.out_offset(b, g.token(w, i), h);
          float dl = 0.f;
          for (int64_t d = 0; d < hd; ++d) {
            go[i * hd + d] = Elem<T>::load(dO, o + d);
            dl += go[i * hd + d] * Elem<T>::load(O, o + d);
          }
          delta[i] = dl;
        }
        std::fill(dq.begin(), dq.end(), 0.f);
        dk.assign(L * hd, 0.f);
        dv.assign(L * hd, 0.f);
        for (int64_t i0 = 0; i0 < L; i0 += kRows) {
          const int64_t n = std::min(kRows, L - i0);
          rows_times(P.data(), q.data(), kt.data(), i0, n, L, hd);
          rows_times(dS.data(), go.data(), vt.data(), i0, n, L, hd);
          for (int64_t r = 0; r < n; ++r) {
            const int64_t i = i0 + r;
            float* pr = P.data() + r * L;
            float* ds = dS.data() + r * L;
            for (int64_t j = 0; j < L; ++j) {
              pr[j] = pr[j] * g.scale + (bias ? Elem<T>::load(bias, (h * L + i) * L + j) : 0.f) +
                      (rel_h ? rel_pos_at(rel_h, rel_w, g, p * L + i, j) : 0.f) - lse[p * L + i];
            }
            for (int64_t j = 0; j < L; ++j) pr[j] = exp_nonpositive(pr[j]);
            for (int64_t j = 0; j < L; ++j) ds[j] = pr[j] * (ds[j] - delta[i]);
            if (bias) std::memcpy(partial + (((b * nw + w) * g.heads + h) * L + i) * L, ds, L * sizeof(float));
            if (rel_h) {
              // Keys in raster order: key row y is ds[y·gw .. y·gw + gw), its column c recurs every gw keys.
              const int64_t row = p * L + i, gh = g.rel_gh, gw = g.rel_gw;
              std::fill(dw.begin(), dw.end(), 0.f);
              for (int64_t y = 0; y < gh; ++y) {
                const float* dsy = ds + y * gw;
                float sh = 0.f;
                for (int64_t c = 0; c < gw; ++c) {
                  sh += dsy[c];
                  dw[c] += dsy[c];
                }
                Elem<T>::store(drel_h, row * gh + y, sh);
              }
              for (int64_t c = 0; c < gw; ++c) Elem<T>::store(drel_w, row * gw + c, dw[c]);
            }
          }
          weights_times(dq.data() + i0 * hd, dS.data(), k.data(), n, L, hd);
          key_grads(dk.data(), dv.data(), dS.data(), P.data(), q.data() + i0 * hd, go.data() + i0 * hd, n, L, hd);
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
