// The process-wide tensor-core tile setting read by the cuda and sim GEMM (host code of both builds).
#include <atomic>

#include "gemm.h"

namespace amr {
namespace gemm {
namespace {
std::atomic<int> g_choice{static_cast<int>(MmaTileChoice::Auto)};
}  // namespace

MmaTileChoice mma_tile_choice() { return static_cast<MmaTileChoice>(g_choice.load(std::memory_order_relaxed)); }
void set_mma_tile_choice(MmaTileChoice choice) { g_choice.store(static_cast<int>(choice), std::memory_order_relaxed); }

}  // namespace gemm
}  // namespace amr
