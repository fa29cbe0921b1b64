// Per-op time of one backend's queued work, while asked for (ts/profile.ts): where a forward's time goes, by the
// name each binding queues its work under ("matmul", "attention backward", ...). On cpu and sim the time is the
// work's wall time on the queue thread; on cuda it is the time between two events recorded around the op's
// launches, read after the stream has drained, so profiling never synchronizes an op by itself.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace amr {

struct OpTime {
  std::string op;
  int64_t calls = 0;
  double ms = 0;
};

class OpProfile {
 public:
  void add(const char* op, double ms) {
    std::lock_guard<std::mutex> lock(mu_);
    OpTime& t = times_[op];
    t.calls += 1;
    t.ms += ms;
  }
  // The totals so far, by op name, and a fresh start.
  std::vector<OpTime> take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<OpTime> out;
    for (auto& [op, t] : times_) out.push_back(OpTime{op, t.calls, t.ms});
    times_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, OpTime> times_;
};

}  // namespace amr
