// Elementwise ops: argument checks, then the work is queued on the tensors' backend.
#include "../native/elementwise/elementwise.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// fill(out, dtype, n, value)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "fill");
    DType dt = dtype_arg(info, 1, "fill");
    int64_t n = int_arg(info, 2, "fill");
    double v = number_arg(info, 3, "fill");
    require_elements(out, n, dt, "fill", "output");
    Backend& be = *out->backend;
    be.enqueue("fill", [&be, out, dt, n, v] { AMR_DISPATCH(be, elementwise, fill, out->ptr, dt, n, v); });
    return info.Env().Undefined();
  });
}

// binary(op, out, a, b, dtype, n) with op 0 add, 1 sub, 2 mul
Napi::Value Binary(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    static const char* const names[] = {"add", "sub", "mul"};
    int64_t code = int_arg(info, 0, "binary");
    if (code > 2) throw Error("binary: unknown op " + std::to_string(code));
    const char* name = names[code];
    StoragePtr out = buffer_arg(info, 1, name), a = buffer_arg(info, 2, name), b = buffer_arg(info, 3, name);
    DType dt = dtype_arg(info, 4, name);
    int64_t n = int_arg(info, 5, name);
    for (const StoragePtr& s : {out, a, b}) require_elements(s, n, dt, name, "a tensor");
    Backend& be = common_backend({out, a, b}, name);
    auto op = static_cast<elementwise::BinaryOp>(code);
    be.enqueue(name, [&be, op, out, a, b, dt, n] {
      AMR_DISPATCH(be, elementwise, binary, op, out->ptr, a->ptr, b->ptr, dt, n);
    });
    return info.Env().Undefined();
  });
}

// scale(out, a, alpha, dtype, n)
Napi::Value Scale(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "scale"), a = buffer_arg(info, 1, "scale");
    double alpha = number_arg(info, 2, "scale");
    DType dt = dtype_arg(info, 3, "scale");
    int64_t n = int_arg(info, 4, "scale");
    for (const StoragePtr& s : {out, a}) require_elements(s, n, dt, "scale", "a tensor");
    Backend& be = common_backend({out, a}, "scale");
    be.enqueue("scale", [&be, out, a, alpha, dt, n] { AMR_DISPATCH(be, elementwise, scale, out->ptr, a->ptr, alpha, dt, n); });
    return info.Env().Undefined();
  });
}

// broadcastScalar(out, scalar, alpha, dtype, n)
Napi::Value BroadcastScalar(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "expand"), s = buffer_arg(info, 1, "expand");
    double alpha = number_arg(info, 2, "expand");
    DType dt = dtype_arg(info, 3, "expand");
    int64_t n = int_arg(info, 4, "expand");
    require_elements(out, n, dt, "expand", "output");
    require_elements(s, 1, dt, "expand", "scalar");
    Backend& be = common_backend({out, s}, "expand");
    be.enqueue("expand", [&be, out, s, alpha, dt, n] {
      AMR_DISPATCH(be, elementwise, broadcast_scalar, out->ptr, s->ptr, alpha, dt, n);
    });
    return info.Env().Undefined();
  });
}

// cast(out, outDtype, a, aDtype, n)
Napi::Value Cast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "cast"), a = buffer_arg(info, 2, "cast");
    DType odt = dtype_arg(info, 1, "cast"), adt = dtype_arg(info, 3, "cast");
    int64_t n = int_arg(info, 4, "cast");
    require_elements(out, n, odt, "cast", "output");
    require_elements(a, n, adt, "cast", "input");
    Backend& be = common_backend({out, a}, "cast");
    be.enqueue("cast", [&be, out, odt, a, adt, n] { AMR_DISPATCH(be, elementwise, cast, out->ptr, odt, a->ptr, adt, n); });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_elementwise_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("fill", Napi::Function::New(env, Fill));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("scale", Napi::Function::New(env, Scale));
  exports.Set("broadcastScalar", Napi::Function::New(env, BroadcastScalar));
  exports.Set("cast", Napi::Function::New(env, Cast));
}

}  // namespace bindings
}  // namespace amr
