#include "host_queue.h"

#include <cstdlib>

#include "cancel.h"

namespace amr {

namespace {
thread_local const std::atomic<bool>* t_cancel = nullptr;

size_t initial_capacity() {
  if (const char* s = std::getenv("AM_RADIO_QUEUE_DEPTH")) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (end && *end == '\0' && v > 0) return static_cast<size_t>(v);
  }
  return 1024;
}
std::atomic<size_t> g_capacity{initial_capacity()};
}  // namespace

const std::atomic<bool>* current_cancel_flag() { return t_cancel; }
void set_current_cancel_flag(const std::atomic<bool>* flag) { t_cancel = flag; }

void HostQueue::set_capacity(size_t n) { g_capacity.store(n > 0 ? n : 1); }
size_t HostQueue::capacity() { return g_capacity.load(); }

HostQueue::HostQueue(std::string name) : name_(std::move(name)), worker_([this] { run(); }) {}

HostQueue::~HostQueue() { shutdown(); }

void HostQueue::push(Task task) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    space_cv_.wait(lock, [this] { return stop_ || tasks_.size() < g_capacity.load(); });
    if (stop_) throw Error("backend " + name_ + " was shut down (its environment is exiting); no more work can be queued");
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void HostQueue::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return tasks_.empty() && !busy_; });
}

void HostQueue::shutdown() {
  std::deque<Task> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    stopped_ = true;
    cancel_ = true;
    dropped.swap(tasks_);
  }
  cv_.notify_all();
  space_cv_.notify_all();
  dropped.clear();  // releases captured storages and breaks pending reads' promises, outside the lock
  {
    std::lock_guard<std::mutex> lock(join_mu_);  // two shutdowns at once (exit and env cleanup) join once
    if (worker_.joinable()) {
      // The last reference to a backend can only drop on its own worker after the environment let go of it;
      // joining itself would throw, and the worker exits right after this task anyway.
      if (worker_.get_id() == std::this_thread::get_id()) worker_.detach();
      else worker_.join();
    }
  }
  idle_cv_.notify_all();
}

void HostQueue::run() {
  set_current_cancel_flag(&cancel_);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
    if (stop_) break;  // shutdown dropped whatever was left
    Task task = std::move(tasks_.front());
    tasks_.pop_front();
    busy_ = true;
    lock.unlock();
    space_cv_.notify_one();
    task();          // tasks catch their own exceptions (Backend::enqueue wraps them)
    task = nullptr;  // drop captured storages before reporting idle
    lock.lock();
    busy_ = false;
    if (tasks_.empty()) idle_cv_.notify_all();
  }
  busy_ = false;
  idle_cv_.notify_all();
}

}  // namespace amr
