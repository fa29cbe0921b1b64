// The sim scheduler: runs a CUDA grid on the calling OS thread, block after block, each CUDA thread of a
// block a fiber (sim_fiber.h). Fibers switch only at synchronization points, so everything between two
// of them runs as one piece; what makes missing barriers visible is the ORDER in which the runnable
// fibers are taken. At the start of a block and after every __syncthreads the block picks an order for
// the new phase, with equal chance:
//  - warps in ascending order, lanes of a warp in descending order. This catches the two most common
//    missing-barrier bugs every time: "warp 0 gathers what every warp wrote" (warp 0 runs first) and
//    "thread 0 writes a value all threads read" (the other lanes of warp 0 run before thread 0);
//  - a seeded shuffle of all threads, for everything else.
// Fibers released by a warp collective go to the FRONT of the run queue (in the phase's order), so a
// warp runs ahead to its next barrier before other warps move (depth first). Whatever the order, a
// thread reading a neighbour's write (t+1 or t-1, cyclic or not) without a barrier is caught, because
// some thread must run before the neighbour it reads.
//
// Barriers are strict: __syncthreads completes when every thread of the block has arrived, so a thread
// that exited (early return) makes the others wait forever, which is reported as an error naming the
// kernel and block. CUDA documents that as undefined; the strict rule keeps kernels portable.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "../runtime/cancel.h"
#include "sim_internal.h"

namespace amr {
namespace sim {
namespace detail {

uint3 g_thread_idx = {0, 0, 0};
uint3 g_block_idx = {0, 0, 0};
dim3 g_block_dim;
dim3 g_grid_dim;
unsigned char* g_dyn_smem = nullptr;
std::size_t g_dyn_smem_bytes = 0;
uint64_t g_block_epoch = 0;

namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr std::size_t kMaxDynamicSmem = 227 * 1024;  // the largest any supported GPU (sm_90) allows
constexpr unsigned kRing = 2048;                     // run-queue slots (power of two, > kMaxThreads)

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

enum Order { kWarpsUpLanesDown, kShuffled };

// Per warp, with each waiting lane's arrival (kept here, contiguous, rather than in the fibers: the
// completion check reads all 32 on every collective).
struct WarpState {
  unsigned live;     // lanes that exist and have not exited
  unsigned waiting;  // lanes blocked in a warp collective
  WarpOp op[32];
  unsigned mask[32];
  LaneIO* io[32];
  const char* what[32];
};

// All scheduler state. One instance; launches are serialized by `mutex`.
struct Scheduler {
  ~Scheduler() { std::free(dyn); }

  std::mutex mutex;
  std::atomic<std::thread::id> owner{};  // thread running a launch (to reject launches from kernels)
  uint64_t seed = 0x5EEDC0DE2024ull;
  bool seed_from_env_checked = false;
  uint64_t launch_counter = 0;

  // Current launch.
  const char* name = nullptr;
  BodyFn body_fn = nullptr;
  const void* body = nullptr;
  unsigned nthreads = 0;
  uint64_t rng = 0;
  Order order = kWarpsUpLanesDown;

  // Current block.
  std::vector<Fiber> fibers = std::vector<Fiber>(kMaxThreads);
  fiber::StackPool stacks;
  WarpState warps[kMaxThreads / 32] = {};
  Fiber* cur = nullptr;
  unsigned live = 0;
  unsigned bar_arrived = 0;
  int bar_count = 0, bar_result = 0;
  std::exception_ptr error;
  fiber::Context sched_ctx;  // the OS thread's own stack, where run_block waits
  fiber::Context dead_ctx;   // where exiting fibers save a context that is never resumed

  uint16_t ring[kRing];
  unsigned head = 0, tail = 0;

