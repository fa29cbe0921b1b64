#include <algorithm>
#include <type_traits>
#include <vector>

#include "../runtime/thread_pool.h"
#include "tokens.h"

namespace amr {
namespace tokens {
namespace cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

template <typename F>
void with_two_float_dtypes(DType a, DType b, const char* op, F&& f) {
  with_float_dtype(a, op, [&](auto* ta) { with_float_dtype(b, op, [&](auto* tb) { f(ta, tb); }); });
}
}  // namespace

// The cpu kernels walk contiguous runs (a patch row of one channel, a token's row) rather than deriving every
// element's source from its output index as the cuda kernels must: the divisions per element cost more than the
// copy itself (patchify at 768 px spent ~16 ns per element on them).
void patchify(GpuStream, void* out, DType out_dt, const void* x, DType x_dt, const float* mean, const float* std,
              const PatchifyGeometry& g) {
  with_two_float_dtypes(out_dt, x_dt, "patchify", [&](auto* to, auto* tx) {
    using TO = std::remove_pointer_t<decltype(to)>;
    using TX = std::remove_pointer_t<decltype(tx)>;
    const int64_t P = g.patch, gh = g.grid_h(), gw = g.grid_w(), K = g.patch_elems();
    // One task per (image, patch row): its gw patches' K values each.
    parallel_for(g.batch * gh, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / gh, py = r % gh;
        for (int64_t px = 0; px < gw; ++px) {
          const int64_t o = ((b * gh + py) * gw + px) * K;
          for (int64_t c = 0; c < g.channels; ++c) {
            const float m = mean[c], sd = std[c];
            for (int64_t yy = 0; yy < P; ++yy) {
              const int64_t in = ((b * g.channels + c) * g.height + py * P + yy) * g.width + px * P;
              const int64_t at = o + (c * P + yy) * P;
              for (int64_t xx = 0; xx < P; ++xx)
                Elem<TO>::store(static_cast<TO*>(out), at + xx, (Elem<TX>::load(static_cast<const TX*>(x), in + xx) - m) / sd);
            }
          }
        }
      }
    });
  });
}

void assemble(GpuStream, void* out, const void* prefix, const void* patches, const void* pos, const AssembleGeometry& g,
              DType dt) {
  with_float_dtype(dt, "assembleTokens", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* PRE = static_cast<const T*>(prefix);
    const T* PAT = static_cast<const T*>(patches);
    const T* POS = static_cast<const T*>(pos);
    T* OUT = static_cast<T*>(out);
    const int64_t T_rows = g.prefix_rows + g.rows, D = g.dim;
    parallel_for(g.batch * T_rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / T_rows, t = row % T_rows;
        T* o = OUT + row * D;
        if (t < g.prefix_rows) {
          const T* src = PRE + ((g.prefix_batched ? b * g.prefix_rows : 0) + t) * D;
          for (int64_t d = 0; d < D; ++d) Elem<T>::store(o, d, Elem<T>::load(src, d));
          continue;
        }
        const int64_t n = t - g.prefix_rows;
        const T* src = PAT + (b * g.rows + n) * D;
        if (!POS) {
          for (int64_t d = 0; d < D; ++d) Elem<T>::store(o, d, Elem<T>::load(src, d));
          continue;
        }
        const T* p = POS + ((g.pos_batched ? b * g.rows : 0) + n) * D;
        for (int64_t d = 0; d < D; ++d) Elem<T>::store(o, d, Elem<T>::load(src, d) + Elem<T>::load(p, d));
      }
    });
  });
}

void gather_rows(GpuStream, void* out, const void* x, const int64_t* starts, const int64_t* sources, int64_t batch,
                 int64_t in_rows, int64_t out_rows, int64_t dim, DType dt) {
  with_float_dtype(dt, "gatherRows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* X = static_cast<const T*>(x);
    parallel_for(batch * out_rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1)), [&](int64_t r0, int64_t r1) {
      std::vector<float> acc(static_cast<size_t>(dim));
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / out_rows, r = row % out_rows;
        // Sources added in list order, as gather_row_value adds them, so cpu and cuda sum alike.
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int64_t j = starts[r]; j < starts[r + 1]; ++j) {
          const T* src = X + (b * in_rows + sources[j]) * dim;
          for (int64_t d = 0; d < dim; ++d) acc[d] += Elem<T>::load(src, d);
        }
        for (int64_t d = 0; d < dim; ++d) Elem<T>::store(static_cast<T*>(out), row * dim + d, acc[d]);
      }
    });
  });
}

}  // namespace cpu
}  // namespace tokens
}  // namespace amr
