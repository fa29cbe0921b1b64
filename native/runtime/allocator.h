// Caching allocator: one per backend. Freed blocks go back to a size-class free list instead of to the
// system (cudaFree synchronizes the device; malloc of large blocks faults in fresh pages every time).
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

namespace amr {

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(size_t bytes)>;  // returns nullptr when out of memory
  using RawFree = std::function<void(void* p)>;

  CachingAllocator(const char* backend, RawAlloc raw_alloc, RawFree raw_free);
  ~CachingAllocator();

  // Throws amr::Error naming the backend and the sizes when even an emptied cache cannot satisfy it.
  void* allocate(size_t bytes, size_t* block_bytes);
  void release(void* p, size_t block_bytes);
  void empty_cache();

  size_t bytes_in_use() const;
  size_t bytes_cached() const;

  static size_t size_class(size_t bytes);

 private:
  const char* backend_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t in_use_ = 0;
  size_t cached_ = 0;
};

}  // namespace amr