  unsigned char* dyn = nullptr;  // dynamic shared memory buffer (grown, never shrunk)
  std::size_t dyn_capacity = 0;
  unsigned order_buf[kMaxThreads];
};

// Never destroyed: a queue thread may be inside a launch while exit() runs static destructors.
Scheduler& g = *new Scheduler();

void push_front(unsigned i) { g.ring[--g.head & (kRing - 1)] = static_cast<uint16_t>(i); }
void push_back(unsigned i) { g.ring[g.tail++ & (kRing - 1)] = static_cast<uint16_t>(i); }
int pop() { return g.head == g.tail ? -1 : g.ring[g.head++ & (kRing - 1)]; }

void choose_order() { g.order = (splitmix64(g.rng) & 1u) ? kShuffled : kWarpsUpLanesDown; }

// Puts the fibers idx[0..n) (ascending thread index) at the front of the run queue, so that they run
// next, in the phase's order.
void release_front(unsigned* idx, unsigned n) {
  if (g.order == kShuffled) {
    for (unsigned i = n; i > 1; --i) std::swap(idx[i - 1], idx[splitmix64(g.rng) % i]);
    for (unsigned i = 0; i < n; ++i) push_front(idx[i]);
    return;
  }
  // Pushing to the front reverses: walk warps from the last one, lanes of each upwards.
  unsigned end = n;
  while (end > 0) {
    unsigned begin = end - 1;
    while (begin > 0 && idx[begin - 1] / 32 == idx[end - 1] / 32) --begin;
    for (unsigned i = begin; i < end; ++i) push_front(idx[i]);
    end = begin;
  }
}

void enter(Fiber* f) {
  g.cur = f;
  g_thread_idx = f->tid;
}

// The running fiber f stops (it waits, or is queued again); the next queued fiber runs, or control goes
// back to run_block when nothing can run. Returns when f is resumed.
void suspend(Fiber* f) {
  const int next = pop();
  if (next < 0) {
    fiber::swap(&f->ctx, &g.sched_ctx);
    return;
  }
  Fiber* n = &g.fibers[static_cast<unsigned>(next)];
  if (n == f) return;
  enter(n);
  fiber::swap(&f->ctx, &n->ctx);
}

// Completes the collective (op, mask) of warp w if every live lane it names waits in it.
bool try_complete(unsigned w, WarpOp op, unsigned mask) {
  WarpState& ws = g.warps[w];
  const unsigned need = mask & ws.live;
  if (need == 0 || (ws.waiting & need) != need) return false;
  LaneIO* lanes[32] = {};
  for (unsigned m = need; m; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
    if (ws.op[l] != op || ws.mask[l] != mask) return false;
    lanes[l] = ws.io[l];
  }
  op(lanes, need);
  ws.waiting &= ~need;
  Fiber* lane0 = &g.fibers[w * 32];
  unsigned idx[32];
  unsigned n = 0;
  for (unsigned m = need; m; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
    lane0[l].state = Fiber::kReady;
    idx[n++] = w * 32 + l;
  }
  release_front(idx, n);
  return true;
}

// A lane of warp w exited: collectives that waited only for it may now be complete.
void complete_after_exit(unsigned w) {
  bool progress = true;
  while (progress) {
    progress = false;
    const WarpState& ws = g.warps[w];
    for (unsigned m = ws.waiting; m && !progress; m &= m - 1) {
      const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
      progress = try_complete(w, ws.op[l], ws.mask[l]);
    }
  }
}

void fiber_main(void* arg) {
  Fiber* f = static_cast<Fiber*>(arg);
  try {
    g.body_fn(g.body);
  } catch (...) {
    if (!g.error) g.error = std::current_exception();
  }
  f->state = Fiber::kDone;
  --g.live;
  g.warps[f->warp].live &= ~(1u << f->lane);
  if (!g.error) {
    try {
      cp_async_flush(f);
      complete_after_exit(f->warp);
    } catch (...) {
      g.error = std::current_exception();
    }
  }
  // Switch away for good; on an error the whole block is abandoned at once.
  const int next = g.error ? -1 : pop();
  if (next < 0) {
    fiber::swap(&g.dead_ctx, &g.sched_ctx);
  } else {
    Fiber* n = &g.fibers[static_cast<unsigned>(next)];
    enter(n);
    fiber::swap(&g.dead_ctx, &n->ctx);
  }
  __builtin_unreachable();
}

std::string block_str() {
  char b[64];
  std::snprintf(b, sizeof b, "block (%u,%u,%u)", g_block_idx.x, g_block_idx.y, g_block_idx.z);
  return b;
}

// Nothing can run but some threads wait: say who waits where.
std::string diagnose_deadlock() {
  char b[512];
  if (g.bar_arrived > 0) {
    std::snprintf(b, sizeof b,
                  "__syncthreads not reached by all threads of %s: %u of %u threads wait there, %u exited, "
                  "%u wait in a warp collective",
                  block_str().c_str(), g.bar_arrived, g.nthreads, g.nthreads - g.live, g.live - g.bar_arrived);
    return b;
  }
  for (unsigned w = 0; w * 32 < g.nthreads; ++w) {
    const WarpState& ws = g.warps[w];
    for (unsigned mw = ws.waiting; mw; mw &= mw - 1) {
      const unsigned l = static_cast<unsigned>(__builtin_ctz(mw));
      for (unsigned m = ws.mask[l] & ws.live; m; m &= m - 1) {
        const unsigned o = static_cast<unsigned>(__builtin_ctz(m));
        if (((ws.waiting >> o) & 1u) && ws.op[o] == ws.op[l] && ws.mask[o] == ws.mask[l]) continue;
        std::snprintf(b, sizeof b,
                      "%s with mask 0x%08x not reached by all lanes of warp %u of %s: lane %u waits in %s with "
                      "mask 0x%08x",
                      ws.what[l], ws.mask[l], w, block_str().c_str(), o, ws.what[o], ws.mask[o]);
        return b;
      }
    }
  }
  return "threads of " + block_str() + " wait forever";
}

[[noreturn]] void rethrow_as_kernel_error(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const KernelError&) {
    throw;
  } catch (const std::exception& x) {
    throw KernelError(g.name, x.what());
  } catch (...) {
    throw KernelError(g.name, "unknown exception in kernel");
  }
}

void run_block(unsigned bx, unsigned by, unsigned bz) {
  g_block_idx = uint3{bx, by, bz};
  ++g_block_epoch;
  if (g_dyn_smem_bytes) std::memset(g_dyn_smem, 0xFF, g_dyn_smem_bytes);
  const unsigned n = g.nthreads, dx = g_block_dim.x, dxy = g_block_dim.x * g_block_dim.y;
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = g.fibers[i];
    f.tid = uint3{i % dx, (i % dxy) / dx, i / dxy};
    f.warp = i / 32;
    f.lane = i % 32;
    f.state = Fiber::kReady;
    f.copies.clear();
    f.copies_head = 0;
    f.open_group = 0;
    fiber::make(&f.ctx, g.stacks.stack(i), fiber::StackPool::kStackBytes, &fiber_main, &f);
  }
  for (unsigned w = 0; w * 32 < n; ++w) {
    const unsigned lanes = n - w * 32;
    g.warps[w].live = lanes >= 32 ? ~0u : (1u << lanes) - 1u;
    g.warps[w].waiting = 0;
  }
  g.live = n;
  g.bar_arrived = 0;
  g.bar_count = 0;
  g.head = g.tail = 0;
  choose_order();
  for (unsigned i = 0; i < n; ++i) g.order_buf[i] = i;
  release_front(g.order_buf, n);

