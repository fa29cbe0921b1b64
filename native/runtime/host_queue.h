// The ordered work queue of a host-memory backend (cpu, sim): one worker thread runs queued work in order,
// so ops return to JS at once and the event loop keeps ticking while they run.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace amr {

class HostQueue {
 public:
  using Task = std::function<void()>;
  HostQueue();
  ~HostQueue();
  void push(Task task);
  void drain();  // blocks until every task pushed before the call has run

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Task> tasks_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace amr
