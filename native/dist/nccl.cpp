// The NCCL backend of native/dist (see nccl.h). The prototype table below is declared here from NCCL's public C
// ABI (nccl.h): the enum values and the 128-byte id are part of that ABI and have not changed since NCCL 2.0,
// except that ncclAvg and ncclBfloat16 exist from 2.10 on, which is checked at run time.
#include "nccl.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "../runtime/common.h"
#ifdef AMR_WITH_CUDA
#include "../elementwise/elementwise.h"
#endif

namespace amr {
namespace dist {
namespace nccl {
namespace {

using Result = int;  // ncclResult_t
constexpr Result kSuccess = 0;
constexpr Result kInProgress = 7;  // ncclInProgress: an asynchronous error query's "still running"
using Comm = void*;                // ncclComm_t: an opaque pointer
struct UniqueId {
  char internal[kUniqueIdBytes];
};
// ncclDataType_t
constexpr int kInt8 = 0, kFloat32 = 7, kBfloat16 = 9;
// ncclRedOp_t
constexpr int kSum = 0, kAvg = 4;
// ncclGetVersion's code of 2.10.0, the first with ncclAvg and ncclBfloat16 (from 2.9 on the code is X·10000+Y·100+Z).
constexpr int kVersion_2_10 = 21000;

struct Nccl {
  Result (*GetVersion)(int*) = nullptr;
  Result (*GetUniqueId)(UniqueId*) = nullptr;
  Result (*CommInitRank)(Comm*, int, UniqueId, int) = nullptr;
  Result (*CommDestroy)(Comm) = nullptr;
  Result (*CommAbort)(Comm) = nullptr;
  Result (*CommGetAsyncError)(Comm, Result*) = nullptr;
  Result (*AllReduce)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  Result (*Broadcast)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  Result (*AllGather)(const void*, void*, size_t, int, Comm, void*) = nullptr;
  const char* (*GetErrorString)(Result) = nullptr;
  LibraryInfo info;
};

std::mutex g_open_mu;
Nccl* g_nccl = nullptr;  // never freed: the watchdog or a queued collective may still use it while exit() runs
std::string g_open_error;  // a failed open is remembered: dlopen would fail the same way every time

// The communicator's state. g_mu is held while a call is issued on the communicator and while it is aborted or
// destroyed, so the handle is never used after it is freed.
std::mutex g_mu;
Comm g_comm = nullptr;
int g_size = 0;
bool g_ever = false;       // NCCL allows one communicator per rank here; a second init is refused
std::string g_broken;      // why the communicator was aborted; later collectives throw it
// Where collectives ran: they get the abort's error. On the heap, never freed: the watchdog may read it during exit.
auto* const g_backends = new std::vector<std::weak_ptr<Backend>>();

// The watchdog: polls ncclCommGetAsyncError (NCCL's documented way to learn that a peer failed) while a
// communicator lives. Detached, with its state on the heap and never freed: a script may exit without close(), and
// a joinable std::thread destroyed at exit would terminate the process, a condition variable destroyed under a
// waiting thread can block exit.
struct Watch {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool running = false;
};
Watch* const g_watch = new Watch();

template <typename F>
void sym(void* h, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(dlsym(h, name));
  if (!out) missing += std::string(missing.empty() ? "" : ", ") + name;
}

std::string version_text(int code) {
  // 2.9 on: X·10000 + Y·100 + Z; before: X·1000 + Y·100 + Z.
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? code / 100 % 100 : code / 100 % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

Nccl* open_library() {
  std::vector<std::string> names;
  const char* own = std::getenv("AM_RADIO_NCCL_LIBRARY");
  if (own && *own) names.push_back(own);
  else names = {"libnccl.so.2", "libnccl.so"};
  std::string tried;
  for (const std::string& name : names) {
    // RTLD_LOCAL: NCCL loads its plugins by file name and needs none of its symbols global.
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      tried += std::string(tried.empty() ? "" : "; ") + dlerror();
      continue;
    }
    auto* n = new Nccl();
    std::string missing;
    sym(h, "ncclGetVersion", n->GetVersion, missing);
    sym(h, "ncclGetUniqueId", n->GetUniqueId, missing);
    sym(h, "ncclCommInitRank", n->CommInitRank, missing);
    sym(h, "ncclCommDestroy", n->CommDestroy, missing);
    sym(h, "ncclCommAbort", n->CommAbort, missing);
    sym(h, "ncclCommGetAsyncError", n->CommGetAsyncError, missing);
    sym(h, "ncclAllReduce", n->AllReduce, missing);
    sym(h, "ncclBroadcast", n->Broadcast, missing);
    sym(h, "ncclAllGather", n->AllGather, missing);
    sym(h, "ncclGetErrorString", n->GetErrorString, missing);
    int code = 0;
    if (missing.empty() && n->GetVersion(&code) != kSuccess) missing = "a working ncclGetVersion";
    if (!missing.empty()) {
      tried += std::string(tried.empty() ? "" : "; ") + name + " lacks " + missing + " (not NCCL 2.4 or newer?)";
      delete n;
      dlclose(h);
      continue;
    }
    n->info = LibraryInfo{name, code, version_text(code)};
    return n;
  }
  std::string looked;
  for (const std::string& n : names) looked += (looked.empty() ? "" : ", ") + n;
  throw Error("NCCL: no usable NCCL library (looked for " + looked + (own && *own ? ", named by AM_RADIO_NCCL_LIBRARY" : "") +
              ": " + tried + "); install NCCL 2 (NVIDIA's libnccl2 package, or the nvidia-nccl-cu12/cu13 wheel's " +
              "lib/libnccl.so.2) or set AM_RADIO_NCCL_LIBRARY to the path of libnccl.so.2");
}

const Nccl& lib() {
  std::lock_guard<std::mutex> lock(g_open_mu);
  if (g_nccl) return *g_nccl;
  if (!g_open_error.empty()) throw Error(g_open_error);
  try {
    g_nccl = open_library();
  } catch (const Error& e) {
    g_open_error = e.what();
    throw;
  }
  return *g_nccl;
}

void check(const Nccl& n, Result rc, const char* what) {
  if (rc == kSuccess) return;
  const char* s = n.GetErrorString ? n.GetErrorString(rc) : nullptr;
  throw Error(std::string("NCCL: ") + what + " failed (error " + std::to_string(rc) + (s ? std::string(": ") + s : "") + ")");
}

// The communicator for a collective; the caller holds g_mu.
Comm usable(const char* op) {
  if (!g_broken.empty()) throw Error(std::string(op) + ": " + g_broken);
  if (!g_comm)
    throw Error(std::string(op) + ": there is no NCCL communicator (initDistributed({ device: 'cuda' }) and " +
                "await group.ready() create it, on every rank, before the first cuda collective)");
  return g_comm;
}

void remember(Backend& be) {
  for (const auto& w : *g_backends)
    if (w.lock().get() == &be) return;
  g_backends->push_back(be.shared_from_this());
}

// Aborts with g_mu held.
void abort_locked(const std::string& why) {
  if (!g_broken.empty()) return;
  g_broken = why;
  if (g_comm) {
    g_nccl->CommAbort(g_comm);
    g_comm = nullptr;
  }
  for (const auto& w : *g_backends)
    if (auto be = w.lock()) be->record_error("NCCL", why);
}

// One poll; false when the watchdog should end (no communicator, or it was just aborted).
bool poll_once() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_comm) return false;
  Result async = kSuccess;
  const Result rc = g_nccl->CommGetAsyncError(g_comm, &async);
  if (rc != kSuccess) async = rc;
  if (async == kSuccess || async == kInProgress) return true;
  const char* s = g_nccl->GetErrorString(async);
  abort_locked(std::string("NCCL reported an asynchronous error (") + std::to_string(async) + (s ? std::string(": ") + s : "") +
               "): a peer failed or the network broke; the communicator was aborted and the job cannot continue");
  return false;
}

void watch() {
  std::unique_lock<std::mutex> wl(g_watch->mu);
  while (!g_watch->cv.wait_for(wl, std::chrono::milliseconds(100), [] { return g_watch->stop; })) {
    wl.unlock();  // never held with g_mu: stop_watchdog takes it alone
    const bool more = poll_once();
    wl.lock();
    if (!more) break;
  }
  g_watch->running = false;
  g_watch->cv.notify_all();
}

void start_watchdog() {
  std::lock_guard<std::mutex> wl(g_watch->mu);
  g_watch->stop = false;
  g_watch->running = true;
  std::thread(watch).detach();
}

// Returns once the watchdog has ended, so the communicator can be destroyed without a poll racing it.
void stop_watchdog() {
  std::unique_lock<std::mutex> wl(g_watch->mu);
  g_watch->stop = true;
  g_watch->cv.notify_all();
  g_watch->cv.wait(wl, [] { return !g_watch->running; });
}

// Refuses now, on the JS thread, what the queued call would refuse: the communicator is missing or broken.
int checked_size(const char* op) {
  std::lock_guard<std::mutex> lock(g_mu);
  usable(op);
  return g_size;
}

void* stream_of(Backend& be, const char* op) {
  if (be.kind() != BackendKind::Cuda)
    throw Error(std::string(op) + ": the tensor is on " + backend_name(be.kind()) +
                "; NCCL collectives take cuda tensors (sim is not an NCCL target; cpu tensors go through MPI)");
  void* s = be.gpu_stream().handle;
  if (!s) throw Error(std::string(op) + ": the cuda backend has no stream");
  return s;
}

}  // namespace

LibraryInfo library() { return lib().info; }

std::string unique_id() {
  const Nccl& n = lib();
  UniqueId id;
  std::memset(&id, 0, sizeof id);
  check(n, n.GetUniqueId(&id), "ncclGetUniqueId");
  return std::string(id.internal, sizeof id.internal);
}

void init_comm(const std::string& id, int rank, int size) {
  const Nccl& n = lib();
  if (id.size() != kUniqueIdBytes)
    throw Error("NCCL: the unique id has " + std::to_string(id.size()) + " bytes, " + std::to_string(kUniqueIdBytes) + " expected");
  if (size < 1 || rank < 0 || rank >= size)
    throw Error("NCCL: rank " + std::to_string(rank) + " is not in a world of " + std::to_string(size));
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_ever) throw Error("NCCL: this process already made its communicator; one per process");
    g_ever = true;
  }
  UniqueId uid;
  std::memcpy(uid.internal, id.data(), kUniqueIdBytes);
  Comm comm = nullptr;
  // Blocking, without g_mu: the call waits for every rank, and nothing else may touch the communicator before it
  // exists. The cuda backend runs on device 0 of what the process sees, and so does this thread.
  const Result rc = n.CommInitRank(&comm, size, uid, rank);
  if (rc != kSuccess) {
    const char* s = n.GetErrorString(rc);
    throw Error("NCCL: ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(size) + ") failed (error " +
                std::to_string(rc) + (s ? std::string(": ") + s : "") +
                "); each rank must see its own GPU: the cuda backend uses the first visible device, so start each rank " +
                "with CUDA_VISIBLE_DEVICES set to its LOCAL_RANK; NCCL_DEBUG=WARN prints NCCL's reason");
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_comm = comm;
    g_size = size;
  }
  start_watchdog();
}

