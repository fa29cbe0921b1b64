#include "plan.h"
#include "reduce.h"

namespace amr {
namespace reduce {

int64_t sum_blocks(int64_t n) {
  int64_t blocks = (n + kSumItemsPerBlock - 1) / kSumItemsPerBlock;
  return blocks < 1 ? 1 : (blocks > kSumMaxBlocks ? kSumMaxBlocks : blocks);
}

int64_t sum_scratch_bytes(int64_t n) { return sum_blocks(n) * int64_t(sizeof(float)); }

int64_t sum_rows_scratch_bytes(int64_t cols) { return kRowChunks * cols * int64_t(sizeof(float)); }

}  // namespace reduce
}  // namespace amr
