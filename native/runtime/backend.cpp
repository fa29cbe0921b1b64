#include "backend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <future>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cancel.h"
#include "cuda_backend.h"
#include "host_queue.h"

namespace amr {

Storage::~Storage() { backend->allocator().release(ptr, block_bytes); }

namespace {
std::atomic<bool> g_poison{false};
}

void set_poison_allocations(bool on) { g_poison = on; }

StoragePtr Backend::allocate(size_t bytes) {
  size_t block = 0;
  void* p = allocator_->allocate(bytes, &block);
  StoragePtr s(new Storage{this, p, bytes, block, shared_from_this()});
  if (g_poison) fill_bytes(s, 0xff);
  return s;
}

std::string Backend::take_error() {
  std::lock_guard<std::mutex> lock(error_mu_);
  std::string e;
  e.swap(error_);
  return e;
}

void Backend::record_error(const char* op, const std::string& what) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (error_.empty()) error_ = std::string(op) + ": " + what;  // the first failure explains the rest
}

void Backend::set_profiling(bool on) {
  if (on && !profiling_) {
    profile_.take();
    reset_profile();
  }
  profiling_ = on;
}

namespace {

// Blocks from 4 MiB on are 2 MiB-aligned, whole 2 MiB pages, and asked to be backed by transparent huge pages
// (Linux's default "madvise" mode gives them only to regions that ask): with 4 KiB pages, the kernels' strided walks
// over large tensors (a window's rows of qkv are 9 KiB apart at ViT-B, a GEMM's panels cross a page every row) missed
// the TLB on nearly every row.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeFrom = size_t(4) << 20;

void* host_alloc(size_t bytes) {
  if (bytes < kHugeFrom) return std::aligned_alloc(64, (bytes + 63) & ~size_t(63));
  const size_t size = (bytes + kHugePage - 1) & ~(kHugePage - 1);
  void* p = std::aligned_alloc(kHugePage, size);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, size, MADV_HUGEPAGE);  // advice only: without huge pages the block is still good memory
#endif
  return p;
}

// cpu and sim keep tensors in host memory and run their work on their own queue thread.
class HostBackend final : public Backend {
 public:
  explicit HostBackend(BackendKind kind)
      : Backend(kind, std::make_unique<CachingAllocator>(backend_name(kind), host_alloc, std::free)),
        queue_(backend_name(kind)) {}
  ~HostBackend() override { queue_.shutdown(); }

  void enqueue(const char* op, std::function<void()> work) override {
    queue_.push([this, op, timed = profiling(), work = std::move(work)] {
      try {
        if (timed) {
          const auto t0 = std::chrono::steady_clock::now();
          work();
          profile_.add(op, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        } else {
          work();
        }
      } catch (const Cancelled&) {
        // the environment is going away: nobody is left to read the result
      } catch (const std::exception& e) {
        record_error(op, e.what());
      } catch (...) {
        record_error(op, "unknown native error");
      }
    });
  }

  void synchronize() override { queue_.drain(); }

  HostFetch begin_read(StoragePtr src, size_t n) override {
    auto done = std::make_shared<std::promise<HostBytes>>();
    std::shared_future<HostBytes> result = done->get_future().share();
    queue_.push([src, n, done] {
      auto bytes = std::make_shared<std::vector<uint8_t>>(n);
      std::memcpy(bytes->data(), src->ptr, n);
      done->set_value(bytes);
    });
    std::string name = backend_name(kind());
    return [result, name] {
      try {
        return result.get();
      } catch (const std::future_error&) {  // shutdown dropped the read before it ran
        throw Error("backend " + name + " was shut down before the read ran");
      }
    };
  }

  void fill_bytes(StoragePtr dst, uint8_t value) override {
    queue_.push([dst, value] { std::memset(dst->ptr, value, dst->bytes); });
  }

  void upload(StoragePtr dst, HostFetch fetch) override {
    enqueue("copy", [dst, fetch] {
      HostBytes bytes = fetch();
      std::memcpy(dst->ptr, bytes->data(), std::min(bytes->size(), dst->bytes));
    });
  }

  void shutdown() override { queue_.shutdown(); }

 private:
  HostQueue queue_;
};

#ifdef AMR_WITH_SIM
constexpr bool kSimCompiled = true;
#else
constexpr bool kSimCompiled = false;
#endif

// Process-wide state. Never destroyed: it must outlive every environment and the exit handler, and static
// destructors run while other threads may still be about to ask for it.
struct Process {
  std::mutex mu;
  bool cuda_probed = false;
  BackendInfo cuda_info{BackendKind::Cuda, false, false, "", ""};
  std::vector<std::weak_ptr<Backend>> live;  // every backend ever created, for the exit handler
};

Process& process() {
  static Process* p = new Process();
  return *p;
}

void probe_cuda(Process& p) {
  if (p.cuda_probed) return;
  p.cuda_probed = true;
  p.cuda_info.compiled = cuda_compiled();
  if (!p.cuda_info.compiled) {
    p.cuda_info.reason = "the addon was built without CUDA (nvcc was not found at build time)";
    return;
  }
  std::string device, reason;
  std::unique_ptr<Backend> probe = make_cuda_backend(&device, &reason);
  p.cuda_info.available = probe != nullptr;
  p.cuda_info.device = device;
  p.cuda_info.reason = reason;
}

// At exit() (process.exit, an uncaught error, the end of the main script) every live backend of every
// environment stops before the addon's function-local statics and the CUDA runtime are torn down: atexit
// handlers run in reverse order of registration, and this one is registered after both were initialized.
void shutdown_all_at_exit() {
  std::vector<std::shared_ptr<Backend>> live;
  {
    Process& p = process();
    std::lock_guard<std::mutex> lock(p.mu);
    for (auto& w : p.live)
      if (auto b = w.lock()) live.push_back(std::move(b));
  }
  for (auto& b : live) b->shutdown();
  // Keep them: releasing the last reference here would free allocator state other exiting threads may touch.
  new std::vector<std::shared_ptr<Backend>>(std::move(live));
}

void register_live(const std::shared_ptr<Backend>& b) {
  Process& p = process();
  std::lock_guard<std::mutex> lock(p.mu);
  p.live.erase(std::remove_if(p.live.begin(), p.live.end(), [](const std::weak_ptr<Backend>& w) { return w.expired(); }),
               p.live.end());
  p.live.push_back(b);
}

}  // namespace

