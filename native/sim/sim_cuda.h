// The sim backend's stand-in for the CUDA builtins, so that a .cu file compiles as plain C++ and runs on
// the CPU (the sim build's side of native/runtime/kernel.cuh, through native/sim/device/amr_device_kernel.h; never
// include it directly).
//
// Execution model (native/sim/sim_runtime.cpp): a launch runs its blocks one after another on the calling
// OS thread; every CUDA thread of a block is a fiber with its own stack. Fibers switch only at
// synchronization points (__syncthreads, warp collectives, mma/ldmatrix, __nanosleep), and between those
// the runnable fibers are taken in a seeded, shuffled order, so a missing barrier shows as a wrong answer.
// Launches are serialized process-wide (one mutex), which is what makes the plain globals below and the
// plain read-modify-write atomics correct.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "sim_types.h"

// ---------------------------------------------------------------------------------------------
// Qualifiers. Kernels are ordinary functions. A plain `__shared__` array is a function-local static: shared
// by the threads of a block because blocks run one at a time, but NOT poisoned: it keeps whatever the
// previous block or launch left, so reading it before writing goes unnoticed. Sim cannot find these
// arrays to poison them (a macro in front of the declaration never sees the name, and GCC 12 drops
// section attributes on statics in templates and rejects inline and non-inline functions sharing one
// section). Declare static shared memory with AMR_SHARED (below) to get it poisoned in every block, or
// use AMR_DYNAMIC_SMEM, which is also bounds-checked.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __grid_constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

namespace amr {
namespace sim {

// Seed of the shuffled thread order (default fixed; AMR_SIM_SEED in the environment overrides it at the
// first launch). Each launch derives its own stream from seed and a launch counter, which set_seed resets.
void set_seed(uint64_t seed);
uint64_t get_seed();

namespace detail {

// State of the fiber that is running now; written by the scheduler at every switch.
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;
extern unsigned char* g_dyn_smem;          // this launch's dynamic shared memory
extern std::size_t g_dyn_smem_bytes;
extern uint64_t g_block_epoch;             // increments for every block run (AMR_SHARED poisoning)

using BodyFn = void (*)(const void*);
void run_grid_impl(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, BodyFn fn, const void* body);
template <typename F>
void call_body(const void* body) { (*static_cast<const F*>(body))(); }

int syncthreads_count(int pred);           // block barrier; returns how many threads passed pred != 0
void yield();                              // let other runnable fibers go first (spin loops)
uint64_t shfl(unsigned mask, uint64_t value, int mode, unsigned arg, int width);
unsigned vote(unsigned mask, int pred, unsigned* participants);
void syncwarp(unsigned mask);

// A warp collective: each lane of `mask` arrives with its LaneIO (on its own stack); once every live lane
// named in mask has arrived with the same op and mask, the last one runs op over all of them and all
// continue. Exited lanes are left out (CUDA: "all non-exited threads named in mask").
struct LaneIO {
  uint64_t value;                          // shuffle / vote payload, replaced by the result
  int src;                                 // shuffle source lane, -1 = keep own value
  const void* in[3];                       // operand pointers (mma a, b, c; ldmatrix row address)
  void* out;                               // result pointer (mma d, ldmatrix registers)
};
using WarpOp = void (*)(LaneIO* const* lanes, unsigned participants);
void warp_collective(const char* what, unsigned mask, WarpOp op, LaneIO* io);

// Stop the running kernel with "kernel <name>: <what> (thread ..., block ...)".
[[noreturn]] void fail(const char* what);
[[noreturn]] void smem_out_of_bounds(std::ptrdiff_t offset, std::size_t elem_bytes, std::size_t bytes);

inline void compiler_barrier() { __asm__ __volatile__("" ::: "memory"); }

}  // namespace detail

// Runs `body` once for every thread of the grid (called by amr::launch).
template <typename F>
void run_grid(const char* name, dim3 grid, dim3 block, std::size_t dynamic_smem, const F& body) {
  detail::run_grid_impl(name, grid, block, dynamic_smem, &detail::call_body<F>, &body);
}

// Bounds-checked pointer into the launch's dynamic shared memory (what AMR_DYNAMIC_SMEM declares).
// Indexing, dereference and arithmetic keep the bounds; converting to T* (or &p[i]) gives a raw pointer,
// so keep these as `auto` to keep the checks.
template <typename T>
class SmemPtr {
 public:
  SmemPtr(unsigned char* base, std::size_t bytes, std::ptrdiff_t offset) : base_(base), bytes_(bytes), off_(offset) {}

  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  T& operator[](I i) const { return *at(off_ + static_cast<std::ptrdiff_t>(i) * static_cast<std::ptrdiff_t>(sizeof(T))); }
  T& operator*() const { return *at(off_); }
  T* operator->() const { return at(off_); }
  operator T*() const { return reinterpret_cast<T*>(base_ + off_); }

  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  SmemPtr operator+(I k) const { return SmemPtr(base_, bytes_, off_ + step(k)); }
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  friend SmemPtr operator+(I k, const SmemPtr& p) { return p + k; }
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  SmemPtr operator-(I k) const { return SmemPtr(base_, bytes_, off_ - step(k)); }
  std::ptrdiff_t operator-(const SmemPtr& o) const { return (off_ - o.off_) / static_cast<std::ptrdiff_t>(sizeof(T)); }
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  SmemPtr& operator+=(I k) { off_ += step(k); return *this; }
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  SmemPtr& operator-=(I k) { off_ -= step(k); return *this; }
  SmemPtr& operator++() { off_ += sizeof(T); return *this; }
  SmemPtr& operator--() { off_ -= sizeof(T); return *this; }
  SmemPtr operator++(int) { SmemPtr r = *this; off_ += sizeof(T); return r; }
  SmemPtr operator--(int) { SmemPtr r = *this; off_ -= sizeof(T); return r; }