bool has_comm() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_comm != nullptr;
}

int comm_size(const char* op) {
  std::lock_guard<std::mutex> lock(g_mu);
  usable(op);
  return g_size;
}

void allreduce(Backend& be, const StoragePtr& buf, int64_t n, DType dt, bool mean) {
  const Nccl& nc = lib();
  if (dt != DType::F32 && dt != DType::BF16) throw Error("allReduce: NCCL all-reduces f32 or bf16 tensors, this one is " + std::string(dtype_name(dt)));
  if (dt == DType::BF16 && nc.info.version < kVersion_2_10)
    throw Error("allReduce: bf16 needs NCCL 2.10 or newer; " + nc.info.library + " is " + nc.info.version_text);
  void* stream = stream_of(be, "allReduce");
  checked_size("allReduce");
  be.enqueue("allReduce", [&be, buf, n, dt, mean, stream, &nc] {
    std::lock_guard<std::mutex> lock(g_mu);
    Comm comm = usable("allReduce");
    remember(be);
    if (n == 0) return;
    const bool avg = mean && nc.info.version >= kVersion_2_10;
    check(nc, nc.AllReduce(buf->ptr, buf->ptr, static_cast<size_t>(n), dt == DType::F32 ? kFloat32 : kBfloat16, avg ? kAvg : kSum, comm, stream),
          "ncclAllReduce");
    if (mean && !avg && g_size > 1) {
      // NCCL before 2.10 has no average: the sum, then the elementwise family's scale on the same stream.
#ifdef AMR_WITH_CUDA
      elementwise::cuda::scale(GpuStream{stream}, buf->ptr, buf->ptr, 1.0 / g_size, dt, n);
#else
      throw Error("allReduce: the addon was built without CUDA");  // unreachable: no cuda backend exists then
#endif
    }
  });
}

