// The entry point of the test-only addon am_radio_selftest.node: everything am_radio.node exports (the same compiled
// bindings) plus the emulator's self-tests, for test/sim.test.ts. Built when CMake configures with the self-tests on
// (`am-radio build --self-tests`, as npm test's pretest does); the shipped addon never contains them.
#include <napi.h>

#include "bindings/modules.h"

namespace amr {
namespace bindings {
void init_selftest_ops(Napi::Env env, Napi::Object exports);  // selftest_ops.cpp
}  // namespace bindings
}  // namespace amr

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  amr::bindings::init_addon(env, exports);
  amr::bindings::init_selftest_ops(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(am_radio_selftest, Init)
