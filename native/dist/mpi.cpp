// The MPI backend of native/dist: the library is opened at run time with a table of the few entry points used,
// and Open MPI's predefined handles are the addresses of the structs it exports (MPI_COMM_WORLD is
// &ompi_mpi_comm_world, and so on), which is what its mpi.h macros expand to.
#include "dist.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "../runtime/cancel.h"
#include "../runtime/common.h"

namespace amr {
namespace dist {
namespace {

using Handle = void*;  // Open MPI: MPI_Comm, MPI_Datatype, MPI_Op and MPI_Request are all pointers
constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED (the same value in every implementation)
void* const kInPlace = reinterpret_cast<void*>(1);  // Open MPI's MPI_IN_PLACE
void* const kStatusIgnore = nullptr;               // Open MPI's MPI_STATUS_IGNORE
const char* const kInstall = "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)";

struct Mpi {
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Initialized)(int*) = nullptr;
  int (*Finalized)(int*) = nullptr;
  int (*Comm_rank)(Handle, int*) = nullptr;
  int (*Comm_size)(Handle, int*) = nullptr;
  // The non-blocking forms of MPI_Allreduce, MPI_Bcast, MPI_Barrier and MPI_Allgather (MPI-3), polled by MPI_Test
  // so that a wait can be cancelled or timed out; a blocking call could only end with the process.
  int (*Iallreduce)(const void*, void*, int, Handle, Handle, Handle, Handle*) = nullptr;
  int (*Ibcast)(void*, int, Handle, int, Handle, Handle*) = nullptr;
  int (*Ibarrier)(Handle, Handle*) = nullptr;
  int (*Iallgather)(const void*, int, Handle, void*, int, Handle, Handle, Handle*) = nullptr;
  int (*Test)(Handle*, int*, void*) = nullptr;
  int (*Abort)(Handle, int) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Error_string)(int, char*, int*) = nullptr;
  int (*Get_library_version)(char*, int*) = nullptr;
  Handle comm_world = nullptr, f32 = nullptr, byte = nullptr, op_sum = nullptr;
  std::string library;
};

std::mutex g_mu;  // MPI_THREAD_SERIALIZED: one MPI call at a time in the process
Mpi* g_mpi = nullptr;  // never freed: a queue thread may still be in a collective while exit() runs
bool g_started = false, g_finalized = false;
std::string g_broken;  // set when a collective timed out: the job's state is unknown from then on
InitResult g_result{};
double g_timeout = 300;

std::string version_of(const Mpi& m) {
  if (!m.Get_library_version) return "";
  std::vector<char> buf(8192);  // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI, 8192 in MPICH
  int len = 0;
  if (m.Get_library_version(buf.data(), &len) != 0) return "";
  std::string s(buf.data(), static_cast<size_t>(std::max(0, std::min(len, 8191))));
  const size_t nl = s.find_first_of("\r\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

template <typename F>
bool sym(void* h, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(dlsym(h, name));
  if (!out) missing += std::string(missing.empty() ? "" : ", ") + name;
  return out != nullptr;
}

// Opens the first library that loads and is Open MPI; throws naming every file tried and why each failed.
Mpi* open_library() {
  std::vector<std::string> names;
  if (const char* own = std::getenv("AM_RADIO_MPI_LIBRARY"); own && *own) names.push_back(own);
  else names = {"libmpi.so.40", "libmpi.so", "libmpich.so.12"};
  std::string tried;
  for (const std::string& name : names) {
    // RTLD_GLOBAL: Open MPI loads its own components (mca_*.so) with dlopen, and they resolve libmpi's symbols
    // from the global scope; opened RTLD_LOCAL, MPI_Init fails to load them.
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      tried += std::string(tried.empty() ? "" : "; ") + dlerror();
      continue;
    }
    auto* m = new Mpi();
    m->library = name;
    std::string missing;
    sym(h, "MPI_Get_library_version", m->Get_library_version, missing);
    if (!dlsym(h, "ompi_mpi_comm_world")) {
      const std::string v = version_of(*m);
      tried += std::string(tried.empty() ? "" : "; ") + name + " is not Open MPI (" + (v.empty() ? "an unknown MPI" : v) +
               "); only Open MPI's ABI is supported so far";
      delete m;
      continue;
    }
    sym(h, "MPI_Init_thread", m->Init_thread, missing);
    sym(h, "MPI_Initialized", m->Initialized, missing);
    sym(h, "MPI_Finalized", m->Finalized, missing);
    sym(h, "MPI_Comm_rank", m->Comm_rank, missing);
    sym(h, "MPI_Comm_size", m->Comm_size, missing);
    sym(h, "MPI_Iallreduce", m->Iallreduce, missing);
    sym(h, "MPI_Ibcast", m->Ibcast, missing);
    sym(h, "MPI_Ibarrier", m->Ibarrier, missing);
    sym(h, "MPI_Iallgather", m->Iallgather, missing);
    sym(h, "MPI_Test", m->Test, missing);
    sym(h, "MPI_Abort", m->Abort, missing);
    sym(h, "MPI_Finalize", m->Finalize, missing);
    sym(h, "MPI_Error_string", m->Error_string, missing);
    auto handle = [&](const char* n) {
      void* p = dlsym(h, n);
      if (!p) missing += std::string(missing.empty() ? "" : ", ") + n;
      return p;
    };
    m->comm_world = handle("ompi_mpi_comm_world");
    m->f32 = handle("ompi_mpi_float");
    m->byte = handle("ompi_mpi_byte");
    m->op_sum = handle("ompi_mpi_op_sum");
    if (!missing.empty()) {
      tried += std::string(tried.empty() ? "" : "; ") + name + " lacks " + missing + " (an Open MPI older than 3.0?)";
      delete m;
      continue;
    }
    return m;
  }
  std::string looked;
  for (const std::string& n : names) looked += (looked.empty() ? "" : ", ") + n;
  throw Error("MPI: no usable MPI library (looked for " + looked + ": " + tried + "); " + kInstall);
}

void check(const Mpi& m, int rc, const char* what) {
  if (rc == 0) return;
  char buf[1024] = {0};
  int len = 0;
  std::string msg = m.Error_string && m.Error_string(rc, buf, &len) == 0 ? std::string(buf, static_cast<size_t>(len)) : "";
  throw Error(std::string("MPI: ") + what + " failed (error " + std::to_string(rc) + (msg.empty() ? "" : ": " + msg) + ")");
}

// The library, initialised and usable, for a collective; the caller holds g_mu.
const Mpi& usable(const char* op) {
  if (!g_started) throw Error(std::string(op) + ": MPI is not initialised (call initDistributed first)");
  if (g_finalized) throw Error(std::string(op) + ": the process group was closed");
  if (!g_broken.empty()) throw Error(std::string(op) + ": " + g_broken);
  return *g_mpi;
}

// Waits for a request: cancellable (the queue is shutting down), and bounded by the timeout.
void wait(const Mpi& m, Handle* req, const char* op) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::atomic<bool>* cancel = current_cancel_flag();
  for (long spin = 0;; ++spin) {
    int done = 0;
    check(m, m.Test(req, &done, kStatusIgnore), op);
    if (done) return;
    throw_if_cancelled(cancel);
    // Yield at first (a collective between processes on one machine ends in microseconds), then sleep so that a
    // rank waiting for a slow peer does not take a core from it.
    if (spin < 2000) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(200));
    if ((spin & 255) == 0) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > g_timeout) {
        g_broken = std::string("a collective (") + op + ") had no answer from the other ranks within " +
                   std::to_string(static_cast<int>(g_timeout)) + " s: a rank died or is stuck; the job cannot continue";
        throw Error(g_broken);  // the queue names the op
      }
    }
  }
}

