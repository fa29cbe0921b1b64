// Fibers for the sim scheduler: a context switch and a pool of stacks.
//
// On x86-64 the switch is a few instructions of hand-written assembly (push the callee-saved registers,
// swap stack pointers, pop). ucontext's swapcontext would do the same but also makes a sigprocmask
// system call per switch, which made it several times slower; it stays as the portable fallback (other
// CPUs, or AMR_SIM_UCONTEXT defined to test it). The floating-point control state (MXCSR, x87 control
// word) is not switched: all fibers run with the caller's.
#pragma once

#include <cstddef>
#include <vector>

#if defined(__x86_64__) && !defined(AMR_SIM_UCONTEXT)
#define AMR_SIM_FIBER_ASM 1
#else
#define AMR_SIM_FIBER_ASM 0
#include <ucontext.h>
#endif

namespace amr {
namespace sim {
namespace fiber {

struct Context {
#if AMR_SIM_FIBER_ASM
  void* sp = nullptr;  // saved stack pointer; the callee-saved registers sit on that stack
#else
  ucontext_t uc;
#endif
};

using Entry = void (*)(void*);

// Prepares ctx so that switching to it runs entry(arg) on [stack_lo, stack_lo + bytes).
// entry must never return: it ends by switching away for good.
void make(Context* ctx, void* stack_lo, std::size_t bytes, Entry entry, void* arg);

// Saves the running context into *from and continues *to.
void swap(Context* from, Context* to);

// Fiber stacks, mapped lazily and kept for reuse across blocks and launches. Each has an inaccessible
// guard page below it, so an overflow faults instead of silently corrupting the neighbouring stack.
class StackPool {
 public:
  static constexpr std::size_t kStackBytes = 256 * 1024;  // virtual; only touched pages cost memory
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();
  void* stack(std::size_t i);  // lowest usable address of stack i (throws std::bad_alloc if mmap fails)

 private:
  std::vector<void*> maps_;  // each map: guard page + kStackBytes
};

}  // namespace fiber
}  // namespace sim
}  // namespace amr