  Fiber* first = &g.fibers[static_cast<unsigned>(pop())];
  enter(first);
  fiber::swap(&g.sched_ctx, &first->ctx);

  if (g.error) {
    std::exception_ptr e = g.error;
    g.error = nullptr;
    rethrow_as_kernel_error(e);
  }
  if (g.live > 0) throw KernelError(g.name, diagnose_deadlock());
}

uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    const uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

}  // namespace

Fiber* current_fiber() { return g.cur; }

void run_grid_impl(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, BodyFn fn, const void* body) {
  if (g.owner.load() == std::this_thread::get_id())
    throw KernelError(name, "launched from inside a running sim kernel (no dynamic parallelism)");
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64)
    throw KernelError(name, "invalid block size (at most 1024 threads, 1024 x 1024 x 64)");
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) throw KernelError(name, "invalid grid size");
  if (dynamic_smem > kMaxDynamicSmem)
    throw KernelError(name, "dynamic shared memory of " + std::to_string(dynamic_smem) + " bytes exceeds 227 KiB");

  std::lock_guard<std::mutex> lock(g.mutex);
  g.owner.store(std::this_thread::get_id());
  struct Reset {  // leaves the scheduler idle whether the launch finishes or throws
    ~Reset() {
      g.cur = nullptr;
      g.name = nullptr;
      g.body = nullptr;
      g.error = nullptr;
      g_dyn_smem = nullptr;
      g_dyn_smem_bytes = 0;
      g.owner.store(std::thread::id());
    }
  } reset;

  if (!g.seed_from_env_checked) {
    g.seed_from_env_checked = true;
    if (const char* s = std::getenv("AMR_SIM_SEED")) g.seed = std::strtoull(s, nullptr, 0);
  }
  g.name = name;
  g.body_fn = fn;
  g.body = body;
  g.nthreads = static_cast<unsigned>(threads);
  g_grid_dim = grid;
  g_block_dim = block;
  if (dynamic_smem > g.dyn_capacity) {
    std::free(g.dyn);
    g.dyn = static_cast<unsigned char*>(std::aligned_alloc(128, (dynamic_smem + 127) & ~std::size_t(127)));
    if (!g.dyn) {
      g.dyn_capacity = 0;
      throw std::bad_alloc();
    }
    g.dyn_capacity = dynamic_smem;
  }
  g_dyn_smem = dynamic_smem ? g.dyn : nullptr;
  g_dyn_smem_bytes = dynamic_smem;
  uint64_t s = g.seed ^ (0xD1B54A32D192ED03ull * ++g.launch_counter);
  g.rng = splitmix64(s);

  // Blocks in a seeded order too: start anywhere and step by a stride coprime with the block count, so
  // a kernel that depends on block order fails reproducibly.
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  const std::atomic<bool>* cancel = current_cancel_flag();  // a shutdown waits for one block, not a whole grid
  uint64_t pos = splitmix64(g.rng) % nblocks;
  uint64_t stride = 1 + splitmix64(g.rng) % nblocks;
  while (gcd(stride, nblocks) != 1) ++stride;
  for (uint64_t k = 0; k < nblocks; ++k, pos = (pos + stride) % nblocks) {
    const unsigned bx = static_cast<unsigned>(pos % grid.x);
    const unsigned by = static_cast<unsigned>((pos / grid.x) % grid.y);
    const unsigned bz = static_cast<unsigned>(pos / (uint64_t(grid.x) * grid.y));
    throw_if_cancelled(cancel);
    run_block(bx, by, bz);
  }
}