constexpr int64_t kChunk = int64_t{1} << 30;  // MPI counts are int

}  // namespace

InitResult init(double timeout_seconds) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!(timeout_seconds > 0)) throw Error("MPI: timeout must be > 0 seconds");
  g_timeout = timeout_seconds;
  if (g_started) {
    if (g_finalized) throw Error("MPI: the process group was closed; MPI cannot be initialised twice in one process");
    return g_result;
  }
  if (!g_mpi) g_mpi = open_library();
  const Mpi& m = *g_mpi;
  int already = 0;
  check(m, m.Initialized(&already), "MPI_Initialized");
  if (!already) {
    int provided = 0;
    check(m, m.Init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
    if (provided < kThreadSerialized)
      throw Error("MPI: " + m.library + " provides thread level " + std::to_string(provided) +
                  ", collectives from a queue thread need MPI_THREAD_SERIALIZED (2)");
  }
  InitResult r{};
  check(m, m.Comm_rank(m.comm_world, &r.rank), "MPI_Comm_rank");
  check(m, m.Comm_size(m.comm_world, &r.size), "MPI_Comm_size");
  r.library = m.library;
  r.version = version_of(m);
  g_result = r;
  g_started = true;
  return r;
}

bool initialized() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_started && !g_finalized;
}

int world_size(const char* op) {
  std::lock_guard<std::mutex> lock(g_mu);
  usable(op);
  return g_result.size;
}

void allreduce_f32(float* data, int64_t n, bool mean) {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("allReduce");
  for (int64_t at = 0; at < n; at += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - at));
    Handle req = nullptr;
    check(m, m.Iallreduce(kInPlace, data + at, count, m.f32, m.op_sum, m.comm_world, &req), "MPI_Iallreduce");
    wait(m, &req, "allReduce");
  }
  if (mean && g_result.size > 1) {
    const float inv = 1.0f / static_cast<float>(g_result.size);
    for (int64_t i = 0; i < n; ++i) data[i] *= inv;
  }
}

void broadcast(void* data, int64_t bytes, int root) {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("broadcast");
  if (root < 0 || root >= g_result.size)
    throw Error("broadcast: root " + std::to_string(root) + " is not a rank of the group (size " + std::to_string(g_result.size) + ")");
  for (int64_t at = 0; at < bytes; at += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, bytes - at));
    Handle req = nullptr;
    check(m, m.Ibcast(static_cast<char*>(data) + at, count, m.byte, root, m.comm_world, &req), "MPI_Ibcast");
    wait(m, &req, "broadcast");
  }
}

void barrier() {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("barrier");
  Handle req = nullptr;
  check(m, m.Ibarrier(m.comm_world, &req), "MPI_Ibarrier");
  wait(m, &req, "barrier");
}

void allgather(const void* in, void* out, int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("allGather");
  if (bytes > kChunk) throw Error("allGather: " + std::to_string(bytes) + " bytes per rank is more than 2^30");
  Handle req = nullptr;
  const int count = static_cast<int>(bytes);
  check(m, m.Iallgather(in, count, m.byte, out, count, m.byte, m.comm_world, &req), "MPI_Iallgather");
  wait(m, &req, "allGather");
}

void abort_job(int code) {
  // No lock: the point is to end a job whose collective may be stuck holding it.
  if (g_mpi && g_started) g_mpi->Abort(g_mpi->comm_world, code);
  std::_Exit(code);
}

void finalize() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_started || g_finalized) return;
  g_finalized = true;
  // After a timeout a request is still outstanding and MPI_Finalize would wait for it: leave MPI as it is.
  if (!g_broken.empty()) return;
  check(*g_mpi, g_mpi->Finalize(), "MPI_Finalize");
}

}  // namespace dist
}  // namespace amr
