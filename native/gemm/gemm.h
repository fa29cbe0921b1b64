// Batched matrix products with a fused epilogue: C = act(op(A) · op(B) + bias) + residual, row-major.
// linear(x, W) is A = x [M, K], B = W [N, K] with trans_b. Accumulation is f32 for every storage dtype.
#pragma once
#include <cstdint>
#include <string>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"
#include "../activation/activation.h"

namespace amr {
namespace gemm {

using Activation = activation::Kind;

// A product's sizes and operand layout: what the TypeScript op plans (GemmGeometry in ts/native.ts) and the binding
// reads, checks against the buffers (the spans below) and asks unsupported() about.
struct Geometry {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;             // A is [K, M] / B is [N, K] when set
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries (0: shared)
};

// Elements an operand spans: the last batch entry's start plus one matrix.
inline int64_t span(int64_t batch, int64_t stride, int64_t matrix) { return batch > 0 ? (batch - 1) * stride + matrix : 0; }
inline int64_t a_elements(const Geometry& g) { return span(g.batch, g.stride_a, g.m * g.k); }
inline int64_t b_elements(const Geometry& g) { return span(g.batch, g.stride_b, g.k * g.n); }
inline int64_t c_elements(const Geometry& g) { return span(g.batch, g.stride_c, g.m * g.n); }

// Why a geometry cannot run on any backend, or empty: sizes whose element counts would overflow an offset. (The
// cuda and sim grids' batch limit is theirs alone: gpu_unsupported.)
inline std::string unsupported(const Geometry& g) {
  const double lim = 9.0e15;
  const double m = double(g.m), n = double(g.n), k = double(g.k), b = double(g.batch);
  if (m * k > lim || k * n > lim || m * n > lim ||
      b * (double(g.stride_a) + double(g.stride_b) + double(g.stride_c)) > lim)
    return "a product of " + std::to_string(g.batch) + " x " + std::to_string(g.m) + "x" + std::to_string(g.n) + "x" +
           std::to_string(g.k) + " is too large";
  return std::string();
}

// One call: the geometry, the operands and the fused epilogue.
struct GemmArgs : Geometry {
  const void* a = nullptr;  // [M, K], or [K, M] when trans_a
  const void* b = nullptr;  // [K, N], or [N, K] when trans_b
  void* c = nullptr;        // [M, N]
  const void* bias = nullptr;      // [N]
  Activation activation = Activation::None;
  const void* residual = nullptr;  // [M, N] per batch entry, stride_c apart; added after the activation
  void* preactivation = nullptr;   // when set, receives op(A)·op(B) + bias (what backward of the activation needs)
  DType dtype = DType::F32;
};

AMR_HD float activate(Activation act, float v) { return activation::apply(act, v); }

// Why the cuda and sim backends cannot run args, or empty: their grids put the batch on z, at most 65535 blocks.
// Asked by those backends' gemm; the cpu backend has no such limit, so it is not a reason to refuse every call.
inline std::string gpu_unsupported(const GemmArgs& g) {
  if (g.batch <= 65535) return std::string();
  return "batch of " + std::to_string(g.batch) + " exceeds 65535";
}

#define AMR_GEMM_FUNCS void gemm(GpuStream s, const GemmArgs& args);

namespace cpu { AMR_GEMM_FUNCS }
namespace cuda { AMR_GEMM_FUNCS }
namespace sim { AMR_GEMM_FUNCS }

namespace cpu {
// The host BLAS the cpu backend can open (dlopen, at first use), and the switch (off by default) that sends f32
// products to it instead of the built-in kernel, to compare the two.
struct BlasInfo {
  bool loaded;
  const char* library;
  const char* error;
};
BlasInfo blas_info();
void set_use_blas(bool on);
}  // namespace cpu

// Which tensor-core tile bf16 products use on cuda and sim: chosen by size (Auto), or forced, so tests can run
// every tile on shapes small enough for the emulator.
enum class MmaTileChoice : int { Auto = 0, Small = 1, Large = 2 };
MmaTileChoice mma_tile_choice();
void set_mma_tile_choice(MmaTileChoice choice);

}  // namespace gemm
}  // namespace amr
