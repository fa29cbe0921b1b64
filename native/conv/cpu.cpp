#include <algorithm>
#include <type_traits>

#include <vector>

#include "../activation/rows.h"
#include "../gemm/cpu_bf16.h"
#include "../runtime/thread_pool.h"
#include "conv.h"

namespace amr {
namespace conv {
namespace cpu {

namespace {

// The cpu product computes in f32 whatever the storage, so the scratch is f32 throughout: products read it as
// they are, and bf16 is rounded once, at the end, as the cuda epilogue rounds it.

// One group's column matrix [K, N·Ho·Wo]. A row (channel c, tap i, j) walks the images and output rows; along an
// output row the source advances by sw, so the inner loop is a strided copy with the bounds decided per row.
// col holds f32 values, or for the AMX product (cpu_bf16.h) bf16 bits copied as they are (C = uint16_t).
template <typename T, typename C = float>
void im2col(const Geometry& g, int64_t group, C* col, const T* x) {
  const int64_t K = col_rows(g), HW = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  parallel_for(K, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t j = r % g.kw, i = (r / g.kw) % g.kh, c = r / (int64_t(g.kw) * g.kh) + group * group_in(g);
      C* out = col + r * Q;
      for (int64_t n = 0; n < g.batch; ++n) {
        const T* plane = x + (n * g.in_c + c) * g.in_h * g.in_w;
        for (int64_t oy = 0; oy < g.out_h; ++oy) {
          C* o = out + n * HW + oy * g.out_w;
          const int64_t iy = oy * g.sh - g.ph + i * g.dh;
          if (iy < 0 || iy >= g.in_h) {
            std::fill(o, o + g.out_w, C(0));
            continue;
          }
          const T* src = plane + iy * g.in_w;
          // The outputs whose source column lies inside the row, [lo, hi), decided once per row, so the copy
          // between the two zero runs has no branch (and is contiguous for stride 1).
          const int64_t off = j * g.dw - g.pw;
          const int64_t lo = std::min<int64_t>(g.out_w, off >= 0 ? 0 : (-off + g.sw - 1) / g.sw);
          const int64_t hi = std::max<int64_t>(lo, std::min<int64_t>(g.out_w, g.in_w - off <= 0 ? 0 : (g.in_w - off + g.sw - 1) / g.sw));
          std::fill(o, o + lo, C(0));  // bf16 +0 is all-zero bits too
          if constexpr (std::is_same<C, float>::value)
            for (int64_t ox = lo; ox < hi; ++ox) o[ox] = Elem<T>::load(src, ox * g.sw + off);
          else
            for (int64_t ox = lo; ox < hi; ++ox) o[ox] = src[ox * g.sw + off];
          std::fill(o + hi, o + g.out_w, C(0));
        }
      }
    }
  });
}

// dx for one group's channels from its column gradient [K, N·Ho·Wo] (+ bias[c]).
template <typename T>
void col2im(const Geometry& g, int64_t group, T* dx, const float* dcol, const T* bias) {
  const int64_t Cg = group_in(g);
  parallel_for(int64_t(g.batch) * Cg, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / Cg, cl = p % Cg, c = group * Cg + cl;
      T* plane = dx + (n * g.in_c + c) * g.in_h * g.in_w;
      const float b = bias ? Elem<T>::load(bias, c) : 0.f;
      for (int64_t iy = 0; iy < g.in_h; ++iy)
        for (int64_t ix = 0; ix < g.in_w; ++ix) {
          const float acc = gather_columns(g, cl, n, iy, ix, dcol);
          Elem<T>::store(plane, iy * g.in_w + ix, acc + b);
        }
    }
  });
}

// [N, O, HW] → [O, N·HW]: a channel's outputs of every image in one row.
template <typename T>
void channel_major(const Geometry& g, float* dst, const T* src) {
  const int64_t HW = int64_t(g.out_h) * g.out_w, Q = col_cols(g);
  parallel_for(int64_t(g.batch) * g.out_c, 4, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.out_c, o = p % g.out_c;
      float* d = dst + o * Q + n * HW;
      for (int64_t i = 0; i < HW; ++i) d[i] = Elem<T>::load(src, p * HW + i);
    }
  });
}

// The weight as f32: itself when it is f32, else converted into `slot`.
template <typename T>
const float* f32_weight(const Geometry& g, const T* w, float* slot) {
  if constexpr (std::is_same<T, float>::value) {
    (void)g;
    (void)slot;
    return w;
  } else {
    const int64_t n = weight_elements(g);
    parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) slot[i] = Elem<T>::load(w, i);
    });
    return slot;
  }
}

// store_output's epilogue over one output row (image n, channel o: HW elements from t) at once, so the activation
// runs as activation/rows.h's vectorized loop rather than a libm call per element (E-RADIO's SiLU follows every
// conv). row is f32 scratch and is overwritten.
template <typename T>
void store_row(const Epilogue& e, T* y, int64_t t, int64_t o, float* row, int64_t n) {
  if (e.bias) {
    const float b = Elem<T>::load(static_cast<const T*>(e.bias), o);
    for (int64_t i = 0; i < n; ++i) row[i] += b;
  }
  if (e.preactivation)
    for (int64_t i = 0; i < n; ++i) Elem<T>::store(static_cast<T*>(e.preactivation), t + i, row[i]);
  activation::cpu::apply_row(e.activation, row, n);
  if (e.residual)
    for (int64_t i = 0; i < n; ++i) row[i] += Elem<T>::load(static_cast<const T*>(e.residual), t + i);
  for (int64_t i = 0; i < n; ++i) Elem<T>::store(y, t + i, row[i]);
}

