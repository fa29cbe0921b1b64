// bf16 products on cpu through AMX (Intel's tile matrix unit, AMX-BF16: one TDPBF16PS multiplies a 16×32 bf16 tile
// by a 32×16 one into 16×16 f32 sums), read straight from the bf16 operands. The generic path converts both
// operands to f32 and runs the f32 product, so without AMX bf16 costs about what f32 does. AVX512_BF16's vdpbf16ps
// was measured too: on a Sapphire Rapids core it ran at ~70 GFLOP/s against ~115 for the f32 FMA kernel of the same
// shape (it issues on one port, the FMA on two), so it is not used; AMX reached ~580 there.
#pragma once
#include <cstdint>
#include <functional>

namespace amr {
namespace gemm {
namespace cpu {

// Whether the CPU has AMX-BF16 and the kernel let this process use the tile registers (checked once), and whether
// the path is switched on (set_use_bf16_amx, default on).
bool bf16_amx_supported();
bool bf16_amx_enabled();
void set_use_bf16_amx(bool on);

// Each finished block of op(a) · op(b) for bf16 bits a, b, as f32 sums: acc holds rows i0 .. i1 and columns j0 .. j1
// of the product with row stride ld, handed over on the thread that computed it while it is still in cache (the
// caller's epilogue writes the output from it; nothing of size m × n is allocated). op(a) is [m, k] (a is [k, m] when
// trans_a), op(b) is [k, n] (b is [n, k] when trans_b). Products of bf16 values are exact in f32 and the tiles
// accumulate in f32 with round-to-nearest-even, as the f32 path does; AMX treats denormal inputs as zero and
// flushes denormal results, which bf16 activations and weights of a trained network never are. Each element is
// summed by one thread in a fixed k order, so the result does not depend on the thread count. Call only when
// bf16_amx_enabled().
using BlockFinish = std::function<void(const float* acc, int64_t ld, int64_t i0, int64_t i1, int64_t j0, int64_t j1)>;
void bf16_amx_product(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, bool trans_a,
                      bool trans_b, const BlockFinish& finish);

// The same into c [m, n] (f32, row-major, overwritten).
void bf16_amx_product(float* c, const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, bool trans_a,
                      bool trans_b);

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
