// BatchNorm2d and LayerNorm2d: one options object per call (args.h) with the [n, c, hw] view as one geometry
// object, the call checked by batchnorm::unsupported, every buffer checked against the size it must hold, then the work is queued on the buffers' backend.
#include <string>

#include "../native/batchnorm/batchnorm.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

void* ptr(const StoragePtr& s) { return s ? s->ptr : nullptr; }

// geometry = { n, c, hw, dtype, paramDtype }: batchnorm::Geometry, checked with the rest of the call by
// batchnorm::unsupported.
batchnorm::Geometry geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  batchnorm::Geometry g;
  g.n = o.int64("n", 1);
  g.c = o.int64("c", 1);
  g.hw = o.int64("hw", 1);
  g.dt = o.dtype("dtype");
  g.pdt = o.dtype("paramDtype");
  return g;
}

int64_t numel(const batchnorm::Geometry& g) { return g.n * g.c * g.hw; }

// Checks each present buffer against count elements of dt.
void require(const Fields& f, std::initializer_list<std::pair<const StoragePtr*, const char*>> bufs, int64_t count,
             DType dt) {
  for (const auto& b : bufs)
    if (*b.first) require_elements(*b.first, count, dt, f.who.c_str(), b.second);
}

// Refuses what the family does not run (batchnorm::unsupported: sizes, dtypes, statistics, eps, momentum).
template <typename Args>
void require_supported(const Fields& f, const Args& a) {
  if (const char* why = batchnorm::unsupported(a)) throw Error(f.who + ": " + why);
}