void run(GpuStream s, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c, bool ta, bool tb) {
  gemm::cpu::gemm(s, product(m, n, k, a, b, c, DType::F32, ta, tb));
}

}  // namespace

void forward(GpuStream s, const Geometry& g, const Epilogue& e, void* y, const void* x, const void* w, DType dt,
             void* workspace) {
  with_float_dtype(dt, "conv2d", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g), HW = int64_t(g.out_h) * g.out_w;
    T* Y = static_cast<T*>(y);
    if (direct(g)) {
      parallel_for(int64_t(g.batch) * g.out_c, 1, [&](int64_t p0, int64_t p1) {
        std::vector<float> row(static_cast<size_t>(HW));
        for (int64_t p = p0; p < p1; ++p) {
          for (int64_t i = 0; i < HW; ++i)
            row[i] = direct_output(g, static_cast<const T*>(x), static_cast<const T*>(w), p / g.out_c, p % g.out_c, i / g.out_w, i % g.out_w);
          store_row(e, Y, p * HW, p % g.out_c, row.data(), HW);
        }
      });
      return;
    }
    Scratch<float> sc(g, workspace);
    bool done = false;
    if constexpr (std::is_same<T, uint16_t>::value) {
      // bf16 on AMX straight from the bf16 weight and a bf16 column matrix (half the f32 one's scratch).
      if (gemm::cpu::bf16_amx_enabled()) {
        uint16_t* col = reinterpret_cast<uint16_t*>(sc.col);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          im2col(g, grp, col, static_cast<const T*>(x));
          gemm::cpu::bf16_amx_product(sc.rows + grp * Og * Q, static_cast<const T*>(w) + grp * Og * K, col, Og, Q, K, false, false);
        }
        done = true;
      }
    }
    if (!done) {
      const float* W = f32_weight(g, static_cast<const T*>(w), sc.weight);
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        im2col(g, grp, sc.col, static_cast<const T*>(x));
        run(s, Og, Q, K, W + grp * Og * K, sc.col, sc.rows + grp * Og * Q, false, false);
      }
    }
    parallel_for(int64_t(g.batch) * g.out_c, 4, [&](int64_t p0, int64_t p1) {
      std::vector<float> row(static_cast<size_t>(HW));
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / g.out_c, o = p % g.out_c;
        const float* src = sc.rows + o * Q + n * HW;
        std::copy(src, src + HW, row.data());
        store_row(e, Y, p * HW, o, row.data(), HW);
      }
    });
  });
}

void backward_input(GpuStream s, const Geometry& g, void* dx, const void* dy, const void* w, const void* bias,
                    DType dt, void* workspace) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g);
    if (direct(g)) {
      const int64_t HW = int64_t(g.in_h) * g.in_w;
      const T* B = static_cast<const T*>(bias);
      parallel_for(int64_t(g.batch) * g.in_c, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t n = p / g.in_c, c = p % g.in_c;
          const float b = B ? Elem<T>::load(B, c) : 0.f;
          for (int64_t i = 0; i < HW; ++i)
            Elem<T>::store(static_cast<T*>(dx), p * HW + i,
                           direct_input_grad(g, static_cast<const T*>(dy), static_cast<const T*>(w), n, c, i / g.in_w, i % g.in_w) + b);
        }
      });
      return;
    }
    Scratch<float> sc(g, workspace);
    const float* W = f32_weight(g, static_cast<const T*>(w), sc.weight);
    channel_major(g, sc.rows, static_cast<const T*>(dy));
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      // dcol [K, Q] = W_gᵀ · dy_g, into the column slot.
      run(s, K, Q, Og, W + grp * Og * K, sc.rows + grp * Og * Q, sc.col, true, false);
      col2im(g, grp, static_cast<T*>(dx), sc.col, static_cast<const T*>(bias));
    }
  });
}

void backward_weight(GpuStream s, const Geometry& g, void* dw, const void* x, const void* dy, DType dt,
                     void* workspace) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t K = col_rows(g), Q = col_cols(g), Og = group_out(g);
    if (direct(g)) {
      const int taps = g.kh * g.kw;
      parallel_for(int64_t(g.out_c) * taps, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int t = int(p % taps);
          Elem<T>::store(static_cast<T*>(dw), p,
                         direct_weight_grad(g, static_cast<const T*>(x), static_cast<const T*>(dy), p / taps, t / g.kw, t % g.kw, 0, 1));
        }
      });
      return;
    }
    Scratch<float> sc(g, workspace);
    channel_major(g, sc.rows, static_cast<const T*>(dy));
    float* out = std::is_same<T, float>::value ? static_cast<float*>(dw) : sc.weight;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      im2col(g, grp, sc.col, static_cast<const T*>(x));
      // dw_g [Og, K] = dy_g [Og, Q] · colᵀ: the sum over the batch runs inside the product.
      run(s, Og, K, Q, sc.rows + grp * Og * Q, sc.col, out + grp * Og * K, false, true);
    }
    if (!std::is_same<T, float>::value) {
      T* D = static_cast<T*>(dw);
      for (int64_t i = 0; i < weight_elements(g); ++i) Elem<T>::store(D, i, out[i]);
    }
  });
}

void channel_sum(GpuStream, void* out, const void* t, int64_t n, int64_t c, int64_t hw, DType dt) {
  with_float_dtype(dt, "conv2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* src = static_cast<const T*>(t);
    parallel_for(c, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        double acc = 0;
        for (int64_t b = 0; b < n; ++b)
          for (int64_t i = 0; i < hw; ++i) acc += Elem<T>::load(src, (b * c + ch) * hw + i);
        Elem<T>::store(static_cast<T*>(out), ch, static_cast<float>(acc));
      }
    });
  });
}

}  // namespace cpu
}  // namespace conv
}  // namespace amr
