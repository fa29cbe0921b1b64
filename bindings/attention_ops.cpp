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

// geometry = { batch, tokens, heads, headDim, prefix, window, gridH, gridW, scale, relGridH?, relGridW? }, checked
// for tensors of dtype dt. The relative position grid is optional (absent: none), so callers without relPos are
// unchanged.
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
  g.rel_gh = o.has("relGridH") ? o.int64("relGridH", 0) : 0;
  g.rel_gw = o.has("relGridW") ? o.int64("relGridW", 0) : 0;
  if (!g.rel_gh != !g.rel_gw) throw Error(f.who + ": relGridH and relGridW are both 0 or both positive");
  const std::string why = attention::attention_unsupported(g.head_dim, dt, attention::features_of(g));
  if (!why.empty()) throw Error(f.who + ": " + why);
  if (g.rel_gh && (g.tokens % g.rel_gh || g.tokens / g.rel_gh != g.rel_gw))  // a product could overflow
    throw Error(f.who + ": relPos grid " + std::to_string(g.rel_gh) + "x" + std::to_string(g.rel_gw) +
                " does not cover the " + std::to_string(g.tokens) + " tokens");
  if (g.window) {
    if (g.grid_h < 1 || g.grid_w < 1 || g.grid_h * g.grid_w != g.tokens - g.prefix)
      throw Error(f.who + ": the window grid does not cover the patch tokens");
    if (g.grid_h % g.window || g.grid_w % g.window)
      throw Error(f.who + ": window size " + std::to_string(g.window) + " does not divide the grid " +
                  std::to_string(g.grid_h) + "x" + std::to_string(g.grid_w));
  }
  elements(o.who, {g.batch, g.tokens, 3, g.heads, g.head_dim});
  if (g.rel_gh) elements(o.who, {g.batch, g.heads, g.tokens, g.rel_gh + g.rel_gw});
  return g;
}

// relH and relW (or their gradients, by the names given) are there exactly when the geometry has a relPos grid, with
// [batch, heads, T, gh] and [batch, heads, T, gw] elements.
void check_rel_pos(const attention::Geometry& g, const StoragePtr& h, const StoragePtr& w, DType dt, const char* op,
                   const char* h_name, const char* w_name) {
  if (!h != !w) throw Error(std::string(op) + ": " + h_name + " and " + w_name + " go together");
  if (!h != !g.rel_gh)
    throw Error(std::string(op) + ": " + h_name + " and " + w_name + " go with a relPos grid (relGridH, relGridW)");
  if (!h) return;
  const int64_t rows = g.batch * g.heads * g.tokens;
  require_elements(h, rows * g.rel_gh, dt, op, h_name);
  require_elements(w, rows * g.rel_gw, dt, op, w_name);
}

// attentionForward({ out, lse, qkv, bias?, relH?, relW?, dtype, geometry })
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention";
    const Fields f = Fields::of(info, 0, op);
    const DType dt = f.dtype("dtype");
    const attention::Geometry g = geometry(f, dt);
    StoragePtr out = f.buffer("out"), lse = f.buffer("lse"), qkv = f.buffer("qkv"), bias = f.optional_buffer("bias");
    StoragePtr rel_h = f.optional_buffer("relH"), rel_w = f.optional_buffer("relW");
    require_elements(qkv, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    require_elements(out, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias) require_elements(bias, g.heads * g.length() * g.length(), dt, op, "bias");
    check_rel_pos(g, rel_h, rel_w, dt, op, "relH", "relW");
    Backend& be = common_backend({out, lse, qkv, bias, rel_h, rel_w}, op);
    be.enqueue(op, [&be, out, lse, qkv, bias, rel_h, rel_w, g, dt] {
      AMR_DISPATCH(be, attention, attention_forward, out->ptr, static_cast<float*>(lse->ptr), qkv->ptr,
                   bias ? bias->ptr : nullptr, rel_h ? rel_h->ptr : nullptr, rel_w ? rel_w->ptr : nullptr, g, dt);
    });
    return info.Env().Undefined();
  });
}

// attentionBackward({ dqkv, dbias?, drelH?, drelW?, dout, qkv, out, lse, bias?, relH?, relW?, dtype, geometry })
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attention backward";
    const Fields f = Fields::of(info, 0, op);
    const DType dt = f.dtype("dtype");
    const attention::Geometry g = geometry(f, dt);
    StoragePtr dqkv = f.buffer("dqkv"), dbias = f.optional_buffer("dbias"), dout = f.buffer("dout"), qkv = f.buffer("qkv"),
               out = f.buffer("out"), lse = f.buffer("lse"), bias = f.optional_buffer("bias");
    StoragePtr rel_h = f.optional_buffer("relH"), rel_w = f.optional_buffer("relW");
    StoragePtr drel_h = f.optional_buffer("drelH"), drel_w = f.optional_buffer("drelW");
    if (!bias != !dbias) throw Error("attention backward: bias and its gradient go together");
    check_rel_pos(g, rel_h, rel_w, dt, op, "relH", "relW");
    check_rel_pos(g, drel_h, drel_w, dt, op, "drelH", "drelW");
    for (const StoragePtr& s : {dqkv, qkv}) require_elements(s, g.batch * g.tokens * 3 * g.dim(), dt, op, "qkv");
    for (const StoragePtr& s : {dout, out}) require_elements(s, g.batch * g.tokens * g.dim(), dt, op, "out");
    require_elements(lse, g.stat_rows(), DType::F32, op, "logsumexp");
    if (bias)
      for (const StoragePtr& s : {bias, dbias}) require_elements(s, g.heads * g.length() * g.length(), dt, op, "bias");
    Backend& be = common_backend({dqkv, dbias, dout, qkv, out, lse, bias, rel_h, rel_w, drel_h, drel_w}, op);
    const int64_t floats =
        g.stat_rows() + (bias ? g.bias_partial_floats() : 0) + (rel_h ? g.rel_scratch_floats() : 0);
    StoragePtr scratch = be.allocate(static_cast<size_t>(floats * int64_t(sizeof(float))));
    be.enqueue(op, [&be, dqkv, dbias, drel_h, drel_w, dout, qkv, out, lse, bias, rel_h, rel_w, g, dt, scratch] {
      AMR_DISPATCH(be, attention, attention_backward, dqkv->ptr, dbias ? dbias->ptr : nullptr,
                   drel_h ? drel_h->ptr : nullptr, drel_w ? drel_w->ptr : nullptr, dout->ptr, qkv->ptr, out->ptr,
                   static_cast<const float*>(lse->ptr), bias ? bias->ptr : nullptr, rel_h ? rel_h->ptr : nullptr,
                   rel_w ? rel_w->ptr : nullptr, g, dt, static_cast<float*>(scratch->ptr));
    });
    return info.Env().Undefined();
  });
}

// attentionUnsupported(headDim, dtype, features?): null when every backend runs that head dim and dtype with the
// features ({ window?, prefix?, relPos? }, booleans), else why not.
Napi::Value AttentionUnsupported(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "attentionUnsupported";
    attention::Features features;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      const Fields f = Fields::of(info, 2, op);
      features.window = f.flag("window");
      features.prefix = f.flag("prefix");
      features.rel_pos = f.flag("relPos");
    }
    const std::string why = attention::attention_unsupported(int_arg(info, 0, op), dtype_arg(info, 1, op), features);
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
