// Context switch and stack pool for the sim scheduler (see sim_fiber.h).
#include "sim_fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>

namespace amr {
namespace sim {
namespace fiber {

namespace {
const std::size_t kPage = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

#if AMR_SIM_FIBER_ASM

// System V x86-64: rbx, rbp, r12-r15 and rsp are callee-saved; everything else is already assumed
// clobbered by the compiler across this (opaque, naked) call. The saved context is just the stack
// pointer: the six registers and the return address are on the suspended stack.
extern "C" __attribute__((naked, noinline, used, visibility("hidden"))) void amr_sim_ctx_switch(void** /*save_sp*/, void* /*to_sp*/) {
  __asm__ __volatile__(
      "pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsi, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}

// First code a new fiber runs: make() put the argument in r12 and the entry in r13. The stack is
// re-aligned so that entry starts with rsp % 16 == 8, as after a normal call; rbp = 0 ends frame chains.
extern "C" __attribute__((naked, noinline, used, visibility("hidden"))) void amr_sim_ctx_start() {
  __asm__ __volatile__(
      "movq %r12, %rdi\n\t"
      "xorl %ebp, %ebp\n\t"
      "andq $-16, %rsp\n\t"
      "callq *%r13\n\t"
      "ud2\n\t");
}

void make(Context* ctx, void* stack_lo, std::size_t bytes, Entry entry, void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack_lo) + bytes) & ~static_cast<uintptr_t>(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                            // never used: start never returns
  *--sp = reinterpret_cast<void*>(&amr_sim_ctx_start);        // where the switch's ret goes
  *--sp = nullptr;                                            // rbp
  *--sp = nullptr;                                            // rbx
  *--sp = arg;                                                // r12
  *--sp = reinterpret_cast<void*>(entry);                     // r13
  *--sp = nullptr;                                            // r14
  *--sp = nullptr;                                            // r15
  ctx->sp = sp;
}

void swap(Context* from, Context* to) { amr_sim_ctx_switch(&from->sp, to->sp); }

#else  // ucontext fallback

namespace {
// makecontext passes int arguments only, so pointers travel as two 32-bit halves.
void trampoline(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
  const uintptr_t e = (static_cast<uintptr_t>(e_hi) << 32) | e_lo;
  const uintptr_t a = (static_cast<uintptr_t>(a_hi) << 32) | a_lo;
  reinterpret_cast<Entry>(e)(reinterpret_cast<void*>(a));
}
}  // namespace

void make(Context* ctx, void* stack_lo, std::size_t bytes, Entry entry, void* arg) {
  getcontext(&ctx->uc);
  ctx->uc.uc_stack.ss_sp = stack_lo;
  ctx->uc.uc_stack.ss_size = bytes;
  ctx->uc.uc_link = nullptr;
  const uint64_t e = reinterpret_cast<uintptr_t>(entry);
  const uint64_t a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&ctx->uc, reinterpret_cast<void (*)()>(&trampoline), 4, static_cast<unsigned>(e >> 32),
              static_cast<unsigned>(e), static_cast<unsigned>(a >> 32), static_cast<unsigned>(a));
}

void swap(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }

#endif

StackPool::~StackPool() {
  for (void* m : maps_) munmap(m, kPage + kStackBytes);
}

void* StackPool::stack(std::size_t i) {
  const std::size_t page = kPage;
  while (maps_.size() <= i) {
    void* m = mmap(nullptr, page + kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    if (mprotect(m, page, PROT_NONE) != 0) {
      munmap(m, page + kStackBytes);
      throw std::bad_alloc();
    }
    maps_.push_back(m);
  }
  return static_cast<unsigned char*>(maps_[i]) + page;
}

}  // namespace fiber
}  // namespace sim
}  // namespace amr
