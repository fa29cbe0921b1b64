// The entry point of the shipped addon, am_radio.node. Kept apart from init_addon (addon.cpp) so that the test-only
// addon (test/native/selftest_addon.cpp) links the same compiled bindings under its own entry point.
#include <napi.h>

#include "modules.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) { return amr::bindings::init_addon(env, exports); }
}  // namespace

NODE_API_MODULE(am_radio, Init)
