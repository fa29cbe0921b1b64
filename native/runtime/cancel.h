// Cooperative cancellation of the work a backend queue is running. A queue that shuts down (its environment
// is torn down, or the process exits) raises its flag; long-running work calls throw_if_cancelled() at safe
// points (between parallel chunks, between emulated blocks) so shutdown waits for one chunk, not one op.
#pragma once
#include <atomic>

#include "common.h"

namespace amr {

// Thrown at a cancellation point; the queue drops the task's result and records nothing.
struct Cancelled : Error {
  Cancelled() : Error("cancelled: the backend was shut down") {}
};

// The flag of the queue whose worker is the calling thread (nullptr on any other thread). parallel_for hands it
// to its chunks, which run on pool threads.
const std::atomic<bool>* current_cancel_flag();
void set_current_cancel_flag(const std::atomic<bool>* flag);

inline void throw_if_cancelled(const std::atomic<bool>* flag) {
  if (flag && flag->load(std::memory_order_relaxed)) throw Cancelled();
}
inline void throw_if_cancelled() { throw_if_cancelled(current_cancel_flag()); }

}  // namespace amr
