#include <algorithm>
#include <type_traits>
#include <vector>

#include "../runtime/bf16_rows.h"
#include "../runtime/thread_pool.h"
#include "../runtime/vector_clones.h"
#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {
namespace cpu {

namespace {

constexpr int kLanes = 16;

// lane[i % 16] += x[i] over i < n, in double: sixteen independent chains where one chain ran at one element per add's
// latency (about a fifth of memory bandwidth). Element i's lane depends on i alone, so the sum's grouping depends only
// on n, never on the ISA or the thread count.
AMR_VECTOR_CLONES void add_lanes(double* lane, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += double(x[i + l]);
  for (int l = 0; i < n; ++i, ++l) lane[l] += double(x[i]);
}

template <typename T>
double sum_range(const T* x, int64_t n) {
  double lane[kLanes] = {};
  if constexpr (std::is_same_v<T, float>) {
    add_lanes(lane, x, n);
  } else if constexpr (std::is_same_v<T, uint16_t>) {
    // bf16 through a small f32 row; its length is a multiple of the lane count, so lanes stay tied to the index.
    constexpr int64_t kRow = 4096;
    float row[kRow];
    for (int64_t b = 0; b < n; b += kRow) {
      const int64_t m = std::min(kRow, n - b);
      bf16_row_to_f32(row, x + b, m);
      add_lanes(lane, row, m);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) lane[i % kLanes] += double(Elem<T>::load(x, i));  // i32: refused before it gets here
  }
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
  return lane[0];
}

}  // namespace

void sum(GpuStream, void* out, const void* a, DType dt, int64_t n, double alpha, void*) {
  if (const char* why = unsupported(dt)) throw Error(std::string("sum: ") + why);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* x = static_cast<const T*>(a);
    // Double partials over fixed chunks, added in chunk order: as accurate as the float64 reference allows,
    // and independent of the thread count.
    const int64_t chunk = 1 << 16;
    const int64_t chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(static_cast<size_t>(chunks > 0 ? chunks : 1), 0.0);
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t hi = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        partial[c] = sum_range(x + c * chunk, hi - c * chunk);
      }
    });
    double total = 0;
    for (double p : partial) total += p;
    Elem<T>::store(static_cast<T*>(out), 0, static_cast<float>(total * alpha));
  });
}

void sum_rows(GpuStream, void* out, const void* a, DType dt, int64_t rows, int64_t cols, void* scratch) {
  with_float_dtype(dt, "sum over rows", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* x = static_cast<const T*>(a);
    float* partial = static_cast<float*>(scratch);
    const int64_t per = (rows + kRowChunks - 1) / kRowChunks;
    parallel_for(kRowChunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        float* p = partial + k * cols;
        for (int64_t c = 0; c < cols; ++c) p[c] = 0.f;
        const int64_t end = (k + 1) * per < rows ? (k + 1) * per : rows;
        for (int64_t r = k * per; r < end; ++r)
          for (int64_t c = 0; c < cols; ++c) p[c] += Elem<T>::load(x, r * cols + c);
      }
    });
    parallel_for(cols, 256, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float s = 0.f;
        for (int64_t k = 0; k < kRowChunks; ++k) s += partial[k * cols + c];
        Elem<T>::store(static_cast<T*>(out), c, s);
      }
    });
  });
}

}  // namespace cpu
}  // namespace reduce
}  // namespace amr
