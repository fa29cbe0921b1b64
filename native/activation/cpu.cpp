#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "../runtime/vector_math.h"
#include "activation.h"
#include "rows.h"

namespace amr {
namespace activation {
namespace cpu {

namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Each kind's loop stands alone, so the compiler vectorizes it with the kind decided outside.
AMR_VECTOR_CLONES void gelu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = 0.5f * v[j] * erfc_nonbranching(-v[j] * kSqrtHalf);
}
AMR_VECTOR_CLONES void relu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] < 0.f ? 0.f : v[j];  // NaN is not < 0: it passes
}
AMR_VECTOR_CLONES void silu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] * sigmoid_nonbranching(v[j]);
}
AMR_VECTOR_CLONES void sigmoid_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = sigmoid_nonbranching(v[j]);
}
AMR_VECTOR_CLONES void quick_gelu_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) v[j] = v[j] * sigmoid_nonbranching(1.702f * v[j]);
}
AMR_VECTOR_CLONES void gelu_tanh_row(float* v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float x = v[j];
    v[j] = x * sigmoid_nonbranching(2.f * kGeluTanhBeta * (x + kGeluTanhKappa * x * x * x));
  }
}

// The derivatives, in activation.h's forms (PyTorch's backward formulas).
AMR_VECTOR_CLONES void gelu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float cdf = 0.5f * erfc_nonbranching(-x[j] * kSqrtHalf);
    const float pdf = kInvSqrt2Pi * exp_neg_square(x[j], 0.5f);
    dx[j] = dy[j] * (cdf + x[j] * pdf);
  }
}
AMR_VECTOR_CLONES void relu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dx[j] = x[j] <= 0.f ? 0.f : dy[j];
}
AMR_VECTOR_CLONES void silu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(x[j]);
    dx[j] = dy[j] * (s * (1.f + x[j] * (1.f - s)));
  }
}
AMR_VECTOR_CLONES void sigmoid_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(x[j]);
    dx[j] = dy[j] * (s * (1.f - s));
  }
}
AMR_VECTOR_CLONES void quick_gelu_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoid_nonbranching(1.702f * x[j]);
    dx[j] = dy[j] * (s * (1.f + 1.702f * x[j] * (1.f - s)));
  }
}
AMR_VECTOR_CLONES void gelu_tanh_grad_row(float* dx, const float* dy, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float x_sq = x[j] * x[j];
    const float s = sigmoid_nonbranching(2.f * kGeluTanhBeta * (x[j] + kGeluTanhKappa * x_sq * x[j]));
    const float du = kGeluTanhBeta * (1.f + 3.f * kGeluTanhKappa * x_sq);
    dx[j] = dy[j] * (s + x[j] * (2.f * s * (1.f - s)) * du);
  }
}

// Elements per chunk of the standalone op: a pool task's share, converted through a small f32 buffer for bf16.
constexpr int64_t kChunk = 4096;

}  // namespace

void apply_row(Kind k, float* v, int64_t n) {
  switch (k) {
    case Kind::Gelu: return gelu_row(v, n);
    case Kind::Relu: return relu_row(v, n);
    case Kind::Silu: return silu_row(v, n);
    case Kind::Sigmoid: return sigmoid_row(v, n);
    case Kind::QuickGelu: return quick_gelu_row(v, n);
    case Kind::GeluTanh: return gelu_tanh_row(v, n);
    default: return;
  }
}

void grad_row(Kind k, float* dx, const float* dy, const float* x, int64_t n) {
  switch (k) {
    case Kind::Gelu: return gelu_grad_row(dx, dy, x, n);
    case Kind::Relu: return relu_grad_row(dx, dy, x, n);
    case Kind::Silu: return silu_grad_row(dx, dy, x, n);
    case Kind::Sigmoid: return sigmoid_grad_row(dx, dy, x, n);
    case Kind::QuickGelu: return quick_gelu_grad_row(dx, dy, x, n);
    case Kind::GeluTanh: return gelu_tanh_grad_row(dx, dy, x, n);
    default:
      if (dx != dy) std::copy(dy, dy + n, dx);
      return;
  }
}

void forward(GpuStream, Kind k, void* y, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for((n + kChunk - 1) / kChunk, 4, [&](int64_t c0, int64_t c1) {
      float buf[kChunk];
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b = c * kChunk, m = std::min(kChunk, n - b);
        if constexpr (std::is_same_v<T, float>) {
          // f32 works in the output itself: the element-wise staging copies were a quarter of the op's time.
          float* out = static_cast<float*>(y) + b;
          if (out != static_cast<const float*>(x) + b) std::memcpy(out, static_cast<const float*>(x) + b, size_t(m) * sizeof(float));
          apply_row(k, out, m);
          continue;
        }
        for (int64_t i = 0; i < m; ++i) buf[i] = Elem<T>::load(static_cast<const T*>(x), b + i);
        apply_row(k, buf, m);
        for (int64_t i = 0; i < m; ++i) Elem<T>::store(static_cast<T*>(y), b + i, buf[i]);
      }
    });
  });
}

void backward(GpuStream, Kind k, void* dx, const void* dy, const void* x, int64_t n, DType dt) {
  with_float_dtype(dt, "activation backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for((n + kChunk - 1) / kChunk, 4, [&](int64_t c0, int64_t c1) {
      float gb[kChunk], xb[kChunk];
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b = c * kChunk, m = std::min(kChunk, n - b);
        if constexpr (std::is_same_v<T, float>) {
          grad_row(k, static_cast<float*>(dx) + b, static_cast<const float*>(dy) + b, static_cast<const float*>(x) + b, m);
          continue;
        }
        for (int64_t i = 0; i < m; ++i) {
          gb[i] = Elem<T>::load(static_cast<const T*>(dy), b + i);
          xb[i] = Elem<T>::load(static_cast<const T*>(x), b + i);
        }
        grad_row(k, gb, gb, xb, m);
        for (int64_t i = 0; i < m; ++i) Elem<T>::store(static_cast<T*>(dx), b + i, gb[i]);
      }
    });
  });
}

}  // namespace cpu
}  // namespace activation
}  // namespace amr
