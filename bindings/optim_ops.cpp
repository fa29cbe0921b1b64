// The fused AdamW step (one options object read through args.h, its settings checked by optim::unsupported): the
// tensor table is built here and copied to the backend ahead of the kernel. And the global gradient norm.
#include <cstring>
#include <vector>

#include "../native/optim/optim.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// settings = { lr, beta1, beta2, eps, weightDecay, step }: optim::AdamSettings, checked by optim::unsupported.
optim::AdamSettings settings(const Fields& f) {
  const Fields o{f.object("settings"), f.who};
  const optim::AdamSettings s{o.any_number("lr"), o.any_number("beta1"), o.any_number("beta2"), o.any_number("eps"),
                              o.any_number("weightDecay"), o.any_number("step")};
  if (const char* why = optim::unsupported(s)) throw Error(f.who + ": " + why);
  return s;
}

// adamwStep({ entries: [{ param, grad, m, v, master?, n, dtype }], settings })
Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "adamw");
    if (!f.get("entries").IsArray()) throw Error("adamw: entries must be an array");
    Napi::Array entries = f.get("entries").As<Napi::Array>();
    const optim::AdamHyper h = optim::hyper_of(settings(f));

    std::vector<StoragePtr> keep;
    auto table = std::make_shared<std::vector<uint8_t>>(entries.Length() * sizeof(optim::AdamTensor));
    auto* rows = reinterpret_cast<optim::AdamTensor*>(table->data());
    Backend* be = nullptr;
    int64_t total = 0;
    for (uint32_t i = 0; i < entries.Length(); ++i) {
      if (!entries.Get(i).IsObject()) throw Error("adamw: parameter " + std::to_string(i) + " is not an object");
      const Fields e{entries.Get(i).As<Napi::Object>(), "adamw: parameter " + std::to_string(i)};
      StoragePtr p = e.buffer("param"), g = e.buffer("grad"), m = e.buffer("m"), v = e.buffer("v");
      StoragePtr master = e.optional_buffer("master");
      const int64_t n = e.int64("n", 0);
      const bool bf16 = e.dtype("dtype") == DType::BF16;
      const optim::AdamTensor row{p->ptr, g->ptr, static_cast<float*>(m->ptr), static_cast<float*>(v->ptr),
                                  master ? static_cast<float*>(master->ptr) : nullptr, n, total, bf16 ? 1 : 0, 0};
      if (const char* why = optim::unsupported(row)) throw Error("adamw: parameter " + std::to_string(i) + " " + why);
      const DType pdt = bf16 ? DType::BF16 : DType::F32;
      const std::string what = "parameter " + std::to_string(i);
      require_elements(p, n, pdt, "adamw", what.c_str());
      require_elements(g, n, pdt, "adamw", (what + " gradient").c_str());
      require_elements(m, n, DType::F32, "adamw", (what + " state").c_str());
      require_elements(v, n, DType::F32, "adamw", (what + " state").c_str());
      if (master) require_elements(master, n, DType::F32, "adamw", (what + " master").c_str());
      Backend& b = common_backend({p, g, m, v, master}, "adamw");
      if (be && &b != be) throw Error("adamw: parameters are on different devices");
      be = &b;
      rows[i] = row;
      total += n;
      for (const StoragePtr& s : {p, g, m, v, master})
        if (s) keep.push_back(s);
    }
    if (!be || total == 0) return info.Env().Undefined();
    StoragePtr device_table = be->allocate(table->size());
    be->upload(device_table, [table] { return table; });
    const int64_t tensors = entries.Length();
    Backend& b = *be;
    be->enqueue("adamw", [&b, device_table, keep, tensors, total, h] {
      AMR_DISPATCH(b, optim, adamw_step, static_cast<const optim::AdamTensor*>(device_table->ptr), tensors, total, h);
    });
    return info.Env().Undefined();
  });
}

// gradNorm([{ grad, n, dtype }], out, maxNorm, apply): out (2 f32) = [Σ g², clip coefficient]; with apply every
// gradient is multiplied by the coefficient on the device, so clipping needs no read-back at all.
Napi::Value GradNorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "gradNorm");
    if (!f.get("entries").IsArray()) throw Error("gradNorm: entries must be an array");
    Napi::Array entries = f.get("entries").As<Napi::Array>();
    StoragePtr out = f.buffer("out");
    require_elements(out, 2, DType::F32, "gradNorm", "output");
    const float max_norm = static_cast<float>(f.any_number("maxNorm"));
    const bool apply = f.flag("apply");
    std::vector<StoragePtr> keep{out};
    std::vector<optim::NormTensor> rows;
    int64_t total = 0;
    for (uint32_t i = 0; i < entries.Length(); ++i) {
      const std::string what = "gradNorm: gradient " + std::to_string(i);
      if (!entries.Get(i).IsObject()) throw Error(what + " is not an object");
      Napi::Object e = entries.Get(i).As<Napi::Object>();
      StoragePtr g = buffer_value(e.Get("grad"), what);
      Napi::Value nv = e.Get("n"), dtv = e.Get("dtype");
      const double nd = nv.IsNumber() ? nv.As<Napi::Number>().DoubleValue() : -1;
      if (!(nd >= 0) || nd != static_cast<double>(static_cast<int64_t>(nd))) throw Error(what + ": n must be a non-negative integer");
      const std::string dt = dtv.IsString() ? dtv.As<Napi::String>().Utf8Value() : "";
      if (dt != "f32" && dt != "bf16") throw Error(what + " must be f32 or bf16");
      const int64_t n = static_cast<int64_t>(nd);
      require_elements(g, n, dt == "bf16" ? DType::BF16 : DType::F32, "gradNorm", ("gradient " + std::to_string(i)).c_str());
      common_backend({out, g}, "gradNorm");
      if (n == 0) continue;
      rows.push_back(optim::NormTensor{g->ptr, n, total, dt == "bf16" ? 1 : 0, 0});
      total += n;
      keep.push_back(g);
    }
    Backend& be = *out->backend;
    // No elements: the kernels still run (and write norm 0, coefficient 1) over one empty row.
    if (rows.empty()) rows.push_back(optim::NormTensor{nullptr, 0, 0, 0, 0});
    auto table = std::make_shared<std::vector<uint8_t>>(rows.size() * sizeof(optim::NormTensor));
    std::memcpy(table->data(), rows.data(), table->size());
    StoragePtr device_table = be.allocate(table->size());
    be.upload(device_table, [table] { return table; });
    StoragePtr partial = be.allocate(static_cast<size_t>(optim::norm_blocks(total)) * sizeof(float));
    const int64_t tensors = static_cast<int64_t>(rows.size());
    be.enqueue("gradNorm", [&be, device_table, partial, keep, tensors, total, max_norm, apply] {
      const auto* t = static_cast<const optim::NormTensor*>(device_table->ptr);
      float* o = static_cast<float*>(keep[0]->ptr);
      AMR_DISPATCH(be, optim, grad_norm, t, tensors, total, max_norm, static_cast<float*>(partial->ptr), o);
      if (apply) AMR_DISPATCH(be, optim, grad_scale, t, tensors, total, o + 1);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_optim_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep));
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm));
}

}  // namespace bindings
}  // namespace amr
