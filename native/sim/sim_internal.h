// Scheduler state shared by the sim runtime's .cpp files (not part of the kernel-facing API).
#pragma once

#include <cstdint>
#include <vector>

// amr::KernelError; pulls in sim_cuda.h through kernel.cuh (the build compiles this directory's sources with the
// sim implementation of the device API, native/sim/device/, on the include path).
#include "../runtime/launch.cuh"
#include "sim_fiber.h"

namespace amr {
namespace sim {
namespace detail {

// One cp.async copy waiting for its group's wait: the source bytes are read at issue, the destination
// is written only when a cp_async_wait covers the group (or the thread exits).
struct CpAsyncCopy {
  unsigned char* dst;
  uint32_t group;
  unsigned char data[16];
};

// One CUDA thread of the running block.
struct Fiber {
  enum State : uint8_t { kReady, kBarrier, kWarp, kDone };

  fiber::Context ctx;
  uint3 tid;
  unsigned warp = 0, lane = 0;
  State state = kDone;
  // cp.async groups: copies[head..] are pending; `open_group` is the id the next copy gets.
  std::vector<CpAsyncCopy> copies;
  std::size_t copies_head = 0;
  uint32_t open_group = 0;
};

Fiber* current_fiber();               // the running thread, or nullptr outside a launch
void cp_async_flush(Fiber* f);        // applies all of f's pending copies (thread exit)

}  // namespace detail
}  // namespace sim
}  // namespace amr
