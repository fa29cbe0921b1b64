// The ordered work queue of a host-memory backend (cpu, sim): one worker thread runs queued work in order,
// so ops return to JS at once and the event loop keeps ticking while they run.
//
// Bounded: push() blocks the caller while `capacity` tasks are waiting, so a script that queues thousands of
// steps without reading anything back holds a bounded amount of memory (each task keeps its tensors alive)
// instead of growing without limit. The worker never pushes to its own queue, so a full queue always drains.
//
// shutdown() is how the queue ends, before any static state goes away: queued tasks are dropped (their
// captures released, pending reads broken), the running one is asked to stop at its next cancellation point,
// and the worker is joined. push() after shutdown throws.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace amr {

class HostQueue {
 public:
  using Task = std::function<void()>;
  explicit HostQueue(std::string name);
  ~HostQueue();
  void push(Task task);
  void drain();     // blocks until every task pushed before the call has run (or was dropped by shutdown)
  void shutdown();  // idempotent; safe from any thread but the worker itself
  bool stopped() const { return stopped_.load(); }

  // Tasks that may wait in a queue before push() blocks; applies to every host queue. Default 1024, or the
  // environment variable AM_RADIO_QUEUE_DEPTH.
  static void set_capacity(size_t n);
  static size_t capacity();

 private:
  void run();
  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;        // work arrived, or stop
  std::condition_variable idle_cv_;   // queue emptied
  std::condition_variable space_cv_;  // a slot freed, or stop
  std::deque<Task> tasks_;
  bool busy_ = false;
  bool stop_ = false;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> cancel_{false};
  std::mutex join_mu_;
  std::thread worker_;
};

}  // namespace amr
