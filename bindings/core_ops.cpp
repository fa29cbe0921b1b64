// Elementwise, reduction and random ops: argument checks, then the work is queued on the tensors' backend.
#include "../native/elementwise/elementwise.h"
#include "../native/random/random.h"
#include "../native/reduce/reduce.h"
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

// sum(out, a, dtype, n, alpha): out[0] = alpha * sum(a)
Napi::Value Sum(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "sum"), a = buffer_arg(info, 1, "sum");
    DType dt = dtype_arg(info, 2, "sum");
    int64_t n = int_arg(info, 3, "sum");
    double alpha = number_arg(info, 4, "sum");
    if (dt == DType::I32) throw Error("sum: i32 tensors are not supported; cast to f32 first");
    require_elements(out, 1, dt, "sum", "output");
    require_elements(a, n, dt, "sum", "input");
    Backend& be = common_backend({out, a}, "sum");
    StoragePtr scratch = be.allocate(static_cast<size_t>(reduce::sum_scratch_bytes(n)));
    be.enqueue("sum", [&be, out, a, dt, n, alpha, scratch] {
      AMR_DISPATCH(be, reduce, sum, out->ptr, a->ptr, dt, n, alpha, scratch->ptr);
    });
    return info.Env().Undefined();
  });
}

// randomFill(out, dtype, n, distribution (0 normal, 1 uniform), seedHi, seedLo)
Napi::Value RandomFill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "random");
    DType dt = dtype_arg(info, 1, "random");
    int64_t n = int_arg(info, 2, "random");
    int64_t dist = int_arg(info, 3, "random");
    uint64_t seed = (static_cast<uint64_t>(int_arg(info, 4, "random")) << 32) |
                    static_cast<uint64_t>(int_arg(info, 5, "random") & 0xffffffff);
    if (dt == DType::I32) throw Error("random: i32 tensors are not supported");
    if (dist > 1) throw Error("random: unknown distribution");
    require_elements(out, n, dt, "random", "output");
    Backend& be = *out->backend;
    auto d = static_cast<random::Distribution>(dist);
    be.enqueue("random", [&be, out, dt, n, d, seed] { AMR_DISPATCH(be, random, fill, out->ptr, dt, n, d, seed); });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_core_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("fill", Napi::Function::New(env, Fill));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("scale", Napi::Function::New(env, Scale));
  exports.Set("broadcastScalar", Napi::Function::New(env, BroadcastScalar));
  exports.Set("cast", Napi::Function::New(env, Cast));
  exports.Set("sum", Napi::Function::New(env, Sum));
  exports.Set("randomFill", Napi::Function::New(env, RandomFill));
}

}  // namespace bindings
}  // namespace amr
