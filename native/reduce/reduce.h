// Full reductions. Deterministic: the summation order depends only on n, never on thread timing or device,
// so the same input gives the same bits run to run.
#pragma once
#include <cstdint>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace reduce {

// Scratch (in the op's backend memory) that sum needs for n elements.
int64_t sum_scratch_bytes(int64_t n);

// Scratch that sum_rows needs for a [rows, cols] input.
int64_t sum_rows_scratch_bytes(int64_t cols);

// Why sum cannot reduce storage of dtype dt, or nullptr: the one list of its limits, asked by the binding and by
// every backend's sum (a native caller may skip the binding). It accumulates floats only.
inline const char* unsupported(DType dt) { return dt == DType::I32 ? "i32 tensors are not supported" : nullptr; }

// sum_rows' sizes: a [rows, cols] → out [cols]. RowsGeometry is the TypeScript interface SumRowsGeometry (ts/native.ts).
struct RowsGeometry {
  int64_t rows = 0, cols = 0;
};

// Why sum_rows cannot run, or nullptr: its element count must keep offsets exact. Asked by the binding.
inline const char* unsupported(const RowsGeometry& g) {
  return double(g.rows) * double(g.cols) > 9.0e15 ? "tensor too large" : nullptr;
}

#define AMR_REDUCE_FUNCS                                                                                  \
  /* out[0] = alpha * sum(a[0..n)); out has dtype dt; f32 accumulation */                                \
  void sum(GpuStream s, void* out, const void* a, DType dt, int64_t n, double alpha, void* scratch);     \
  /* out[c] = sum over r of a[r, c] (the gradient of a broadcast bias) */                                 \
  void sum_rows(GpuStream s, void* out, const void* a, DType dt, int64_t rows, int64_t cols, void* scratch);

namespace cpu { AMR_REDUCE_FUNCS }
namespace cuda { AMR_REDUCE_FUNCS }
namespace sim { AMR_REDUCE_FUNCS }

}  // namespace reduce
}  // namespace amr
