#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "tokens.h"

namespace amr {
namespace tokens {
namespace AMR_GPU_NS {

namespace {

constexpr int kThreads = 256;

// Pure data movement: one element per thread, grid-stride so any size fits in the grid limit. Neighbouring
// threads write neighbouring outputs; patchify's reads are contiguous along each patch row (P elements).
dim3 stride_grid(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

template <typename TO, typename TX>
__global__ void patchify_kernel(TO* out, const TX* x, const float* mean, const float* std, PatchifyGeometry g) {
  const int64_t n = g.out_elements();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const PatchIndex p = patch_index(g, i);
    Elem<TO>::store(out, p.out, (Elem<TX>::load(x, p.in) - mean[p.channel]) / std[p.channel]);
  }
}

template <typename T>
__global__ void assemble_kernel(T* out, const T* prefix, const T* patches, const T* pos, AssembleGeometry g) {
  const int64_t n = g.batch * (g.prefix_rows + g.rows) * g.dim;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, assemble_value(prefix, patches, pos, g, i));
}

template <typename T>
__global__ void gather_rows_kernel(T* out, const T* x, const int64_t* starts, const int64_t* sources, int64_t batch,
                                   int64_t in_rows, int64_t out_rows, int64_t dim) {
  const int64_t n = batch * out_rows * dim;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    Elem<T>::store(out, i, gather_row_value(x, starts, sources, in_rows, out_rows, dim, i));
}

}  // namespace

void patchify(GpuStream s, void* out, DType out_dt, const void* x, DType x_dt, const float* mean, const float* std,
              const PatchifyGeometry& g) {
  with_float_dtype(out_dt, "patchify", [&](auto* to) {
    with_float_dtype(x_dt, "patchify", [&](auto* tx) {
      using TO = std::remove_pointer_t<decltype(to)>;
      using TX = std::remove_pointer_t<decltype(tx)>;
      launch("patchify", patchify_kernel<TO, TX>, stride_grid(g.out_elements()), dim3(kThreads), 0, s,
             static_cast<TO*>(out), static_cast<const TX*>(x), mean, std, g);
    });
  });
}

void assemble(GpuStream s, void* out, const void* prefix, const void* patches, const void* pos, const AssembleGeometry& g,
              DType dt) {
  with_float_dtype(dt, "assembleTokens", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("assemble_tokens", assemble_kernel<T>, stride_grid(g.batch * (g.prefix_rows + g.rows) * g.dim),
           dim3(kThreads), 0, s, static_cast<T*>(out), static_cast<const T*>(prefix), static_cast<const T*>(patches),
           static_cast<const T*>(pos), g);
  });
}

void gather_rows(GpuStream s, void* out, const void* x, const int64_t* starts, const int64_t* sources, int64_t batch,
                 int64_t in_rows, int64_t out_rows, int64_t dim, DType dt) {
  with_float_dtype(dt, "gatherRows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch("gather_rows", gather_rows_kernel<T>, stride_grid(batch * out_rows * dim), dim3(kThreads), 0, s,
           static_cast<T*>(out), static_cast<const T*>(x), starts, sources, batch, in_rows, out_rows, dim);
  });
}

}  // namespace AMR_GPU_NS
}  // namespace tokens
}  // namespace amr
