#include "allocator.h"

#include "common.h"

namespace amr {

CachingAllocator::CachingAllocator(const char* backend, RawAlloc raw_alloc, RawFree raw_free)
    : backend_(backend), raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

// Classes are 512-byte multiples up to 64 KiB, then four classes per power of two: at most 25% slack,
// and few enough classes that blocks of similar sizes are reused.
size_t CachingAllocator::size_class(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= 65536) return (bytes + 511) & ~size_t(511);
  size_t pow2 = 65536;
  while (pow2 * 2 < bytes) pow2 *= 2;
  size_t step = pow2 / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes, size_t* block_bytes) {
  size_t cls = size_class(bytes);
  *block_bytes = cls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= cls;
      in_use_ += cls;
      return p;
    }
  }
  void* p = raw_alloc_(cls);
  if (!p) {
    empty_cache();
    p = raw_alloc_(cls);
  }
  if (!p) {
    throw Error(std::string("out of memory on ") + backend_ + ": could not allocate " + std::to_string(cls) +
                " bytes (" + std::to_string(bytes_in_use()) + " bytes in use)");
  }
  std::lock_guard<std::mutex> lock(mu_);
  in_use_ += cls;
  return p;
}

void CachingAllocator::release(void* p, size_t block_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  free_[block_bytes].push_back(p);
  in_use_ -= block_bytes;
  cached_ += block_bytes;
}

void CachingAllocator::empty_cache() {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks.swap(free_);
    cached_ = 0;
  }
  for (auto& kv : blocks)
    for (void* p : kv.second) raw_free_(p);
}

size_t CachingAllocator::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}
size_t CachingAllocator::bytes_cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

}  // namespace amr
