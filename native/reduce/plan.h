// How sum splits its input: shared by the cpu and gpu code so every backend sums in the same grouping.
#pragma once
#include <cstdint>

namespace amr {
namespace reduce {

constexpr int kSumThreads = 256;
constexpr int64_t kSumItemsPerBlock = kSumThreads * 16;
constexpr int64_t kSumMaxBlocks = 1024;

int64_t sum_blocks(int64_t n);

// sum_rows adds rows in this many fixed chunks, then the chunks in order.
constexpr int64_t kRowChunks = 64;

}  // namespace reduce
}  // namespace amr
