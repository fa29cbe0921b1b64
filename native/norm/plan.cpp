#include "norm.h"

namespace amr {
namespace norm {

// Two partial rows (dw and db) per chunk.
int64_t column_sum_scratch_bytes(int64_t cols) { return 2 * kColumnSumChunks * cols * int64_t(sizeof(float)); }

}  // namespace norm
}  // namespace amr
