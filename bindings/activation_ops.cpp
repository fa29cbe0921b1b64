// Pointwise activations: one options object per call read through args.h, then the work is queued on the
// tensors' backend.
#include "../native/activation/activation.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// The activation an options object names (Kind 1..6 in the order of the choices).
activation::Kind kind_of(const Fields& f) {
  return static_cast<activation::Kind>(
      1 + f.choice("kind", {"gelu", "relu", "silu", "sigmoid", "quickGelu", "geluTanh"}));
}

// The op names are string literals: the backend keeps the pointer to name a failure reported later.
const char* kind_name(activation::Kind k, bool backward) {
  switch (k) {
    case activation::Kind::Gelu: return backward ? "gelu backward" : "gelu";
    case activation::Kind::Relu: return backward ? "relu backward" : "relu";
    case activation::Kind::Silu: return backward ? "silu backward" : "silu";
    case activation::Kind::QuickGelu: return backward ? "quickGelu backward" : "quickGelu";
    case activation::Kind::GeluTanh: return backward ? "geluTanh backward" : "geluTanh";
    default: return backward ? "sigmoid backward" : "sigmoid";
  }
}

// activationForward({ kind: 'gelu' | 'relu' | 'silu' | 'sigmoid' | 'quickGelu' | 'geluTanh', y, x, n, dtype })
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const activation::Kind k = kind_of(Fields::of(info, 0, "activation"));
    const char* op = kind_name(k, false);
    const Fields f = Fields::of(info, 0, op);
    StoragePtr y = f.buffer("y"), x = f.buffer("x");
    const int64_t n = f.int64("n", 1);
    const DType dt = f.dtype("dtype");
    for (const StoragePtr& s : {y, x}) require_elements(s, n, dt, op, "a tensor");
    Backend& be = common_backend({y, x}, op);
    be.enqueue(op, [&be, k, y, x, n, dt] { AMR_DISPATCH(be, activation, forward, k, y->ptr, x->ptr, n, dt); });
    return info.Env().Undefined();
  });
}

// activationBackward({ kind, dx, dy, x, n, dtype }): dx = dy · f'(x)
Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const activation::Kind k = kind_of(Fields::of(info, 0, "activation backward"));
    const char* op = kind_name(k, true);
    const Fields f = Fields::of(info, 0, op);
    StoragePtr dx = f.buffer("dx"), dy = f.buffer("dy"), x = f.buffer("x");
    const int64_t n = f.int64("n", 1);
    const DType dt = f.dtype("dtype");
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
