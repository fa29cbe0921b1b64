// conv2d ops (forward with its fused epilogue, input gradient, weight gradient, per-channel sums): fields read and
// checked once through args.h, sizes checked against the buffers and the family's own limits (conv::unsupported),
// then the work is queued on the tensors' backend with its scratch. Shapes and autograd live in ts/ops/conv.ts.
#include "../native/conv/conv.h"
#include "args.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// geometry = { batch, inC, inH, inW, outC, outH, outW, groups, kernel: [kh, kw], stride, padding, dilation }
conv::Geometry geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  conv::Geometry g;
  g.batch = o.integer("batch", 1);
  g.in_c = o.integer("inC", 1);
  g.in_h = o.integer("inH", 1);
  g.in_w = o.integer("inW", 1);
  g.out_c = o.integer("outC", 1);
  g.out_h = o.integer("outH", 1);
  g.out_w = o.integer("outW", 1);
  g.groups = o.integer("groups", 1);
  const std::vector<int> k = o.integers("kernel", 2, 1), s = o.integers("stride", 2, 1),
                         p = o.integers("padding", 2, 0), d = o.integers("dilation", 2, 1);
  g.kh = k[0], g.kw = k[1], g.sh = s[0], g.sw = s[1], g.ph = p[0], g.pw = p[1], g.dh = d[0], g.dw = d[1];
  if (const char* why = conv::unsupported(g)) throw Error(o.who + ": " + why);
  return g;
}

StoragePtr workspace(Backend& be, int64_t bytes) { return be.allocate(static_cast<size_t>(bytes)); }

// conv2d({ y, x, weight, bias?, residual?, preactivation?, activation, dtype, geometry })
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "conv2d";
    const Fields f = Fields::of(info, 0, op);
    const conv::Geometry g = geometry(f);
    const DType dt = f.dtype("dtype");
    StoragePtr y = f.buffer("y"), x = f.buffer("x"), w = f.buffer("weight"), bias = f.optional_buffer("bias"),
               res = f.optional_buffer("residual"), pre = f.optional_buffer("preactivation");
    const auto act = static_cast<activation::Kind>(f.choice("activation", {"none", "gelu", "relu", "silu", "sigmoid"}));
    require_elements(y, conv::output_elements(g), dt, op, "output");
    require_elements(x, conv::input_elements(g), dt, op, "input");
    require_elements(w, conv::weight_elements(g), dt, op, "weight");
    if (bias) require_elements(bias, g.out_c, dt, op, "bias");
    if (res) require_elements(res, conv::output_elements(g), dt, op, "residual");
    if (pre) require_elements(pre, conv::output_elements(g), dt, op, "preactivation");
    Backend& be = common_backend({y, x, w, bias, res, pre}, op);
    StoragePtr ws = workspace(be, conv::workspace_bytes(g, dt, be.kind(), w->ptr));
    be.enqueue(op, [&be, g, act, y, x, w, bias, res, pre, dt, ws] {
      conv::Epilogue e;
      e.bias = bias ? bias->ptr : nullptr;
      e.activation = act;
      e.residual = res ? res->ptr : nullptr;
      e.preactivation = pre ? pre->ptr : nullptr;
      AMR_DISPATCH(be, conv, forward, g, e, y->ptr, x->ptr, w->ptr, dt, ws->ptr);
    });
    return info.Env().Undefined();
  });
}

