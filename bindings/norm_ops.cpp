// LayerNorm: argument checks, then the work is queued on the tensors' backend.
#include "../native/norm/norm.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// The parameters' dtype: x's, or f32 (mixed precision; see norm.h).
DType param_dtype_arg(const Napi::CallbackInfo& info, size_t i, DType dt, const char* op) {
  const DType pdt = dtype_arg(info, i, op);
  if (pdt != dt && pdt != DType::F32) throw Error(std::string(op) + ": weight and bias must be the input's dtype or f32");
  return pdt;
}

// layerNormForward(y, mean, rstd, x, w, b, rows, cols, eps, dtype, paramDtype)
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm";
    StoragePtr y = buffer_arg(info, 0, op), mean = buffer_arg(info, 1, op), rstd = buffer_arg(info, 2, op);
    StoragePtr x = buffer_arg(info, 3, op), w = buffer_arg(info, 4, op), b = buffer_arg(info, 5, op);
    int64_t rows = int_arg(info, 6, op), cols = int_arg(info, 7, op);
    float eps = static_cast<float>(number_arg(info, 8, op));
    DType dt = dtype_arg(info, 9, op), pdt = param_dtype_arg(info, 10, dt, op);
    for (const StoragePtr& s : {y, x}) require_elements(s, rows * cols, dt, op, "a tensor");
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

// layerNormBackward(dx, dw, db, dy, x, w, mean, rstd, rows, cols, dtype, paramDtype)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "layerNorm backward";
    StoragePtr dx = buffer_arg(info, 0, op), dw = buffer_arg(info, 1, op), db = buffer_arg(info, 2, op);
    StoragePtr dy = buffer_arg(info, 3, op), x = buffer_arg(info, 4, op), w = buffer_arg(info, 5, op);
    StoragePtr mean = buffer_arg(info, 6, op), rstd = buffer_arg(info, 7, op);
    int64_t rows = int_arg(info, 8, op), cols = int_arg(info, 9, op);
    DType dt = dtype_arg(info, 10, op), pdt = param_dtype_arg(info, 11, dt, op);
    for (const StoragePtr& s : {dx, dy, x}) require_elements(s, rows * cols, dt, op, "a tensor");
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
