// Fused attention: one options object per call read through args.h (errors name the op and the field), sizes
// checked against the buffers, then the work is queued on the tensors' backend.
#include <string>

#include "../native/attention/attention.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// geometry = { batch, tokens, heads, headDim, prefix, window, gridH, gridW, scale }, checked for tensors of dtype dt.
attention::Geometry geometry(const Fields& f, DType dt) {
  const Fields o = f.part("geometry");
  attention::Geometry g{};
  g.batch = o.int64("batch", 0);
  g.tokens = o.int64("tokens", 1);
  g.heads = o.int64("heads", 1);
  g.head_dim = o.int64("headDim", 1);
  g.prefix = o.int64("prefix", 0, g.tokens);
  g.window = o.int64("window", 0);
  g.grid_h = o.int64("gridH", 0);
  g.grid_w = o.int64("gridW", 0);
  g.scale = o.number("scale");
  const std::string why = attention::attention_unsupported(g.head_dim, dt);
  if (!why.empty()) throw Error(f.who + ": " + why);
  if (g.window) {
    if (g.grid_h < 1 || g.grid_w < 1 || g.grid_h * g.grid_w != g.tokens - g.prefix)
      throw Error(f.who + ": the window grid does not cover the patch tokens");
    if (g.grid_h % g.window || g.grid_w % g.window)
      throw Error(f.who + ": window size " + std::to_string(g.window) + " does not divide the grid " +
                  std::to_string(g.grid_h) + "x" + std::to_string(g.grid_w));
  }
  elements(o.who, {g.batch, g.tokens, 3, g.heads, g.head_dim});
  return g;
}

// attentionForward({ out, lse, qkv, bias?, dtype, geometry })
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention";
    const Fields f = Fields::of(info, 0, op);
    const DType dt = f.dtype("dtype");
    const attention::Geometry g = geometry(f, dt);
    StoragePtr out = f.buffer("out"), lse = f.buffer("lse"), qkv = f.buffer("qkv"), bias = f.optional_buffer("bias");
    require_elements(qkv, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    require_elements(out, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias) require_elements(bias, g.heads * g.length() * g.length(), dt, op, "bias");
    Backend& be = common_backend({out, lse, qkv, bias}, op);
    be.enqueue(op, [&be, out, lse, qkv, bias, g, dt] {
      AMR_DISPATCH(be, attention, attention_forward, out->ptr, static_cast<float*>(lse->ptr), qkv->ptr,
                   bias ? bias->ptr : nullptr, g, dt);
    });
    return info.Env().Undefined();
  });
}

// attentionBackward({ dqkv, dbias?, dout, qkv, out, lse, bias?, dtype, geometry })
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention backward";
    const Fields f = Fields::of(info, 0, op);
    const DType dt = f.dtype("dtype");
    const attention::Geometry g = geometry(f, dt);
    StoragePtr dqkv = f.buffer("dqkv"), dbias = f.optional_buffer("dbias"), dout = f.buffer("dout"), qkv = f.buffer("qkv"),
               out = f.buffer("out"), lse = f.buffer("lse"), bias = f.optional_buffer("bias");
    if (!bias != !dbias) throw Error("attention backward: bias and its gradient go together");
    for (const StoragePtr& s : {dqkv, qkv}) require_elements(s, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    for (const StoragePtr& s : {dout, out}) require_elements(s, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias)
      for (const StoragePtr& s : {bias, dbias}) require_elements(s, g.heads * g.length() * g.length(), dt, op, "bias");
    Backend& be = common_backend({dqkv, dbias, dout, qkv, out, lse, bias}, op);
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
