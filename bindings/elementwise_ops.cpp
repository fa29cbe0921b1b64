// Elementwise ops: one options object per call read through args.h, then the work is queued on the tensors'
// backend.
#include "../native/elementwise/elementwise.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// fill({ out, dtype, n, value })
Napi::Value Fill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "fill");
    StoragePtr out = f.buffer("out");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 0);
    const double v = f.any_number("value");
    require_elements(out, n, dt, "fill", "output");
    Backend& be = *out->backend;
    be.enqueue("fill", [&be, out, dt, n, v] { AMR_DISPATCH(be, elementwise, fill, out->ptr, dt, n, v); });
    return info.Env().Undefined();
  });
}

// binary({ op: 'add' | 'sub' | 'mul', out, a, b, dtype, n })
Napi::Value Binary(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    static const char* const names[] = {"add", "sub", "mul"};
    const int code = Fields::of(info, 0, "binary").choice("op", {"add", "sub", "mul"});
    const char* name = names[code];
    const Fields f = Fields::of(info, 0, name);
    StoragePtr out = f.buffer("out"), a = f.buffer("a"), b = f.buffer("b");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 0);
    for (const StoragePtr& s : {out, a, b}) require_elements(s, n, dt, name, "a tensor");
    Backend& be = common_backend({out, a, b}, name);
    auto op = static_cast<elementwise::BinaryOp>(code);
    be.enqueue(name, [&be, op, out, a, b, dt, n] {
      AMR_DISPATCH(be, elementwise, binary, op, out->ptr, a->ptr, b->ptr, dt, n);
    });
    return info.Env().Undefined();
  });
}

// scale({ out, a, alpha, dtype, n })
Napi::Value Scale(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "scale");
    StoragePtr out = f.buffer("out"), a = f.buffer("a");
    const double alpha = f.any_number("alpha");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 0);
    for (const StoragePtr& s : {out, a}) require_elements(s, n, dt, "scale", "a tensor");
    Backend& be = common_backend({out, a}, "scale");
    be.enqueue("scale", [&be, out, a, alpha, dt, n] { AMR_DISPATCH(be, elementwise, scale, out->ptr, a->ptr, alpha, dt, n); });
    return info.Env().Undefined();
  });
}

// broadcastScalar({ out, scalar, alpha, dtype, n }): out[i] = alpha · scalar[0]
Napi::Value BroadcastScalar(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "expand");
    StoragePtr out = f.buffer("out"), s = f.buffer("scalar");
    const double alpha = f.any_number("alpha");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 0);
    require_elements(out, n, dt, "expand", "output");
    require_elements(s, 1, dt, "expand", "scalar");
    Backend& be = common_backend({out, s}, "expand");
    be.enqueue("expand", [&be, out, s, alpha, dt, n] {
      AMR_DISPATCH(be, elementwise, broadcast_scalar, out->ptr, s->ptr, alpha, dt, n);
    });
    return info.Env().Undefined();
  });
}

// cast({ out, outDtype, a, aDtype, n })
Napi::Value Cast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "cast");
    StoragePtr out = f.buffer("out"), a = f.buffer("a");
    const DType odt = f.storage_dtype("outDtype"), adt = f.storage_dtype("aDtype");
    const int64_t n = f.int64("n", 0);
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
