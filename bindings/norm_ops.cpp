// LayerNorm: one options object per call read through args.h, sizes checked against the buffers, then the work
// is queued on the tensors' backend.
#include "../native/norm/norm.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// The parameters' dtype: x's, or f32 (mixed precision; see norm.h).
DType param_dtype(const Fields& f, DType dt) {
  const DType pdt = f.dtype("paramDtype");
  if (const char* why = norm::unsupported(dt, pdt)) throw Error(f.who + ": " + why);
  return pdt;
}

// layerNormForward({ y, mean, rstd, x, weight, bias, rows, cols, eps, dtype, paramDtype })
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr y = f.buffer("y"), mean = f.buffer("mean"), rstd = f.buffer("rstd");
    StoragePtr x = f.buffer("x"), w = f.buffer("weight"), b = f.buffer("bias");
    const int64_t rows = f.int64("rows", 1), cols = f.int64("cols", 1);
    const float eps = f.number("eps");
    const DType dt = f.dtype("dtype"), pdt = param_dtype(f, dt);
    const int64_t n = elements(op, {rows, cols});
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

// layerNormBackward({ dx, dweight, dbias, dy, x, weight, mean, rstd, rows, cols, dtype, paramDtype })
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm backward";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr dx = f.buffer("dx"), dw = f.buffer("dweight"), db = f.buffer("dbias");
    StoragePtr dy = f.buffer("dy"), x = f.buffer("x"), w = f.buffer("weight");
    StoragePtr mean = f.buffer("mean"), rstd = f.buffer("rstd");
    const int64_t rows = f.int64("rows", 1), cols = f.int64("cols", 1);
    const DType dt = f.dtype("dtype"), pdt = param_dtype(f, dt);
    const int64_t n = elements(op, {rows, cols});
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
