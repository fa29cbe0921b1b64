// Parallel loops for the cpu backend's kernels.
#pragma once
#include <cstdint>
#include <functional>

namespace amr {

// Runs body(begin, end) over [0, n) in chunks of at least `grain` items on all cores; returns when done.
// Chunk boundaries depend only on n, grain and the thread count, never on timing.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);
int thread_count();

}  // namespace amr
