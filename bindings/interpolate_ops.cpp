// Interpolation ops (resize, CPE eval crop, CPE train crop): argument checks, then the work is queued on the
// tensors' backend. Shapes and autograd live in ts/ops/interpolate.ts; this layer re-checks every size against
// the buffers so that a wrong call can never read or write past them.
#include <limits>
#include <string>

#include "../native/interpolate/interpolate.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

using interpolate::Geometry;
using interpolate::Layout;
using interpolate::Mode;

// The kernels index elements with 32-bit integers.
constexpr int64_t kMaxElements = std::numeric_limits<int32_t>::max();

int positive_field(const Napi::Object& o, const char* key, const char* op) {
  Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!(d >= 1 && d <= kMaxElements && d == static_cast<double>(static_cast<int64_t>(d))))
    throw Error(std::string(op) + ": geometry." + key + " must be a positive integer");
  return static_cast<int>(d);
}

std::string string_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
}

// geometry = { layout: 'NCHW'|'NLC', mode: 'bilinear'|'nearest'|'gridSample', alignCorners, batch, channels,
//              inH, inW, outH, outW, virtH, virtW }
Geometry geometry_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || !info[i].IsObject()) throw Error(std::string(op) + ": argument " + std::to_string(i) + " must be a geometry object");
  Napi::Object o = info[i].As<Napi::Object>();
  Geometry g{};
  const std::string layout = string_field(o, "layout"), mode = string_field(o, "mode");
  if (layout == "NCHW") g.layout = Layout::NCHW;
  else if (layout == "NLC") g.layout = Layout::NLC;
  else throw Error(std::string(op) + ": unknown layout '" + layout + "' (expected NCHW or NLC)");
  if (mode == "bilinear") g.mode = Mode::Bilinear;
  else if (mode == "nearest") g.mode = Mode::Nearest;
  else if (mode == "gridSample") g.mode = Mode::GridSample;
  else throw Error(std::string(op) + ": unknown mode '" + mode + "' (expected bilinear, nearest or gridSample)");
  g.align_corners = o.Get("alignCorners").ToBoolean().Value();
  g.batch = positive_field(o, "batch", op);
  g.channels = positive_field(o, "channels", op);
  g.in_h = positive_field(o, "inH", op);
  g.in_w = positive_field(o, "inW", op);
  g.out_h = positive_field(o, "outH", op);
  g.out_w = positive_field(o, "outW", op);
  if (g.mode == Mode::GridSample) {
    g.virt_h = g.out_h;
    g.virt_w = g.out_w;
  } else {
    g.virt_h = positive_field(o, "virtH", op);
    g.virt_w = positive_field(o, "virtW", op);
    if (g.out_h > g.virt_h || g.out_w > g.virt_w)
      throw Error(std::string(op) + ": the output (" + std::to_string(g.out_h) + "x" + std::to_string(g.out_w) +
                  ") must fit in the resized map (" + std::to_string(g.virt_h) + "x" + std::to_string(g.virt_w) + ")");
  }
  if (interpolate::input_elements(g) > kMaxElements || interpolate::output_elements(g) > kMaxElements ||
      int64_t(interpolate::plan_samples(g)) * (int64_t(g.in_h) + g.in_w) > kMaxElements / 4)
    throw Error(std::string(op) + ": tensors of 2^31 elements or more are not supported");
  return g;
}

// Optional buffer: null/undefined gives an empty pointer.
StoragePtr optional_buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return buffer_arg(info, i, op);
}

// The crop parameters GridSample reads: present, f32-sized, and as long as the batch; absent otherwise.
void check_crop_params(const Geometry& g, const StoragePtr& scale, const StoragePtr& offset, const StoragePtr& keep,
                       const char* op) {
  const bool grid = g.mode == Mode::GridSample;
  if (grid != bool(scale) || grid != bool(offset) || grid != bool(keep))
    throw Error(std::string(op) + ": scale, offset and keep are given exactly for mode gridSample");
  if (!grid) return;
  require_elements(scale, 2 * int64_t(g.batch), DType::F32, op, "scale");
  require_elements(offset, 2 * int64_t(g.batch), DType::F32, op, "offset");
  require_elements(keep, g.batch, DType::F32, op, "keep");
}

Geometry with_crop_pointers(Geometry g, const StoragePtr& scale, const StoragePtr& offset, const StoragePtr& keep) {
  g.scale = scale ? static_cast<const float*>(scale->ptr) : nullptr;
  g.offset = offset ? static_cast<const float*>(offset->ptr) : nullptr;
  g.keep = keep ? static_cast<const float*>(keep->ptr) : nullptr;
  return g;
}

// interpolate(out, x, dtype, geometry, scale, offset, keep)
Napi::Value Interpolate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "interpolate";
    StoragePtr out = buffer_arg(info, 0, op), x = buffer_arg(info, 1, op);
    DType dt = dtype_arg(info, 2, op);
    Geometry g = geometry_arg(info, 3, op);
    StoragePtr scale = optional_buffer_arg(info, 4, op), offset = optional_buffer_arg(info, 5, op),
               keep = optional_buffer_arg(info, 6, op);
    if (dt == DType::I32) throw Error("interpolate: i32 tensors are not supported");
    require_elements(out, interpolate::output_elements(g), dt, op, "output");
    require_elements(x, interpolate::input_elements(g), dt, op, "input");
    check_crop_params(g, scale, offset, keep, op);
    Backend& be = common_backend({out, x, scale, offset, keep}, op);
    g = with_crop_pointers(g, scale, offset, keep);
    be.enqueue(op, [&be, g, out, x, dt, scale, offset, keep] {
      AMR_DISPATCH(be, interpolate, forward, g, out->ptr, x->ptr, dt);
    });
    return info.Env().Undefined();
  });
}

// interpolateBackward(gradIn, gradOut, dtype, geometry, scale, offset, keep): gradIn is written, not added to.
Napi::Value InterpolateBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "interpolate backward";
    StoragePtr grad_in = buffer_arg(info, 0, op), grad_out = buffer_arg(info, 1, op);
    DType dt = dtype_arg(info, 2, op);
    Geometry g = geometry_arg(info, 3, op);
    StoragePtr scale = optional_buffer_arg(info, 4, op), offset = optional_buffer_arg(info, 5, op),
               keep = optional_buffer_arg(info, 6, op);
    if (dt == DType::I32) throw Error("interpolate backward: i32 tensors are not supported");
    require_elements(grad_in, interpolate::input_elements(g), dt, op, "input gradient");
    require_elements(grad_out, interpolate::output_elements(g), dt, op, "output gradient");
    check_crop_params(g, scale, offset, keep, op);
    Backend& be = common_backend({grad_in, grad_out, scale, offset, keep}, op);
    g = with_crop_pointers(g, scale, offset, keep);
    StoragePtr scratch = be.allocate(static_cast<size_t>(interpolate::backward_scratch_bytes(g)));
    be.enqueue(op, [&be, g, grad_in, grad_out, dt, scale, offset, keep, scratch] {
      AMR_DISPATCH(be, interpolate, backward, g, grad_in->ptr, grad_out->ptr, dt, scratch->ptr);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_interpolate_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("interpolate", Napi::Function::New(env, Interpolate));
  exports.Set("interpolateBackward", Napi::Function::New(env, InterpolateBackward));
}

}  // namespace bindings
}  // namespace amr
