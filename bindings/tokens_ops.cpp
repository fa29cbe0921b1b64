// Token assembly ops (patchify, assemble, gather-rows): one options object per call read through args.h, each op's
// sizes as one geometry object checked by tokens::unsupported, then the work is queued on the tensors' backend. Shapes and autograd live in ts/ops/tokens.ts; this layer re-checks every size and every row index
// against the buffers, so that a wrong call can never read or write past them.
#include <string>
#include <vector>

#include "../native/tokens/tokens.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// { batch, channels, height, width, patch } (tokens::PatchifyGeometry), each size at least min_size.
tokens::PatchifyGeometry patchify_geometry(const Fields& o, int64_t min_size) {
  const tokens::PatchifyGeometry g{o.int64("batch", min_size), o.int64("channels", min_size), o.int64("height", min_size),
                                   o.int64("width", min_size), o.int64("patch", 1)};
  elements(o.who, {g.batch, g.channels, g.height, g.width});
  return g;
}

// patchify({ out, outDtype, x, xDtype, mean, std, geometry })
Napi::Value Patchify(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "patchify";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), x = f.buffer("x"), mean = f.buffer("mean"), std = f.buffer("std");
    const DType out_dt = f.dtype("outDtype"), x_dt = f.dtype("xDtype");
    const tokens::PatchifyGeometry g = patchify_geometry(f.part("geometry"), 1);
    const std::string why = tokens::unsupported(g);
    if (!why.empty()) throw Error(std::string(op) + ": " + why);
    require_elements(x, g.batch * g.channels * g.height * g.width, x_dt, op, "the image");
    require_elements(out, g.out_elements(), out_dt, op, "the output");
    for (const StoragePtr& s : {mean, std}) require_elements(s, g.channels, DType::F32, op, "mean or std");
    Backend& be = common_backend({out, x, mean, std}, op);
    be.enqueue(op, [&be, out, out_dt, x, x_dt, mean, std, g] {
      AMR_DISPATCH(be, tokens, patchify, out->ptr, out_dt, x->ptr, x_dt, static_cast<const float*>(mean->ptr),
                   static_cast<const float*>(std->ptr), g);
    });
    return info.Env().Undefined();
  });
}

// patchifyUnsupported(geometry): null when patchify cuts that geometry, else why not (tokens::unsupported). Sizes
// may be 0: an empty image is a valid question (the op then has nothing to write and makes no call).
Napi::Value PatchifyUnsupported(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string why = tokens::unsupported(patchify_geometry(Fields::of(info, 0, "patchifyUnsupported"), 0));
    return why.empty() ? info.Env().Null() : Napi::String::New(info.Env(), why);
  });
}

// Throws the family's reason a geometry cannot run (tokens::unsupported), naming the op.
template <typename G>
void require_supported(const char* op, const G& g) {
  const std::string why = tokens::unsupported(g);
  if (!why.empty()) throw Error(std::string(op) + ": " + why);
}

// geometry = { batch, prefixRows, rows, dim, prefixBatched, posBatched }: tokens::AssembleGeometry.
tokens::AssembleGeometry assemble_geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  return tokens::AssembleGeometry{o.int64("batch", 0), o.int64("prefixRows", 0), o.int64("rows", 0), o.int64("dim", 1),
                                  o.flag("prefixBatched"), o.flag("posBatched")};
}

// geometry = { batch, inRows, outRows, dim }: tokens::GatherGeometry.
tokens::GatherGeometry gather_geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  return tokens::GatherGeometry{o.int64("batch", 0), o.int64("inRows", 1), o.int64("outRows", 0), o.int64("dim", 1)};
}

// assembleTokens({ out, prefix, patches, pos?, dtype, geometry })
Napi::Value AssembleTokens(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "assembleTokens";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), prefix = f.buffer("prefix"), patches = f.buffer("patches"), pos = f.optional_buffer("pos");
    const tokens::AssembleGeometry g = assemble_geometry(f);
    const DType dt = f.dtype("dtype");
    require_supported(op, g);
    require_elements(out, g.batch * (g.prefix_rows + g.rows) * g.dim, dt, op, "the output");
    require_elements(prefix, (g.prefix_batched ? g.batch : 1) * g.prefix_rows * g.dim, dt, op, "prefix");
    require_elements(patches, g.batch * g.rows * g.dim, dt, op, "patches");
    if (pos) require_elements(pos, (g.pos_batched ? g.batch : 1) * g.rows * g.dim, dt, op, "pos");
    Backend& be = common_backend({out, prefix, patches, pos}, op);
    be.enqueue(op, [&be, out, prefix, patches, pos, g, dt] {
      AMR_DISPATCH(be, tokens, assemble, out->ptr, prefix->ptr, patches->ptr, pos ? pos->ptr : nullptr, g, dt);
    });
    return info.Env().Undefined();
  });
}

// gatherRows({ out, x, starts: Int32Array, sources: Int32Array, dtype, geometry })
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "gatherRows";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), x = f.buffer("x");
    std::vector<int32_t> starts = f.int32s("starts"), sources = f.int32s("sources");
    const tokens::GatherGeometry g = gather_geometry(f);
    const int64_t batch = g.batch, in_rows = g.in_rows, out_rows = g.out_rows, dim = g.dim;
    const DType dt = f.dtype("dtype");
    require_supported(op, g);
    if (int64_t(starts.size()) != out_rows + 1 || starts.front() != 0 || starts.back() != int64_t(sources.size()))
      throw Error(std::string(op) + ": starts must have outRows + 1 entries, from 0 to the number of sources");
    for (size_t r = 0; r + 1 < starts.size(); ++r)
      if (starts[r + 1] < starts[r]) throw Error(std::string(op) + ": starts must not decrease");
    for (int32_t src : sources)
      if (src < 0 || src >= in_rows)
        throw Error(std::string(op) + ": row " + std::to_string(src) + " is out of range for " + std::to_string(in_rows) + " rows");
    require_elements(x, batch * in_rows * dim, dt, op, "the input");
    require_elements(out, batch * out_rows * dim, dt, op, "the output");
    Backend& be = common_backend({out, x}, op);
    // The kernels take int64 rows; the lists go to the device next to each other, ordered before the kernel.
    auto bytes = std::make_shared<std::vector<uint8_t>>((starts.size() + sources.size()) * sizeof(int64_t));
    int64_t* list = reinterpret_cast<int64_t*>(bytes->data());
    for (size_t i = 0; i < starts.size(); ++i) list[i] = starts[i];
    for (size_t i = 0; i < sources.size(); ++i) list[starts.size() + i] = sources[i];
    StoragePtr lists = be.allocate(bytes->size());
    be.upload(lists, [bytes] { return bytes; });
    const size_t n_starts = starts.size();
    be.enqueue(op, [&be, out, x, lists, n_starts, batch, in_rows, out_rows, dim, dt] {
      const int64_t* l = static_cast<const int64_t*>(lists->ptr);
      AMR_DISPATCH(be, tokens, gather_rows, out->ptr, x->ptr, l, l + n_starts, batch, in_rows, out_rows, dim, dt);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_tokens_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("patchify", Napi::Function::New(env, Patchify));
  exports.Set("patchifyUnsupported", Napi::Function::New(env, PatchifyUnsupported));
  exports.Set("assembleTokens", Napi::Function::New(env, AssembleTokens));
  exports.Set("gatherRows", Napi::Function::New(env, GatherRows));
}

}  // namespace bindings
}  // namespace amr
