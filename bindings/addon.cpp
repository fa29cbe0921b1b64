#include <dlfcn.h>
#include <napi.h>

#include <mutex>

#include "../native/runtime/host_queue.h"
#include "buffer.h"
#include "modules.h"

namespace {

// Node unloads an addon (dlclose) when the environment that loaded it ends, e.g. a worker_thread that was the
// only user. The thread pool and the emulator are process-wide and outlive any environment, so the code they
// run must stay mapped: reopen the addon once with RTLD_NODELETE, which makes every later dlclose a no-op.
void pin_addon_in_memory() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info self;
    if (dladdr(reinterpret_cast<void*>(&pin_addon_in_memory), &self) && self.dli_fname)
      dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

// Runs when the environment is torn down (end of the main script, worker exit or terminate()), before the
// environment's remaining objects are finalized: stop this environment's backends while everything they
// use is still alive.
void shutdown_environment(void* arg) { static_cast<amr::bindings::AddonData*>(arg)->backends->shutdown(); }

// shutdownEnvironment(): what the cleanup hook does, called from JS at process 'exit'. A worker that calls
// process.exit with a read pending would otherwise wait, before its cleanup hooks run, for that read, i.e.
// for every op queued ahead of it.
Napi::Value ShutdownEnvironment(const Napi::CallbackInfo& info) {
  amr::bindings::addon_data(info.Env()).backends->shutdown();
  return info.Env().Undefined();
}

// setQueueDepth(n) / queueDepth(): see amr::HostQueue::set_capacity.
Napi::Value SetQueueDepth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setQueueDepth: expected a number");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= 1e9 && n == static_cast<double>(static_cast<int64_t>(n))))
    throw Napi::RangeError::New(env, "setQueueDepth: depth must be an integer from 1 to 1e9, got " + info[0].ToString().Utf8Value());
  amr::HostQueue::set_capacity(static_cast<size_t>(n));
  return env.Undefined();
}

Napi::Value QueueDepth(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(amr::HostQueue::capacity()));
}

}  // namespace

namespace amr {
namespace bindings {

Napi::Object init_addon(Napi::Env env, Napi::Object exports) {
  pin_addon_in_memory();
  auto* data = new amr::bindings::AddonData();
  env.SetInstanceData<amr::bindings::AddonData>(data);  // deleted (after the cleanup hook) by the environment
  napi_add_env_cleanup_hook(env, shutdown_environment, data);
  amr::bindings::NativeBuffer::Init(env, exports);
  amr::bindings::init_io(env, exports);
  amr::bindings::init_elementwise_ops(env, exports);
  amr::bindings::init_reduce_ops(env, exports);
  amr::bindings::init_random_ops(env, exports);
  amr::bindings::init_norm_ops(env, exports);
  amr::bindings::init_batchnorm_ops(env, exports);
  amr::bindings::init_activation_ops(env, exports);
  amr::bindings::init_gemm_ops(env, exports);
  amr::bindings::init_optim_ops(env, exports);
  amr::bindings::init_loss_ops(env, exports);
  amr::bindings::init_sim_ops(env, exports);
  amr::bindings::init_interpolate_ops(env, exports);
  amr::bindings::init_attention_ops(env, exports);
  amr::bindings::init_tokens_ops(env, exports);
  amr::bindings::init_conv_ops(env, exports);
  amr::bindings::init_layout_ops(env, exports);
  amr::bindings::init_dist_ops(env, exports);
  amr::bindings::init_nccl_ops(env, exports);
  exports.Set("shutdownEnvironment", Napi::Function::New(env, ShutdownEnvironment));
  exports.Set("setQueueDepth", Napi::Function::New(env, SetQueueDepth));
  exports.Set("queueDepth", Napi::Function::New(env, QueueDepth));
  return exports;
}

}  // namespace bindings
}  // namespace amr
