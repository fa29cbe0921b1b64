#include <napi.h>

#include "buffer.h"
#include "modules.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  amr::bindings::NativeBuffer::Init(env, exports);
  amr::bindings::init_io(env, exports);
  amr::bindings::init_core_ops(env, exports);
  amr::bindings::init_norm_ops(env, exports);
  amr::bindings::init_gemm_ops(env, exports);
  amr::bindings::init_optim_ops(env, exports);
  amr::bindings::init_loss_ops(env, exports);
  amr::bindings::init_selftest_ops(env, exports);
  amr::bindings::init_interpolate_ops(env, exports);
  amr::bindings::init_attention_ops(env, exports);
  amr::bindings::init_tokens_ops(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(am_radio, Init)
