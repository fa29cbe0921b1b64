// Pointwise activations: argument checks, then the work is queued on the tensors' backend.
#include "../native/activation/activation.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

activation::Kind kind_arg(const Napi::CallbackInfo& info, const char* op) {
  const std::string k = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (k == "gelu") return activation::Kind::Gelu;
  if (k == "relu") return activation::Kind::Relu;
  if (k == "silu") return activation::Kind::Silu;
  if (k == "sigmoid") return activation::Kind::Sigmoid;
  throw Error(std::string(op) + ": unknown activation '" + k + "' (expected gelu, relu, silu or sigmoid)");
}

// The op names are string literals: the backend keeps the pointer to name a failure reported later.
const char* kind_name(activation::Kind k, bool backward) {
  switch (k) {
    case activation::Kind::Gelu: return backward ? "gelu backward" : "gelu";
    case activation::Kind::Relu: return backward ? "relu backward" : "relu";
    case activation::Kind::Silu: return backward ? "silu backward" : "silu";
    default: return backward ? "sigmoid backward" : "sigmoid";
  }
}

// activationForward(kind ('gelu' | 'relu' | 'silu' | 'sigmoid'), y, x, n, dtype)
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const activation::Kind k = kind_arg(info, "activation");
    const char* op = kind_name(k, false);
    StoragePtr y = buffer_arg(info, 1, op), x = buffer_arg(info, 2, op);
    const int64_t n = int_arg(info, 3, op);
    const DType dt = dtype_arg(info, 4, op);
    for (const StoragePtr& s : {y, x}) require_elements(s, n, dt, op, "a tensor");
    Backend& be = common_backend({y, x}, op);
    be.enqueue(op, [&be, k, y, x, n, dt] { AMR_DISPATCH(be, activation, forward, k, y->ptr, x->ptr, n, dt); });
    return info.Env().Undefined();
  });
}

// activationBackward(kind ('gelu' | 'relu' | 'silu' | 'sigmoid'), dx, dy, x, n, dtype)
Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const activation::Kind k = kind_arg(info, "activation backward");
    const char* op = kind_name(k, true);
    StoragePtr dx = buffer_arg(info, 1, op), dy = buffer_arg(info, 2, op), x = buffer_arg(info, 3, op);
    const int64_t n = int_arg(info, 4, op);
    const DType dt = dtype_arg(info, 5, op);
    for (const StoragePtr& s : {dx, dy, x}) require_elements(s, n, dt, op, "a tensor");
    Backend& be = common_backend({dx, dy, x}, op);
    be.enqueue(op, [&be, k, dx, dy, x, n, dt] {
      AMR_DISPATCH(be, activation, backward, k, dx->ptr, dy->ptr, x->ptr, n, dt);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_activation_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("activationForward", Napi::Function::New(env, ActivationForward));
  exports.Set("activationBackward", Napi::Function::New(env, ActivationBackward));
}

}  // namespace bindings
}  // namespace amr
