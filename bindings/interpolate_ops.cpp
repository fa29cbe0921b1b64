// Interpolation ops (resize: bilinear, nearest, bicubic, antialias; CPE eval crop, CPE train crop): argument checks, then the work is queued on the
// tensors' backend. Shapes and autograd live in ts/ops/interpolate.ts; this layer asks interpolate::unsupported
// about the geometry and re-checks every size against the buffers so that a wrong call can never read or write
// past them.
#include <string>

#include "../native/interpolate/interpolate.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

using interpolate::Geometry;
using interpolate::Layout;
using interpolate::Mode;

// A scale factor: absent (0, none) or a finite number > 0.
double factor(const Fields& o, const char* key) {
  if (!o.has(key)) return 0.;
  const double v = o.real(key);
  if (!(v > 0.)) throw Error(o.who + ": " + key + " must be a number > 0");
  return v;
}

// geometry = { layout: 'NCHW'|'NLC', mode: 'bilinear'|'nearest'|'gridSample'|'bicubic', alignCorners, antialias?,
//              factorH?, factorW?, batch, channels, inH, inW, outH, outW, virtH, virtW }
Geometry geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  Geometry g{};
  g.layout = o.choice("layout", {"NCHW", "NLC"}) == 0 ? Layout::NCHW : Layout::NLC;
  g.mode = static_cast<Mode>(o.choice("mode", {"bilinear", "nearest", "gridSample", "bicubic"}));
  g.align_corners = o.flag("alignCorners");
  g.antialias = o.flag("antialias");
  g.factor_h = factor(o, "factorH");
  g.factor_w = factor(o, "factorW");
  g.batch = o.integer("batch", 1);
  g.channels = o.integer("channels", 1);
  g.in_h = o.integer("inH", 1);
  g.in_w = o.integer("inW", 1);
  g.out_h = o.integer("outH", 1);
  g.out_w = o.integer("outW", 1);
  // GridSample samples the whole output: its ratio is taken from the output itself.
  g.virt_h = g.mode == Mode::GridSample ? g.out_h : o.integer("virtH", 1);
  g.virt_w = g.mode == Mode::GridSample ? g.out_w : o.integer("virtW", 1);
  const std::string why = interpolate::unsupported(g);
  if (!why.empty()) throw Error(o.who + ": " + why);
  return g;
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

// interpolate({ out, x, dtype, geometry, scale?, offset?, keep? })
Napi::Value Interpolate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "interpolate";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), x = f.buffer("x");
    const DType dt = f.dtype("dtype");
    Geometry g = geometry(f);
    StoragePtr scale = f.optional_buffer("scale"), offset = f.optional_buffer("offset"), keep = f.optional_buffer("keep");
    require_elements(out, interpolate::output_elements(g), dt, op, "output");
    require_elements(x, interpolate::input_elements(g), dt, op, "input");
    check_crop_params(g, scale, offset, keep, op);
    Backend& be = common_backend({out, x, scale, offset, keep}, op);
    g = with_crop_pointers(g, scale, offset, keep);
    // The windowed modes' tables; the other modes need none.
    const int64_t scratch_bytes = interpolate::forward_scratch_bytes(g);
    StoragePtr scratch = scratch_bytes > 0 ? be.allocate(static_cast<size_t>(scratch_bytes)) : nullptr;
    be.enqueue(op, [&be, g, out, x, dt, scale, offset, keep, scratch] {
      AMR_DISPATCH(be, interpolate, forward, g, out->ptr, x->ptr, dt, scratch ? scratch->ptr : nullptr);
    });
    return info.Env().Undefined();
  });
}

// interpolateBackward({ gradIn, gradOut, dtype, geometry, scale?, offset?, keep? }): gradIn is written, not added to.
Napi::Value InterpolateBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "interpolate backward";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr grad_in = f.buffer("gradIn"), grad_out = f.buffer("gradOut");
    const DType dt = f.dtype("dtype");
    Geometry g = geometry(f);
    StoragePtr scale = f.optional_buffer("scale"), offset = f.optional_buffer("offset"), keep = f.optional_buffer("keep");
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