// conv2dBackwardInput({ dx, dy, weight, bias?, dtype, geometry }): dx is written, not added to; bias (length inC)
// is added to it, for the transposed convolution whose forward this is.
Napi::Value Conv2dBackwardInput(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "conv2d backward";
    const Fields f = Fields::of(info, 0, op);
    const conv::Geometry g = geometry(f);
    const DType dt = f.dtype("dtype");
    StoragePtr dx = f.buffer("dx"), dy = f.buffer("dy"), w = f.buffer("weight"), bias = f.optional_buffer("bias");
    require_elements(dx, conv::input_elements(g), dt, op, "input gradient");
    require_elements(dy, conv::output_elements(g), dt, op, "output gradient");
    require_elements(w, conv::weight_elements(g), dt, op, "weight");
    if (bias) require_elements(bias, g.in_c, dt, op, "bias");
    Backend& be = common_backend({dx, dy, w, bias}, op);
    StoragePtr ws = workspace(be, conv::workspace_bytes_backward_input(g, dt, be.kind()));
    be.enqueue(op, [&be, g, dx, dy, w, bias, dt, ws] {
      AMR_DISPATCH(be, conv, backward_input, g, dx->ptr, dy->ptr, w->ptr, bias ? bias->ptr : nullptr, dt, ws->ptr);
    });
    return info.Env().Undefined();
  });
}

// conv2dBackwardWeight({ dw, x, dy, dtype, geometry }): dw is written, not added to.
Napi::Value Conv2dBackwardWeight(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "conv2d backward";
    const Fields f = Fields::of(info, 0, op);
    const conv::Geometry g = geometry(f);
    const DType dt = f.dtype("dtype");
    StoragePtr dw = f.buffer("dw"), x = f.buffer("x"), dy = f.buffer("dy");
    require_elements(dw, conv::weight_elements(g), dt, op, "weight gradient");
    require_elements(x, conv::input_elements(g), dt, op, "input");
    require_elements(dy, conv::output_elements(g), dt, op, "output gradient");
    Backend& be = common_backend({dw, x, dy}, op);
    StoragePtr ws = workspace(be, conv::workspace_bytes_backward_weight(g, dt, be.kind()));
    be.enqueue(op, [&be, g, dw, x, dy, dt, ws] {
      AMR_DISPATCH(be, conv, backward_weight, g, dw->ptr, x->ptr, dy->ptr, dt, ws->ptr);
    });
    return info.Env().Undefined();
  });
}

// channelSum({ out, t, batch, channels, pixels, dtype }): out[c] = Σ t[n, c, p], the bias gradient.
Napi::Value ChannelSum(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "conv2d backward";
    const Fields f = Fields::of(info, 0, op);
    const int64_t n = f.int64("batch", 1), c = f.int64("channels", 1, 2147483647), hw = f.int64("pixels", 1);
    const DType dt = f.dtype("dtype");
    StoragePtr out = f.buffer("out"), t = f.buffer("t");
    require_elements(out, c, dt, op, "bias gradient");
    require_elements(t, elements(op, {n, c, hw}), dt, op, "output gradient");
    Backend& be = common_backend({out, t}, op);
    be.enqueue(op, [&be, out, t, n, c, hw, dt] { AMR_DISPATCH(be, conv, channel_sum, out->ptr, t->ptr, n, c, hw, dt); });
    return info.Env().Undefined();
  });
}

// convImplicitCounts() → { forward, backwardInput, backwardWeight }: how often each implicit-GEMM path has run
// (process-wide, counted when the work runs), for the tests that check a geometry took it.
Napi::Value ConvImplicitCounts(const Napi::CallbackInfo& info) {
  const conv::ImplicitCounts& c = conv::implicit_counts();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("forward", Napi::Number::New(info.Env(), double(c.forward.load())));
  o.Set("backwardInput", Napi::Number::New(info.Env(), double(c.backward_input.load())));
  o.Set("backwardWeight", Napi::Number::New(info.Env(), double(c.backward_weight.load())));
  return o;
}

}  // namespace

void init_conv_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2d", Napi::Function::New(env, Conv2d));
  exports.Set("conv2dBackwardInput", Napi::Function::New(env, Conv2dBackwardInput));
  exports.Set("conv2dBackwardWeight", Napi::Function::New(env, Conv2dBackwardWeight));
  exports.Set("channelSum", Napi::Function::New(env, ChannelSum));
  exports.Set("convImplicitCounts", Napi::Function::New(env, ConvImplicitCounts));
}

}  // namespace bindings
}  // namespace amr