// batchNormForward({ y, x, weight?, bias?, runningMean?, runningVar?, mean, invstd, eps, momentum, training,
//                    statsDtype, geometry })
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "batchNorm2d");
    batchnorm::BatchNormForward a{geometry(f)};
    const batchnorm::Geometry& v = a;
    a.sdt = f.dtype("statsDtype");
    const DType dt = a.dt, pdt = a.pdt, sdt = a.sdt;
    a.training = f.flag("training");
    StoragePtr y = f.buffer("y"), x = f.buffer("x"), mean = f.buffer("mean"), invstd = f.buffer("invstd");
    StoragePtr w = f.optional_buffer("weight"), b = f.optional_buffer("bias");
    StoragePtr rm = f.optional_buffer("runningMean"), rv = f.optional_buffer("runningVar");
    a.y = ptr(y), a.x = ptr(x), a.weight = ptr(w), a.bias = ptr(b), a.running_mean = ptr(rm), a.running_var = ptr(rv);
    a.mean = static_cast<float*>(ptr(mean)), a.invstd = static_cast<float*>(ptr(invstd));
    a.eps = f.number("eps"), a.momentum = f.number("momentum");
    require_supported(f, a);
    require(f, {{&y, "y"}, {&x, "x"}}, numel(v), dt);
    require(f, {{&w, "weight"}, {&b, "bias"}}, v.c, pdt);
    require(f, {{&rm, "runningMean"}, {&rv, "runningVar"}}, v.c, sdt);
    require(f, {{&mean, "mean"}, {&invstd, "invstd"}}, v.c, DType::F32);
    Backend& be = common_backend({y, x, mean, invstd, w, b, rm, rv}, f.who.c_str());
    StoragePtr scratch = be.allocate(static_cast<size_t>(batchnorm::scratch_bytes(v.n, v.c)));
    be.enqueue("batchNorm2d", [&be, a, y, x, mean, invstd, w, b, rm, rv, scratch] {
      AMR_DISPATCH(be, batchnorm, batch_norm_forward, a, static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

// batchNormBackward({ dx?, dweight?, dbias?, dy, x, weight?, mean, invstd, training, geometry })
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "batchNorm2d backward");
    batchnorm::BatchNormBackward a{geometry(f)};
    const batchnorm::Geometry& v = a;
    const DType dt = a.dt, pdt = a.pdt;
    StoragePtr dx = f.optional_buffer("dx"), dw = f.optional_buffer("dweight"), db = f.optional_buffer("dbias");
    StoragePtr dy = f.buffer("dy"), x = f.buffer("x"), w = f.optional_buffer("weight");
    StoragePtr mean = f.buffer("mean"), invstd = f.buffer("invstd");
    a.dx = ptr(dx), a.dweight = ptr(dw), a.dbias = ptr(db), a.dy = ptr(dy), a.x = ptr(x), a.weight = ptr(w);
    a.mean = static_cast<const float*>(ptr(mean)), a.invstd = static_cast<const float*>(ptr(invstd));
    a.training = f.flag("training");
    require_supported(f, a);
    require(f, {{&dx, "dx"}, {&dy, "dy"}, {&x, "x"}}, numel(v), dt);
    require(f, {{&dw, "dweight"}, {&db, "dbias"}, {&w, "weight"}}, v.c, pdt);
    require(f, {{&mean, "mean"}, {&invstd, "invstd"}}, v.c, DType::F32);
    Backend& be = common_backend({dx, dw, db, dy, x, w, mean, invstd}, f.who.c_str());
    StoragePtr scratch = be.allocate(static_cast<size_t>(batchnorm::scratch_bytes(v.n, v.c)));
    be.enqueue("batchNorm2d backward", [&be, a, dx, dw, db, dy, x, w, mean, invstd, scratch] {
      AMR_DISPATCH(be, batchnorm, batch_norm_backward, a, static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

// layerNorm2dForward({ y, mean, rstd, x, weight, bias, eps, geometry })
Napi::Value LayerNorm2dForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "layerNorm2d");
    batchnorm::LayerNorm2dForward a{geometry(f)};
    const batchnorm::Geometry& v = a;
    const DType dt = a.dt, pdt = a.pdt;
    StoragePtr y = f.buffer("y"), mean = f.buffer("mean"), rstd = f.buffer("rstd"), x = f.buffer("x");
    StoragePtr w = f.buffer("weight"), b = f.buffer("bias");
    a.y = ptr(y), a.mean = static_cast<float*>(ptr(mean)), a.rstd = static_cast<float*>(ptr(rstd)), a.x = ptr(x);
    a.weight = ptr(w), a.bias = ptr(b), a.eps = f.number("eps");
    require_supported(f, a);
    require(f, {{&y, "y"}, {&x, "x"}}, numel(v), dt);
    require(f, {{&w, "weight"}, {&b, "bias"}}, v.c, pdt);
    require(f, {{&mean, "mean"}, {&rstd, "rstd"}}, v.n * v.hw, DType::F32);
    Backend& be = common_backend({y, mean, rstd, x, w, b}, f.who.c_str());
    be.enqueue("layerNorm2d", [&be, a, y, mean, rstd, x, w, b] {
      AMR_DISPATCH(be, batchnorm, layer_norm2d_forward, a);
    });
    return info.Env().Undefined();
  });
}

// layerNorm2dBackward({ dx, dweight, dbias, dy, x, weight, mean, rstd, geometry })
Napi::Value LayerNorm2dBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "layerNorm2d backward");
    batchnorm::LayerNorm2dBackward a{geometry(f)};
    const batchnorm::Geometry& v = a;
    const DType dt = a.dt, pdt = a.pdt;
    StoragePtr dx = f.buffer("dx"), dw = f.buffer("dweight"), db = f.buffer("dbias"), dy = f.buffer("dy");
    StoragePtr x = f.buffer("x"), w = f.buffer("weight"), mean = f.buffer("mean"), rstd = f.buffer("rstd");
    a.dx = ptr(dx), a.dweight = ptr(dw), a.dbias = ptr(db), a.dy = ptr(dy), a.x = ptr(x), a.weight = ptr(w);
    a.mean = static_cast<const float*>(ptr(mean)), a.rstd = static_cast<const float*>(ptr(rstd));
    require_supported(f, a);
    require(f, {{&dx, "dx"}, {&dy, "dy"}, {&x, "x"}}, numel(v), dt);
    require(f, {{&dw, "dweight"}, {&db, "dbias"}, {&w, "weight"}}, v.c, pdt);
    require(f, {{&mean, "mean"}, {&rstd, "rstd"}}, v.n * v.hw, DType::F32);
    Backend& be = common_backend({dx, dw, db, dy, x, w, mean, rstd}, f.who.c_str());
    StoragePtr scratch = be.allocate(static_cast<size_t>(batchnorm::scratch_bytes(v.n, v.c)));
    be.enqueue("layerNorm2d backward", [&be, a, dx, dw, db, dy, x, w, mean, rstd, scratch] {
      AMR_DISPATCH(be, batchnorm, layer_norm2d_backward, a, static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_batchnorm_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("batchNormForward", Napi::Function::New(env, BatchNormForward));
  exports.Set("batchNormBackward", Napi::Function::New(env, BatchNormBackward));
  exports.Set("layerNorm2dForward", Napi::Function::New(env, LayerNorm2dForward));
  exports.Set("layerNorm2dBackward", Napi::Function::New(env, LayerNorm2dBackward));
}

}  // namespace bindings
}  // namespace amr
