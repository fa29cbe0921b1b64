// The MPI backend of native/dist: the library is opened at run time with a table of the few entry points used.
// MPI's C ABI differs between the two families of implementations, so the library's family is recognised first:
//  - Open MPI: MPI_Comm, MPI_Datatype, MPI_Op and MPI_Request are pointers, and the predefined handles are the
//    addresses of the structs it exports (MPI_COMM_WORLD is &ompi_mpi_comm_world, and so on), which is what its
//    mpi.h macros expand to.
//  - MPICH and the implementations that keep its ABI (Intel MPI, MVAPICH): those handles are ints, and the
//    predefined ones are constants of its mpi.h (below, copied from MPICH 4.0's).
#include "dist.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "../runtime/cancel.h"
#include "../runtime/common.h"

namespace amr {
namespace dist {
namespace {

constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED (the same value in every implementation)
const char* const kInstall =
    "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or MPICH (apt-get install mpich)";

// The entry points whose signatures hold handles, for one ABI: H is the handle type (MPI_Comm, MPI_Datatype, MPI_Op
// and MPI_Request alike), void* for Open MPI, int for MPICH.
template <typename H>
struct Table {
  using Handle = H;
  int (*Comm_rank)(H, int*) = nullptr;
  int (*Comm_size)(H, int*) = nullptr;
  // The non-blocking forms of MPI_Allreduce, MPI_Bcast, MPI_Barrier and MPI_Allgather (MPI-3), polled by MPI_Test
  // so that a wait can be cancelled or timed out; a blocking call could only end with the process.
  int (*Iallreduce)(const void*, void*, int, H, H, H, H*) = nullptr;
  int (*Ibcast)(void*, int, H, int, H, H*) = nullptr;
  int (*Ibarrier)(H, H*) = nullptr;
  int (*Iallgather)(const void*, int, H, void*, int, H, H, H*) = nullptr;
  int (*Test)(H*, int*, void*) = nullptr;  // the status argument is always MPI_STATUS_IGNORE: its layout is never read
  int (*Abort)(H, int) = nullptr;
  H comm_world{}, f32{}, byte{}, op_sum{};
  void* in_place = nullptr;
  void* status_ignore = nullptr;
};

// MPICH's mpi.h (/usr/include/x86_64-linux-gnu/mpich/mpi.h of Debian's libmpich-dev 4.0.2); the same values in
// Intel MPI's and MVAPICH's, which keep MPICH's ABI.
constexpr int kMpichCommWorld = 0x44000000;    // MPI_COMM_WORLD ((MPI_Comm)0x44000000)
constexpr int kMpichFloat = 0x4c00040a;        // MPI_FLOAT ((MPI_Datatype)0x4c00040a)
constexpr int kMpichByte = 0x4c00010d;         // MPI_BYTE ((MPI_Datatype)0x4c00010d)
constexpr int kMpichSum = 0x58000003;          // MPI_SUM (MPI_Op)(0x58000003)
void* const kMpichInPlace = reinterpret_cast<void*>(-1);       // MPI_IN_PLACE (void *) -1
void* const kMpichStatusIgnore = reinterpret_cast<void*>(1);  // MPI_STATUS_IGNORE (MPI_Status *)1

enum class Abi { kOpenMpi, kMpich };

struct Mpi {
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Initialized)(int*) = nullptr;
  int (*Finalized)(int*) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Error_string)(int, char*, int*) = nullptr;
  int (*Get_library_version)(char*, int*) = nullptr;
  Abi abi = Abi::kOpenMpi;
  Table<void*> ompi;
  Table<int> mpich;
  std::string library;
};

// Runs f with the table of the library's ABI.
template <typename F>
decltype(auto) with_table(const Mpi& m, F&& f) {
  return m.abi == Abi::kMpich ? f(m.mpich) : f(m.ompi);
}

std::mutex g_mu;  // MPI_THREAD_SERIALIZED: one MPI call at a time in the process
Mpi* g_mpi = nullptr;  // never freed: a queue thread may still be in a collective while exit() runs
bool g_started = false, g_finalized = false;
std::string g_broken;  // set when a collective timed out: the job's state is unknown from then on
InitResult g_result{};
double g_timeout = 300;

// MPI_Get_library_version's text (callable before MPI_Init), whole; "" when the library has none.
std::string library_version(const Mpi& m) {
  if (!m.Get_library_version) return "";
  std::vector<char> buf(8192);  // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI, 8192 in MPICH
  int len = 0;
  if (m.Get_library_version(buf.data(), &len) != 0) return "";
  return std::string(buf.data(), static_cast<size_t>(std::max(0, std::min(len, 8191))));
}

std::string version_of(const Mpi& m) {
  const std::string s = library_version(m);
  const size_t nl = s.find_first_of("\r\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

template <typename F>
bool sym(void* h, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(dlsym(h, name));
  if (!out) missing += std::string(missing.empty() ? "" : ", ") + name;
  return out != nullptr;
}

// The libraries to try, in order: AM_RADIO_MPI_LIBRARY alone when set; else the launcher's family first (MPICH's
// hydra sets PMI_RANK / PMI_SIZE and none of Open MPI's OMPI_* variables), so that a machine with both
// installations opens the library of the mpiexec that started it. libmpi.so.12 is Intel MPI's (MPICH's ABI).
std::vector<std::string> library_names() {
  if (const char* own = std::getenv("AM_RADIO_MPI_LIBRARY"); own && *own) return {own};
  auto set = [](const char* v) { const char* x = std::getenv(v); return x && *x; };
  const bool hydra = (set("PMI_RANK") || set("PMI_SIZE")) && !set("OMPI_COMM_WORLD_SIZE") && !set("OMPI_COMM_WORLD_RANK");
  if (hydra) return {"libmpich.so.12", "libmpi.so.12", "libmpi.so.40", "libmpi.so"};
  return {"libmpi.so.40", "libmpi.so", "libmpich.so.12", "libmpi.so.12"};
}

// The entry points a table needs, by name; missing ones are added to `missing`.
template <typename H>
void resolve(void* h, Table<H>& t, std::string& missing) {
  sym(h, "MPI_Comm_rank", t.Comm_rank, missing);
  sym(h, "MPI_Comm_size", t.Comm_size, missing);
  sym(h, "MPI_Iallreduce", t.Iallreduce, missing);
  sym(h, "MPI_Ibcast", t.Ibcast, missing);
  sym(h, "MPI_Ibarrier", t.Ibarrier, missing);
  sym(h, "MPI_Iallgather", t.Iallgather, missing);
  sym(h, "MPI_Test", t.Test, missing);
  sym(h, "MPI_Abort", t.Abort, missing);
}

// Which ABI the opened library has: Open MPI exports its predefined handles' structs; MPICH's family does not
// (its handles are constants) and says its name in MPI_Get_library_version. false: neither.
bool recognise(void* h, const Mpi& m, Abi& abi) {
  if (dlsym(h, "ompi_mpi_comm_world")) {
    abi = Abi::kOpenMpi;
    return true;
  }
  const std::string v = library_version(m);
  for (const char* family : {"MPICH", "Intel(R) MPI", "MVAPICH"})
    if (v.find(family) != std::string::npos) {
      abi = Abi::kMpich;
      return true;
    }
  return false;
}

// Opens the first library that loads and has a known ABI; throws naming every file tried and why each failed.
Mpi* open_library() {
  const std::vector<std::string> names = library_names();
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
    if (!recognise(h, *m, m->abi)) {
      const std::string v = version_of(*m);
      tried += std::string(tried.empty() ? "" : "; ") + name + " is neither Open MPI nor of MPICH's ABI (" +
               (v.empty() ? "an unknown MPI" : v) + "); only those two ABIs are supported";
      delete m;
      continue;
    }
    sym(h, "MPI_Init_thread", m->Init_thread, missing);
    sym(h, "MPI_Initialized", m->Initialized, missing);
    sym(h, "MPI_Finalized", m->Finalized, missing);
    sym(h, "MPI_Finalize", m->Finalize, missing);
    sym(h, "MPI_Error_string", m->Error_string, missing);
    if (m->abi == Abi::kOpenMpi) {
      resolve(h, m->ompi, missing);
      auto handle = [&](const char* n) {
        void* p = dlsym(h, n);
        if (!p) missing += std::string(missing.empty() ? "" : ", ") + n;
        return p;
      };
      m->ompi.comm_world = handle("ompi_mpi_comm_world");
      m->ompi.f32 = handle("ompi_mpi_float");
      m->ompi.byte = handle("ompi_mpi_byte");
      m->ompi.op_sum = handle("ompi_mpi_op_sum");
      m->ompi.in_place = reinterpret_cast<void*>(1);  // Open MPI's MPI_IN_PLACE ((void *) 1)
      m->ompi.status_ignore = nullptr;                // Open MPI's MPI_STATUS_IGNORE ((MPI_Status *) 0)
    } else {
      resolve(h, m->mpich, missing);
      m->mpich.comm_world = kMpichCommWorld;
      m->mpich.f32 = kMpichFloat;
      m->mpich.byte = kMpichByte;
      m->mpich.op_sum = kMpichSum;
      m->mpich.in_place = kMpichInPlace;
      m->mpich.status_ignore = kMpichStatusIgnore;
    }
    if (!missing.empty()) {
      tried += std::string(tried.empty() ? "" : "; ") + name + " lacks " + missing +
               (m->abi == Abi::kOpenMpi ? " (an Open MPI older than 3.0?)" : " (an MPI older than MPI-3?)");
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
template <typename T>
void wait(const Mpi& m, const T& t, typename T::Handle* req, const char* op) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::atomic<bool>* cancel = current_cancel_flag();
  for (long spin = 0;; ++spin) {
    int done = 0;
    check(m, t.Test(req, &done, t.status_ignore), op);
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
  with_table(m, [&](const auto& t) {
    check(m, t.Comm_rank(t.comm_world, &r.rank), "MPI_Comm_rank");
    check(m, t.Comm_size(t.comm_world, &r.size), "MPI_Comm_size");
  });
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
    with_table(m, [&](const auto& t) {
      typename std::decay_t<decltype(t)>::Handle req{};
      check(m, t.Iallreduce(t.in_place, data + at, count, t.f32, t.op_sum, t.comm_world, &req), "MPI_Iallreduce");
      wait(m, t, &req, "allReduce");
    });
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
    with_table(m, [&](const auto& t) {
      typename std::decay_t<decltype(t)>::Handle req{};
      check(m, t.Ibcast(static_cast<char*>(data) + at, count, t.byte, root, t.comm_world, &req), "MPI_Ibcast");
      wait(m, t, &req, "broadcast");
    });
  }
}

void barrier() {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("barrier");
  with_table(m, [&](const auto& t) {
    typename std::decay_t<decltype(t)>::Handle req{};
    check(m, t.Ibarrier(t.comm_world, &req), "MPI_Ibarrier");
    wait(m, t, &req, "barrier");
  });
}

void allgather(const void* in, void* out, int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  const Mpi& m = usable("allGather");
  if (bytes > kChunk) throw Error("allGather: " + std::to_string(bytes) + " bytes per rank is more than 2^30");
  const int count = static_cast<int>(bytes);
  with_table(m, [&](const auto& t) {
    typename std::decay_t<decltype(t)>::Handle req{};
    check(m, t.Iallgather(in, count, t.byte, out, count, t.byte, t.comm_world, &req), "MPI_Iallgather");
    wait(m, t, &req, "allGather");
  });
}

void abort_job(int code) {
  // No lock: the point is to end a job whose collective may be stuck holding it.
  if (g_mpi && g_started) with_table(*g_mpi, [&](const auto& t) { t.Abort(t.comm_world, code); });
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
