// Layout ops: the strided copy every data movement of ts/ops/layout.ts is planned as, the reflect / replicate
// pad backward, and the one-dim reduction. The plans come from TypeScript, so this layer bounds the farthest
// element each plan can reach on both sides against the buffers: whatever the plan, no read or write can leave
// them.
#include <cmath>
#include <string>
#include <vector>

#include "../native/layout/layout.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

using layout::Axis;
using layout::CopyPlan;
using layout::kMaxAxes;
using layout::kMaxDims;
using layout::PadMode;

// Offsets stay exact in a double below this, so the bound arithmetic below cannot wrap.
constexpr int64_t kMaxOffset = int64_t(1) << 52;

// The op the call serves, for messages ("permute (layoutCopy): ..."); the native name alone when not given.
std::string who_of(const Napi::CallbackInfo& info, const char* native_name) {
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Value op = info[0].As<Napi::Object>().Get("op");
    if (op.IsString()) return op.As<Napi::String>().Utf8Value() + " (" + native_name + ")";
  }
  return native_name;
}

// An array of n integers in [min, max], each error naming the element ("sizes[2] must be ...").
std::vector<int64_t> int64s(const Fields& f, const char* key, size_t n, int64_t min, int64_t max) {
  Napi::Value v = f.get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != n)
    throw Error(f.who + ": " + key + " must be an array of " + std::to_string(n) + " integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    Napi::Value e = a.Get(static_cast<uint32_t>(i));
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(d == std::floor(d)) || d < double(min) || d > double(max))
      throw Error(f.who + ": " + key + "[" + std::to_string(i) + "] must be an integer in [" + std::to_string(min) +
                  ", " + std::to_string(max) + "]");
    out[i] = static_cast<int64_t>(d);
  }
  return out;
}


// Adds v to a running bound, refusing a total that could pass the exact range of the arithmetic.
void add_bound(int64_t& bound, double v, const std::string& who) {
  if (double(bound) + v > double(kMaxOffset)) throw Error(who + ": the plan reaches past 2^52 elements");
  bound += static_cast<int64_t>(v);
}

// Bounds the two buffers of a call by the elements it reaches, then queues work(backend) on their backend.
// native_name is a literal: the queue keeps it by pointer for an error reported later.
template <typename F>
void queue_checked(const std::string& who, const char* native_name, const StoragePtr& a, int64_t a_elems,
                   const char* a_name, const StoragePtr& b, int64_t b_elems, const char* b_name, DType dt, F work) {
  require_elements(a, a_elems, dt, who.c_str(), a_name);
  require_elements(b, b_elems, dt, who.c_str(), b_name);
  Backend& be = common_backend({a, b}, who.c_str());
  be.enqueue(native_name, [&be, a, b, work] { work(be); });
}

// layoutCopy({ op?, out, x, dtype, sizes, srcStrides, dstStrides, srcOffset, dstOffset, mode?, scale?,
//              axes?: [{ coef, lo, extent, stride, dst }] })
Napi::Value LayoutCopy(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string who = who_of(info, "layoutCopy");
    const Fields f = Fields::of(info, 0, who);
    StoragePtr out = f.buffer("out"), x = f.buffer("x");
    const DType dt = f.storage_dtype("dtype");
    CopyPlan p{};
    Napi::Value sizes = f.get("sizes");
    const size_t rank = sizes.IsArray() ? sizes.As<Napi::Array>().Length() : 0;
    if (!sizes.IsArray() || rank > size_t(kMaxDims))
      throw Error(who + ": sizes must be an array of at most " + std::to_string(kMaxDims) + " integers");
    p.rank = int32_t(rank);
    const auto size = int64s(f, "sizes", rank, 0, kMaxOffset), ss = int64s(f, "srcStrides", rank, 0, kMaxOffset),
               ds = int64s(f, "dstStrides", rank, 0, kMaxOffset);
    p.src_offset = f.has("srcOffset") ? f.int64("srcOffset", 0, kMaxOffset) : 0;
    p.dst_offset = f.has("dstOffset") ? f.int64("dstOffset", 0, kMaxOffset) : 0;
    p.mode = static_cast<PadMode>(f.has("mode") ? f.choice("mode", {"zero", "reflect", "replicate"}) : 0);
    p.scale = f.has("scale") ? f.number("scale") : 1.f;
    if (dt == DType::I32 && p.scale != 1.f) throw Error(who + ": i32 copies cannot scale");
    // The farthest element each side can reach: every dimension at its last index, every axis at its last
    // coordinate (a source axis reads only coordinates brought inside its extent, a destination axis writes only
    // those inside).
    int64_t src_max = p.src_offset, dst_max = p.dst_offset;
    double total = 1;
    for (size_t d = 0; d < rank; ++d) {
      p.size[d] = size[d];
      p.src_stride[d] = ss[d];
      p.dst_stride[d] = ds[d];
      total *= double(size[d]);
      add_bound(src_max, double(size[d] > 0 ? size[d] - 1 : 0) * double(ss[d]), who);
      add_bound(dst_max, double(size[d] > 0 ? size[d] - 1 : 0) * double(ds[d]), who);
    }
    if (total > double(kMaxOffset)) throw Error(who + ": too many elements");
    if (f.has("axes")) {
      Napi::Value axes = f.get("axes");
      if (!axes.IsArray() || axes.As<Napi::Array>().Length() > size_t(kMaxAxes))
        throw Error(who + ": axes must be an array of at most " + std::to_string(kMaxAxes) + " objects");
      Napi::Array a = axes.As<Napi::Array>();
      p.axes = int32_t(a.Length());
      for (int k = 0; k < p.axes; ++k) {
        if (!a.Get(uint32_t(k)).IsObject()) throw Error(who + ": axes[" + std::to_string(k) + "] must be an object");
        const Fields af{a.Get(uint32_t(k)).As<Napi::Object>(), who + ": axes[" + std::to_string(k) + "]"};
        Axis& ax = p.axis[k];
        const auto coef = int64s(af, "coef", rank, -(int64_t(1) << 31), int64_t(1) << 31);
        for (size_t d = 0; d < rank; ++d) ax.coef[d] = coef[d];
        ax.lo = af.int64("lo", -(int64_t(1) << 40), int64_t(1) << 40);
        ax.dst = af.flag("dst") ? 1 : 0;
        // Reflect and replicate bring a coordinate into [0, extent): there must be one.
        ax.extent = af.int64("extent", ax.dst || p.mode == PadMode::Zero ? 0 : 1, kMaxOffset);
        ax.stride = af.int64("stride", 0, kMaxOffset);
        add_bound(ax.dst ? dst_max : src_max, double(ax.extent > 0 ? ax.extent - 1 : 0) * double(ax.stride), who);
      }
    }
    if (total == 0) return info.Env().Undefined();
    queue_checked(who, "layoutCopy", out, dst_max + 1, "out", x, src_max + 1, "x", dt,
                  [p, out, x, dt](Backend& be) { AMR_DISPATCH(be, layout, copy, p, out->ptr, x->ptr, dt); });
    return info.Env().Undefined();
  });
}

