#include "backend.h"

#include <atomic>
#include <cstdlib>
#include <future>

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
  StoragePtr s(new Storage{this, p, bytes, block});
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

namespace {

void* host_alloc(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) & ~size_t(63)); }

// cpu and sim keep tensors in host memory and run their work on their own queue thread.
class HostBackend final : public Backend {
 public:
  explicit HostBackend(BackendKind kind)
      : Backend(kind, std::make_unique<CachingAllocator>(backend_name(kind), host_alloc, std::free)) {}

  void enqueue(const char* op, std::function<void()> work) override {
    queue_.push([this, op, work = std::move(work)] {
      try {
        work();
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
    return [result] { return result.get(); };
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

 private:
  HostQueue queue_;
};

struct Registry {
  std::mutex mu;
  std::unique_ptr<Backend> cpu, sim, cuda;
  bool cuda_probed = false;
  BackendInfo cuda_info{BackendKind::Cuda, false, false, "", ""};
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: queue threads may outlive static teardown order
  return *r;
}

#ifdef AMR_WITH_SIM
constexpr bool kSimCompiled = true;
#else
constexpr bool kSimCompiled = false;
#endif

void probe_cuda(Registry& r) {
  if (r.cuda_probed) return;
  r.cuda_probed = true;
  r.cuda_info.compiled = cuda_compiled();
  if (!r.cuda_info.compiled) {
    r.cuda_info.reason = "the addon was built without CUDA (nvcc was not found at build time)";
    return;
  }
  std::string device, reason;
  r.cuda = make_cuda_backend(&device, &reason);
  r.cuda_info.available = r.cuda != nullptr;
  r.cuda_info.device = device;
  r.cuda_info.reason = reason;
}

}  // namespace

std::vector<BackendInfo> backend_infos() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  probe_cuda(r);
  std::vector<BackendInfo> out;
  out.push_back({BackendKind::Cpu, true, true, "host", ""});
  out.push_back(r.cuda_info);
  BackendInfo sim{BackendKind::Sim, kSimCompiled, kSimCompiled, kSimCompiled ? "CUDA emulator on the host" : "", ""};
  if (!kSimCompiled) sim.reason = "the addon was built without the sim backend (AMR_WITH_SIM=OFF)";
  out.push_back(sim);
  return out;
}

Backend& backend(BackendKind kind) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  switch (kind) {
    case BackendKind::Cpu:
      if (!r.cpu) r.cpu = std::make_unique<HostBackend>(BackendKind::Cpu);
      return *r.cpu;
    case BackendKind::Sim:
      if (!kSimCompiled) throw Error("backend sim is not available: the addon was built without it (AMR_WITH_SIM=OFF)");
      if (!r.sim) r.sim = std::make_unique<HostBackend>(BackendKind::Sim);
      return *r.sim;
    case BackendKind::Cuda:
      probe_cuda(r);
      if (!r.cuda) throw Error("backend cuda is not available: " + r.cuda_info.reason);
      return *r.cuda;
  }
  throw Error("unknown backend");
}

StoragePtr copy_to_backend(const StoragePtr& src, Backend& dst) {
  StoragePtr out = dst.allocate(src->bytes);
  dst.upload(out, src->backend->begin_read(src, src->bytes));
  return out;
}

}  // namespace amr