std::vector<BackendInfo> backend_infos() {
  Process& p = process();
  std::lock_guard<std::mutex> lock(p.mu);
  probe_cuda(p);
  std::vector<BackendInfo> out;
  out.push_back({BackendKind::Cpu, true, true, "host", ""});
  out.push_back(p.cuda_info);
  BackendInfo sim{BackendKind::Sim, kSimCompiled, kSimCompiled, kSimCompiled ? "CUDA emulator on the host" : "", ""};
  if (!kSimCompiled) sim.reason = "the addon was built without the sim backend (AMR_WITH_SIM=OFF)";
  out.push_back(sim);
  return out;
}

BackendSet::BackendSet() {
  static std::once_flag once;
  std::call_once(once, [] {
    backend_infos();  // initializes the CUDA runtime (when built) before the exit handler is registered
    std::atexit(shutdown_all_at_exit);
  });
}

BackendSet::~BackendSet() { shutdown(); }

Backend& BackendSet::get(BackendKind kind) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) throw Error(std::string("backend ") + backend_name(kind) + " was shut down (its environment is exiting)");
  std::shared_ptr<Backend>* slot = kind == BackendKind::Cpu ? &cpu_ : kind == BackendKind::Sim ? &sim_ : &cuda_;
  if (*slot) return **slot;
  switch (kind) {
    case BackendKind::Cpu:
      *slot = std::make_shared<HostBackend>(BackendKind::Cpu);
      break;
    case BackendKind::Sim:
      if (!kSimCompiled) throw Error("backend sim is not available: the addon was built without it (AMR_WITH_SIM=OFF)");
      *slot = std::make_shared<HostBackend>(BackendKind::Sim);
      break;
    case BackendKind::Cuda: {
      BackendInfo info = backend_infos()[1];
      if (!info.available) throw Error("backend cuda is not available: " + info.reason);
      std::string device, reason;
      std::unique_ptr<Backend> b = make_cuda_backend(&device, &reason);
      if (!b) throw Error("backend cuda is not available: " + reason);
      *slot = std::move(b);
      break;
    }
  }
  register_live(*slot);
  return **slot;
}

void BackendSet::shutdown() {
  std::vector<std::shared_ptr<Backend>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut_down_ = true;
    for (auto* b : {&cpu_, &cuda_, &sim_})
      if (*b) all.push_back(*b);
  }
  for (auto& b : all) b->shutdown();
}

StoragePtr copy_to_backend(const StoragePtr& src, Backend& dst) {
  StoragePtr out = dst.allocate(src->bytes);
  dst.upload(out, src->backend->begin_read(src, src->bytes));
  return out;
}

}  // namespace amr