int syncthreads_count(int pred) {
  Fiber* f = g.cur;
  if (!f) fail("__syncthreads");
  f->state = Fiber::kBarrier;
  g.bar_count += pred != 0;
  if (++g.bar_arrived == g.nthreads) {
    g.bar_result = g.bar_count;
    g.bar_count = 0;
    g.bar_arrived = 0;
    choose_order();
    for (unsigned i = 0; i < g.nthreads; ++i) {
      g.fibers[i].state = Fiber::kReady;
      g.order_buf[i] = i;
    }
    release_front(g.order_buf, g.nthreads);
  }
  suspend(f);
  return g.bar_result;
}

void yield() {
  Fiber* f = g.cur;
  if (!f) fail("__nanosleep");
  push_back(static_cast<unsigned>(f - g.fibers.data()));
  suspend(f);
}

void warp_collective(const char* what, unsigned mask, WarpOp op, LaneIO* io) {
  Fiber* f = g.cur;
  if (!f) fail(what);
  if (!((mask >> f->lane) & 1u)) {
    char b[160];
    std::snprintf(b, sizeof b, "%s: mask 0x%08x does not include the calling lane %u", what, mask, f->lane);
    fail(b);
  }
  WarpState& ws = g.warps[f->warp];
  ws.op[f->lane] = op;
  ws.mask[f->lane] = mask;
  ws.what[f->lane] = what;
  ws.io[f->lane] = io;
  ws.waiting |= 1u << f->lane;
  f->state = Fiber::kWarp;
  try_complete(f->warp, op, mask);
  suspend(f);
}

[[noreturn]] void fail(const char* what) {
  if (!g.cur) throw std::logic_error(std::string("sim: ") + what + " used outside a kernel launch");
  char loc[96];
  std::snprintf(loc, sizeof loc, " (thread (%u,%u,%u) of ", g.cur->tid.x, g.cur->tid.y, g.cur->tid.z);
  throw KernelError(g.name, what + std::string(loc) + block_str() + ")");
}

[[noreturn]] void smem_out_of_bounds(std::ptrdiff_t offset, std::size_t elem_bytes, std::size_t bytes) {
  char b[160];
  std::snprintf(b, sizeof b, "dynamic shared memory access out of bounds: %zu bytes at byte offset %td of %zu",
                elem_bytes, offset, bytes);
  fail(b);
}

}  // namespace detail

void set_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(detail::g.mutex);
  detail::g.seed = seed;
  detail::g.seed_from_env_checked = true;  // an explicit seed wins over AMR_SIM_SEED
  detail::g.launch_counter = 0;
}

uint64_t get_seed() {
  std::lock_guard<std::mutex> lock(detail::g.mutex);
  return detail::g.seed;
}

}  // namespace sim
}  // namespace amr
