// LayerNorm: one options object per call read through args.h, its geometry checked by norm::unsupported, sizes checked against the buffers, then the work
// is queued on the tensors' backend.
#include "../native/norm/norm.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// geometry = { rows, cols, dtype, paramDtype }: norm::Geometry. The parameters' dtype is x's, or f32 (mixed
// precision; see norm.h).
norm::Geometry geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  norm::Geometry g;
  g.rows = o.int64("rows", 1);
  g.cols = o.int64("cols", 1);
  g.dtype = o.dtype("dtype");
  g.param_dtype = o.dtype("paramDtype");
  if (const char* why = norm::unsupported(g)) throw Error(f.who + ": " + why);
  return g;
}

// layerNormForward({ y, mean, rstd, x, weight, bias, eps, geometry })
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr y = f.buffer("y"), mean = f.buffer("mean"), rstd = f.buffer("rstd");
    StoragePtr x = f.buffer("x"), w = f.buffer("weight"), b = f.buffer("bias");
    const norm::Geometry g = geometry(f);
    const int64_t rows = g.rows, cols = g.cols, n = rows * cols;
    const DType dt = g.dtype, pdt = g.param_dtype;
    const float eps = f.number("eps");
    for (const StoragePtr& s : {y, x}) require_elements(s, n, dt, op, "a tensor");
    for (const StoragePtr& s : {w, b}) require_elements(s, cols, pdt, op, "weight or bias");
    for (const StoragePtr& s : {mean, rstd}) require_elements(s, rows, DType::F32, op, "statistics");
    Backend& be = common_backend({y, mean, rstd, x, w, b}, op);
    be.enqueue(op, [&be, y, mean, rstd, x, w, b, rows, cols, eps, dt, pdt] {
      AMR_DISPATCH(be, norm, layer_norm_forward, y->ptr, static_cast<float*>(mean->ptr), static_cast<float*>(rstd->ptr),
                   x->ptr, w->ptr, b->ptr, rows, cols, eps, dt, pdt);
    });
    return info.Env().Undefined();
  });
}

// layerNormBackward({ dx, dweight, dbias, dy, x, weight, mean, rstd, geometry })
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm backward";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr dx = f.buffer("dx"), dw = f.buffer("dweight"), db = f.buffer("dbias");
    StoragePtr dy = f.buffer("dy"), x = f.buffer("x"), w = f.buffer("weight");
    StoragePtr mean = f.buffer("mean"), rstd = f.buffer("rstd");
    const norm::Geometry g = geometry(f);
    const int64_t rows = g.rows, cols = g.cols, n = rows * cols;
    const DType dt = g.dtype, pdt = g.param_dtype;
    for (const StoragePtr& s : {dx, dy, x}) require_elements(s, n, dt, op, "a tensor");
    for (const StoragePtr& s : {dw, db, w}) require_elements(s, cols, pdt, op, "weight or bias");
    for (const StoragePtr& s : {mean, rstd}) require_elements(s, rows, DType::F32, op, "statistics");
    Backend& be = common_backend({dx, dw, db, dy, x, w, mean, rstd}, op);
    StoragePtr scratch = be.allocate(static_cast<size_t>(norm::column_sum_scratch_bytes(cols)));
    be.enqueue(op, [&be, dx, dw, db, dy, x, w, mean, rstd, rows, cols, dt, pdt, scratch] {
      AMR_DISPATCH(be, norm, layer_norm_backward, dx->ptr, dw->ptr, db->ptr, dy->ptr, x->ptr, w->ptr,
                   static_cast<const float*>(mean->ptr), static_cast<const float*>(rstd->ptr), rows, cols, dt, pdt,
                   static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_norm_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward));
}

}  // namespace bindings
}  // namespace amr
