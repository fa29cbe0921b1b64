// Entry points of the emulator's rule checks (rule_checks.cpp), run by test/sim.test.ts through the bindings.
#pragma once
#include <cstdint>
#include <string>

namespace amr {
namespace sim {
namespace dev {

// Bytes of output the named rule-check kernel writes, or -1 for an unknown name.
int64_t kernel_output_bytes(const std::string& name);
// Runs the named kernel on the calling thread (inside queued sim work).
void run_kernel(const std::string& name, void* out);
// Two OS threads launching block sums at once: launches must serialize and both results be right.
void concurrent_launches(const float* x, int n, float* sums1, float* sums2);

}  // namespace dev
}  // namespace sim
}  // namespace amr