 private:
  template <typename I>
  static std::ptrdiff_t step(I k) { return static_cast<std::ptrdiff_t>(k) * static_cast<std::ptrdiff_t>(sizeof(T)); }
  T* at(std::ptrdiff_t off) const {
    if (off < 0 || static_cast<std::size_t>(off) + sizeof(T) > bytes_) detail::smem_out_of_bounds(off, sizeof(T), bytes_);
    return reinterpret_cast<T*>(base_ + off);
  }
  unsigned char* base_;
  std::size_t bytes_;
  std::ptrdiff_t off_;  // in bytes
};

template <typename T>
inline SmemPtr<T> dynamic_smem() { return SmemPtr<T>(detail::g_dyn_smem, detail::g_dyn_smem_bytes, 0); }

namespace detail {
// AMR_SHARED's per-block poisoning: the first thread of a block to reach the declaration fills the array
// with 0xFF (NaN in f32/bf16/f16); later threads and later passes in the same block see the epoch.
inline void shared_block_init(void* p, std::size_t bytes, uint64_t* epoch) {
  if (*epoch != g_block_epoch) {
    std::memset(p, 0xFF, bytes);
    *epoch = g_block_epoch;
  }
}
}  // namespace detail
}  // namespace sim
}  // namespace amr

#define AMR_DYNAMIC_SMEM(T, name) ::amr::sim::SmemPtr<T> name = ::amr::sim::dynamic_smem<T>()

// Static shared memory that starts poisoned in every block: AMR_SHARED(float, tile, [32][33]);
// (nvcc form: __shared__ float tile[32][33]).
#define AMR_SHARED(T, name, dims)          \
  static T name dims;                      \
  static uint64_t amr_sim_epoch_##name;    \
  ::amr::sim::detail::shared_block_init(&(name), sizeof(name), &amr_sim_epoch_##name)

// ---------------------------------------------------------------------------------------------
// Thread coordinates of the running fiber (const references, as the builtins are read-only).
#define threadIdx (static_cast<const uint3&>(::amr::sim::detail::g_thread_idx))
#define blockIdx (static_cast<const uint3&>(::amr::sim::detail::g_block_idx))
#define blockDim (static_cast<const dim3&>(::amr::sim::detail::g_block_dim))
#define gridDim (static_cast<const dim3&>(::amr::sim::detail::g_grid_dim))
constexpr int warpSize = 32;

// Synchronization. The compiler barriers keep shared-memory accesses from moving across the switch.
inline void __syncthreads() {
  ::amr::sim::detail::compiler_barrier();
  ::amr::sim::detail::syncthreads_count(0);
  ::amr::sim::detail::compiler_barrier();
}
inline int __syncthreads_count(int pred) {
  ::amr::sim::detail::compiler_barrier();
  const int n = ::amr::sim::detail::syncthreads_count(pred);
  ::amr::sim::detail::compiler_barrier();
  return n;
}
inline int __syncthreads_and(int pred) {
  const int n = __syncthreads_count(pred);
  return n == static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) != 0; }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::amr::sim::detail::compiler_barrier();
  ::amr::sim::detail::syncwarp(mask);
  ::amr::sim::detail::compiler_barrier();
}
inline void __threadfence() { ::amr::sim::detail::compiler_barrier(); }
inline void __threadfence_block() { ::amr::sim::detail::compiler_barrier(); }
inline void __threadfence_system() { ::amr::sim::detail::compiler_barrier(); }
inline void __nanosleep(unsigned) {
  ::amr::sim::detail::compiler_barrier();
  ::amr::sim::detail::yield();
  ::amr::sim::detail::compiler_barrier();
}
[[noreturn]] inline void __trap() { ::amr::sim::detail::fail("__trap() executed"); }

