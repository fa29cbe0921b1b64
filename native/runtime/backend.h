// A backend owns device memory (through its caching allocator) and one ordered stream of work.
// Ops are queued and return at once; only reads wait, and they wait off the JS thread.
//
// Lifetime: every Node environment (the main thread, each worker_thread) has its own BackendSet, so
// environments never share a queue or a stream and tearing one down cannot touch another. A set is shut
// down in its environment's cleanup hook, and every live backend once more at process exit (an atexit
// handler that runs before the addon's own static state is destroyed): queued work is dropped, running work
// stops at its next cancellation point, threads are joined. Storages keep their backend object alive, so a
// tensor finalized after shutdown still returns its memory safely.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "allocator.h"
#include "common.h"
#include "launch_types.h"
#include "profile.h"

namespace amr {

class Backend;

// A block of backend memory. Queued work holds a reference, so freeing a tensor in JS never frees memory that
// a kernel still uses; the block returns to the cache when the last reference drops.
struct Storage {
  Backend* backend;
  void* ptr;
  size_t bytes;
  size_t block_bytes;
  std::shared_ptr<Backend> owner;  // keeps backend (and its allocator) alive while the memory is referenced
  ~Storage();
};
using StoragePtr = std::shared_ptr<Storage>;

using HostBytes = std::shared_ptr<std::vector<uint8_t>>;
// Produces host bytes once the work queued before it has finished; may block, so call it off the JS thread
// (or inside queued work of another backend).
using HostFetch = std::function<HostBytes()>;

struct BackendInfo {
  BackendKind kind;
  bool compiled;
  bool available;
  std::string device;
  std::string reason;  // why it is not available
};

class Backend : public std::enable_shared_from_this<Backend> {
 public:
  virtual ~Backend() = default;
  BackendKind kind() const { return kind_; }
  CachingAllocator& allocator() { return *allocator_; }

  StoragePtr allocate(size_t bytes);

  // Runs work after everything queued before it. An exception it throws becomes this backend's pending
  // error, "<op>: <message>", which the next read reports.
  virtual void enqueue(const char* op, std::function<void()> work) = 0;
  // Blocks until all queued work has finished.
  virtual void synchronize() = 0;
  // Snapshot of bytes [0, n) of src as of this point in the queue order.
  virtual HostFetch begin_read(StoragePtr src, size_t n) = 0;
  // Queues a copy of fetch()'s bytes into dst.
  virtual void upload(StoragePtr dst, HostFetch fetch) = 0;
  virtual GpuStream gpu_stream() { return GpuStream{}; }
  // Queues setting every byte of dst to value.
  virtual void fill_bytes(StoragePtr dst, uint8_t value) = 0;
  // Drops queued work, stops running work at its next cancellation point, joins threads; idempotent. Later
  // enqueues throw an Error.
  virtual void shutdown() = 0;

  std::string take_error();
  void record_error(const char* op, const std::string& what);

  // Op timing (profile.h): on from the next enqueue; turning it on starts from empty totals. take_profile is
  // read after synchronize(), so every op queued while it was on has run.
  void set_profiling(bool on);
  bool profiling() const { return profiling_; }
  virtual std::vector<OpTime> take_profile() { return profile_.take(); }

 protected:
  Backend(BackendKind kind, std::unique_ptr<CachingAllocator> allocator)
      : kind_(kind), allocator_(std::move(allocator)) {}

 private:
  BackendKind kind_;
  std::unique_ptr<CachingAllocator> allocator_;
  std::mutex error_mu_;
  std::string error_;
  std::atomic<bool> profiling_{false};

 protected:
  OpProfile profile_;
  // What a backend drops from its own timing state when profiling starts again (cuda's unread events).
  virtual void reset_profile() {}
};

// When on, every new allocation is filled with 0xFF bytes (NaN in f32 and bf16) before use, so a kernel
// that leaves part of its output unwritten produces NaNs instead of passing on stale values. Tests turn it on.
void set_poison_allocations(bool on);

// Info for every backend, compiled or not.
std::vector<BackendInfo> backend_infos();

// The backends of one Node environment, created on first use.
class BackendSet {
 public:
  BackendSet();
  ~BackendSet();  // shuts down
  // The backend, or an amr::Error that says why it cannot be used.
  Backend& get(BackendKind kind);
  void shutdown();

 private:
  std::mutex mu_;
  bool shut_down_ = false;
  std::shared_ptr<Backend> cpu_, sim_, cuda_;
};
// Queues a copy of src onto another backend, ordered after the work already queued on both.
StoragePtr copy_to_backend(const StoragePtr& src, Backend& dst);

}  // namespace amr
