#include <type_traits>

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

void patchify(GpuStream, void* out, DType out_dt, const void* x, DType x_dt, const float* mean, const float* std,
              const PatchifyGeometry& g) {
  with_two_float_dtypes(out_dt, x_dt, "patchify", [&](auto* to, auto* tx) {
    using TO = std::remove_pointer_t<decltype(to)>;
    using TX = std::remove_pointer_t<decltype(tx)>;
    parallel_for(g.out_elements(), kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const PatchIndex p = patch_index(g, i);
        const float v = (Elem<TX>::load(static_cast<const TX*>(x), p.in) - mean[p.channel]) / std[p.channel];
        Elem<TO>::store(static_cast<TO*>(out), p.out, v);
      }
    });
  });
}

void assemble(GpuStream, void* out, const void* prefix, const void* patches, const void* pos, const AssembleGeometry& g,
              DType dt) {
  with_float_dtype(dt, "assembleTokens", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for(g.batch * (g.prefix_rows + g.rows) * g.dim, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        Elem<T>::store(static_cast<T*>(out), i,
                       assemble_value(static_cast<const T*>(prefix), static_cast<const T*>(patches),
                                      static_cast<const T*>(pos), g, i));
    });
  });
}

void gather_rows(GpuStream, void* out, const void* x, const int64_t* starts, const int64_t* sources, int64_t batch,
                 int64_t in_rows, int64_t out_rows, int64_t dim, DType dt) {
  with_float_dtype(dt, "gatherRows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    parallel_for(batch * out_rows * dim, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        Elem<T>::store(static_cast<T*>(out), i,
                       gather_row_value(static_cast<const T*>(x), starts, sources, in_rows, out_rows, dim, i));
    });
  });
}

}  // namespace cpu
}  // namespace tokens
}  // namespace amr
