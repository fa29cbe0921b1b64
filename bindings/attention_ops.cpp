// Fused attention: argument checks, then the work is queued on the tensors' backend.
#include <string>

#include "../native/attention/attention.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

bool is_absent(const Napi::CallbackInfo& info, size_t i) { return i >= info.Length() || info[i].IsNull() || info[i].IsUndefined(); }

StoragePtr optional_buffer(const Napi::CallbackInfo& info, size_t i, const char* op) {
  return is_absent(info, i) ? nullptr : buffer_arg(info, i, op);
}

// (batch, tokens, heads, headDim, prefix, window, gridH, gridW, scale) from argument `at` on, checked, for tensors
// of dtype dt.
attention::Geometry geometry_arg(const Napi::CallbackInfo& info, size_t at, DType dt, const char* op) {
  attention::Geometry g{};
  g.batch = int_arg(info, at, op);
  g.tokens = int_arg(info, at + 1, op);
  g.heads = int_arg(info, at + 2, op);
  g.head_dim = int_arg(info, at + 3, op);
  g.prefix = int_arg(info, at + 4, op);
  g.window = int_arg(info, at + 5, op);
  g.grid_h = int_arg(info, at + 6, op);
  g.grid_w = int_arg(info, at + 7, op);
  g.scale = static_cast<float>(number_arg(info, at + 8, op));
  const std::string o(op);
  if (g.batch < 0 || g.tokens < 1 || g.heads < 1 || g.head_dim < 1) throw Error(o + ": bad shape");
  const std::string why = attention::attention_unsupported(g.head_dim, dt);
  if (!why.empty()) throw Error(o + ": " + why);
  if (g.prefix < 0 || g.prefix > g.tokens) throw Error(o + ": prefix out of range");
  if (g.window < 0) throw Error(o + ": window size must be positive");
  if (g.window) {
    if (g.grid_h < 1 || g.grid_w < 1 || g.grid_h * g.grid_w != g.tokens - g.prefix)
      throw Error(o + ": the window grid does not cover the patch tokens");
    if (g.grid_h % g.window || g.grid_w % g.window)
      throw Error(o + ": window size " + std::to_string(g.window) + " does not divide the grid " +
                  std::to_string(g.grid_h) + "x" + std::to_string(g.grid_w));
  }
  return g;
}

// attentionForward(out, lse, qkv, bias | null, batch, tokens, heads, headDim, prefix, window, gridH, gridW, scale, dtype)
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention";
    StoragePtr out = buffer_arg(info, 0, op), lse = buffer_arg(info, 1, op), qkv = buffer_arg(info, 2, op);
    StoragePtr bias = optional_buffer(info, 3, op);
    const DType dt = dtype_arg(info, 13, op);
    const attention::Geometry g = geometry_arg(info, 4, dt, op);
    require_elements(qkv, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    require_elements(out, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias) require_elements(bias, g.heads * g.length() * g.length(), dt, op, "bias");
    Backend& be = bias ? common_backend({out, lse, qkv, bias}, op) : common_backend({out, lse, qkv}, op);
    be.enqueue(op, [&be, out, lse, qkv, bias, g, dt] {
      AMR_DISPATCH(be, attention, attention_forward, out->ptr, static_cast<float*>(lse->ptr), qkv->ptr,
                   bias ? bias->ptr : nullptr, g, dt);
    });
    return info.Env().Undefined();
  });
}

// attentionBackward(dqkv, dbias | null, dout, qkv, out, lse, bias | null, batch, tokens, heads, headDim, prefix,
//                   window, gridH, gridW, scale, dtype)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention backward";
    StoragePtr dqkv = buffer_arg(info, 0, op), dbias = optional_buffer(info, 1, op);
    StoragePtr dout = buffer_arg(info, 2, op), qkv = buffer_arg(info, 3, op), out = buffer_arg(info, 4, op);
    StoragePtr lse = buffer_arg(info, 5, op), bias = optional_buffer(info, 6, op);
    const DType dt = dtype_arg(info, 16, op);
    const attention::Geometry g = geometry_arg(info, 7, dt, op);
    if (!bias != !dbias) throw Error("attention backward: bias and its gradient go together");
    for (const StoragePtr& s : {dqkv, qkv}) require_elements(s, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    for (const StoragePtr& s : {dout, out}) require_elements(s, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias)
      for (const StoragePtr& s : {bias, dbias}) require_elements(s, g.heads * g.length() * g.length(), dt, op, "bias");
    Backend& be = bias ? common_backend({dqkv, dbias, dout, qkv, out, lse, bias}, op)
                       : common_backend({dqkv, dout, qkv, out, lse}, op);
    const int64_t floats = g.stat_rows() + (bias ? g.bias_partial_floats() : 0);
    StoragePtr scratch = be.allocate(static_cast<size_t>(floats * int64_t(sizeof(float))));
    be.enqueue(op, [&be, dqkv, dbias, dout, qkv, out, lse, bias, g, dt, scratch] {
      AMR_DISPATCH(be, attention, attention_backward, dqkv->ptr, dbias ? dbias->ptr : nullptr, dout->ptr, qkv->ptr,
                   out->ptr, static_cast<const float*>(lse->ptr), bias ? bias->ptr : nullptr, g, dt,
                   static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

// attentionUnsupported(headDim, dtype): null when every backend runs that head dim and dtype, else why not.
Napi::Value AttentionUnsupported(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attentionUnsupported";
    const std::string why = attention::attention_unsupported(int_arg(info, 0, op), dtype_arg(info, 1, op));
    return why.empty() ? info.Env().Null() : Napi::String::New(info.Env(), why);
  });
}

}  // namespace

void init_attention_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
  exports.Set("attentionUnsupported", Napi::Function::New(env, AttentionUnsupported));
}

}  // namespace bindings
}  // namespace amr