void broadcast(Backend& be, const StoragePtr& buf, int64_t bytes, int root) {
  const Nccl& nc = lib();
  void* stream = stream_of(be, "broadcast");
  const int size = checked_size("broadcast");
  if (root < 0 || root >= size)
    throw Error("broadcast: root " + std::to_string(root) + " is not a rank of the group (size " + std::to_string(size) + ")");
  be.enqueue("broadcast", [&be, buf, bytes, root, stream, &nc] {
    std::lock_guard<std::mutex> lock(g_mu);
    Comm comm = usable("broadcast");
    remember(be);
    if (bytes == 0) return;
    check(nc, nc.Broadcast(buf->ptr, buf->ptr, static_cast<size_t>(bytes), kInt8, root, comm, stream), "ncclBroadcast");
  });
}

void allgather(Backend& be, const StoragePtr& in, const StoragePtr& out, int64_t bytes) {
  const Nccl& nc = lib();
  void* stream = stream_of(be, "allGather");
  checked_size("allGather");
  be.enqueue("allGather", [&be, in, out, bytes, stream, &nc] {
    std::lock_guard<std::mutex> lock(g_mu);
    Comm comm = usable("allGather");
    remember(be);
    if (bytes == 0) return;
    check(nc, nc.AllGather(in->ptr, out->ptr, static_cast<size_t>(bytes), kInt8, comm, stream), "ncclAllGather");
  });
}

void abort_comm(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_nccl) return;
    abort_locked(why);
  }
  stop_watchdog();
}

void destroy_comm() {
  stop_watchdog();
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_comm) return;
  const Result rc = g_nccl->CommDestroy(g_comm);
  g_comm = nullptr;
  if (g_broken.empty()) g_broken = "the process group was closed";
  check(*g_nccl, rc, "ncclCommDestroy");
}

}  // namespace nccl
}  // namespace dist
}  // namespace amr