// Throws the family's reason a geometry cannot run (layout::unsupported), prefixed by the part that holds it.
template <typename G>
void require_supported(const Fields& o, const G& g) {
  const std::string why = layout::unsupported(g);
  if (!why.empty()) throw Error(o.who + ": " + why);
}

// geometry = { planes, inner?, inH, inW, outH, outW, top, left, mode: 'reflect'|'replicate' }: layout::PadGeometry.
layout::PadGeometry pad_geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  constexpr int kSide = 1 << 29;  // keeps |lo| + 2·(in − 1) inside int32
  layout::PadGeometry g{};
  g.planes = o.int64("planes", 0, kMaxOffset);
  g.inner = o.has("inner") ? o.int64("inner", 1, kMaxOffset) : 1;
  g.in_h = o.integer("inH", 1, kSide);
  g.in_w = o.integer("inW", 1, kSide);
  g.out_h = o.integer("outH", 0, kSide);
  g.out_w = o.integer("outW", 0, kSide);
  g.top = o.integer("top", -kSide, kSide);
  g.left = o.integer("left", -kSide, kSide);
  g.mode = o.choice("mode", {"reflect", "replicate"}) == 0 ? PadMode::Reflect : PadMode::Replicate;
  require_supported(o, g);
  return g;
}

// geometry = { outer, n, inner, alpha }: layout::ReduceGeometry.
layout::ReduceGeometry reduce_geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  const layout::ReduceGeometry g{o.int64("outer", 0, kMaxOffset), o.int64("n", 0, kMaxOffset),
                                 o.int64("inner", 0, kMaxOffset), o.number("alpha")};
  require_supported(o, g);
  return g;
}

// layoutPadBackward({ op?, gradIn, gradOut, dtype, geometry }): gradIn [planes, inH, inW, inner] gathers gradOut
// [planes, outH, outW, inner] for mode 'reflect' or 'replicate'.
Napi::Value LayoutPadBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string who = who_of(info, "layoutPadBackward");
    const Fields f = Fields::of(info, 0, who);
    StoragePtr gi = f.buffer("gradIn"), go = f.buffer("gradOut");
    const DType dt = f.dtype("dtype");
    const layout::PadGeometry g = pad_geometry(f);
    const int64_t n_in = g.planes * g.in_h * g.in_w * g.inner, n_out = g.planes * g.out_h * g.out_w * g.inner;
    if (n_in == 0) return info.Env().Undefined();
    queue_checked(who, "layoutPadBackward", gi, n_in, "gradIn", go, n_out, "gradOut", dt,
                  [g, gi, go, dt](Backend& be) { AMR_DISPATCH(be, layout, pad_backward, g, gi->ptr, go->ptr, dt); });
    return info.Env().Undefined();
  });
}

// layoutReduce({ op?, out, x, dtype, geometry }): out [outer, inner] = alpha · Σ x [outer, n, inner].
Napi::Value LayoutReduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string who = who_of(info, "layoutReduce");
    const Fields f = Fields::of(info, 0, who);
    StoragePtr out = f.buffer("out"), x = f.buffer("x");
    const DType dt = f.dtype("dtype");
    const layout::ReduceGeometry g = reduce_geometry(f);
    const int64_t n_out = g.outer * g.inner, n_in = g.outer * g.n * g.inner;
    if (n_out == 0) return info.Env().Undefined();
    queue_checked(who, "layoutReduce", out, n_out, "out", x, n_in, "x", dt,
                  [g, out, x, dt](Backend& be) { AMR_DISPATCH(be, layout, reduce, g, out->ptr, x->ptr, dt); });
    return info.Env().Undefined();
  });
}

// layoutUnsupported(rank): null when the layout ops take tensors of that rank, else why not (layout.h's limit).
Napi::Value LayoutUnsupported(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string why = layout::unsupported_rank(int_arg(info, 0, "layoutUnsupported"));
    return why.empty() ? info.Env().Null() : Napi::String::New(info.Env(), why);
  });
}

}  // namespace

void init_layout_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("layoutCopy", Napi::Function::New(env, LayoutCopy));
  exports.Set("layoutPadBackward", Napi::Function::New(env, LayoutPadBackward));
  exports.Set("layoutReduce", Napi::Function::New(env, LayoutReduce));
  exports.Set("layoutUnsupported", Napi::Function::New(env, LayoutUnsupported));
}

}  // namespace bindings
}  // namespace amr