// Warp shuffles (any trivially copyable type up to 8 bytes: int, unsigned, float, double, __half2, ...).
// Source-lane rules are shfl.sync's from the PTX ISA: only the low 5 bits of the lane/delta operand count;
// up/down/xor keep their own value when the source falls outside their width-sized segment (xor may read
// a lower segment); reading a lane that did not take part gives poison (all bits set).
namespace amr {
namespace sim {
namespace detail {
enum ShflMode { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3 };
template <typename T>
inline T shfl_typed(unsigned mask, T var, int mode, unsigned arg, int width) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of an unsupported type");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = shfl(mask, bits, mode, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace detail
}  // namespace sim
}  // namespace amr
template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  return ::amr::sim::detail::shfl_typed(mask, var, ::amr::sim::detail::kShflIdx, static_cast<unsigned>(src_lane), width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::amr::sim::detail::shfl_typed(mask, var, ::amr::sim::detail::kShflUp, delta, width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::amr::sim::detail::shfl_typed(mask, var, ::amr::sim::detail::kShflDown, delta, width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  return ::amr::sim::detail::shfl_typed(mask, var, ::amr::sim::detail::kShflXor, static_cast<unsigned>(lane_mask), width);
}

// Votes over the live lanes named in mask.
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::amr::sim::detail::vote(mask, pred, nullptr); }
inline int __any_sync(unsigned mask, int pred) { return ::amr::sim::detail::vote(mask, pred, nullptr) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  unsigned participants = 0;
  const unsigned ballot = ::amr::sim::detail::vote(mask, pred, &participants);
  return ballot == participants;
}

// ---------------------------------------------------------------------------------------------
// Atomics: fibers never switch inside these, so a plain read-modify-write is atomic. Each returns the old
// value, as CUDA's do.
#define AMR_SIM_ATOMIC(NAME, T, EXPR)   \
  inline T NAME(T* address, T val) {    \
    const T old = *address;             \
    *address = (EXPR);                  \
    return old;                         \
  }
AMR_SIM_ATOMIC(atomicAdd, int, old + val)
AMR_SIM_ATOMIC(atomicAdd, unsigned int, old + val)
AMR_SIM_ATOMIC(atomicAdd, unsigned long long, old + val)
AMR_SIM_ATOMIC(atomicAdd, float, old + val)
AMR_SIM_ATOMIC(atomicAdd, double, old + val)
AMR_SIM_ATOMIC(atomicSub, int, old - val)
AMR_SIM_ATOMIC(atomicSub, unsigned int, old - val)
AMR_SIM_ATOMIC(atomicExch, int, val)
AMR_SIM_ATOMIC(atomicExch, unsigned int, val)
AMR_SIM_ATOMIC(atomicExch, unsigned long long, val)
AMR_SIM_ATOMIC(atomicExch, float, val)
AMR_SIM_ATOMIC(atomicMax, int, old > val ? old : val)
AMR_SIM_ATOMIC(atomicMax, unsigned int, old > val ? old : val)
AMR_SIM_ATOMIC(atomicMax, long long, old > val ? old : val)
AMR_SIM_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
AMR_SIM_ATOMIC(atomicMin, int, old < val ? old : val)
AMR_SIM_ATOMIC(atomicMin, unsigned int, old < val ? old : val)
AMR_SIM_ATOMIC(atomicMin, long long, old < val ? old : val)
AMR_SIM_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
AMR_SIM_ATOMIC(atomicAnd, int, old & val)
AMR_SIM_ATOMIC(atomicAnd, unsigned int, old & val)
AMR_SIM_ATOMIC(atomicAnd, unsigned long long, old & val)
AMR_SIM_ATOMIC(atomicOr, int, old | val)
AMR_SIM_ATOMIC(atomicOr, unsigned int, old | val)
AMR_SIM_ATOMIC(atomicOr, unsigned long long, old | val)
AMR_SIM_ATOMIC(atomicXor, int, old ^ val)
AMR_SIM_ATOMIC(atomicXor, unsigned int, old ^ val)
AMR_SIM_ATOMIC(atomicXor, unsigned long long, old ^ val)
AMR_SIM_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
AMR_SIM_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef AMR_SIM_ATOMIC
#define AMR_SIM_ATOMIC_CAS(T)                               \
  inline T atomicCAS(T* address, T compare, T val) {        \
    const T old = *address;                                 \
    if (old == compare) *address = val;                     \
    return old;                                             \
  }
AMR_SIM_ATOMIC_CAS(int)
AMR_SIM_ATOMIC_CAS(unsigned int)
AMR_SIM_ATOMIC_CAS(unsigned long long)
AMR_SIM_ATOMIC_CAS(unsigned short)
#undef AMR_SIM_ATOMIC_CAS
