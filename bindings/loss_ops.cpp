// The fused multi-teacher loss: every buffer is checked against the sizes it must hold (naming the teacher), the plan
// is built on the host, and the whole loss is queued as one op.
#include <cmath>
#include <string>
#include <vector>

#include "../native/loss/loss.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

constexpr const char* kOp = "multiTeacherLoss";

// Reads one part (summary or features) of a term: the student and teacher buffers, their dtypes, the optional
// gradient output and the scalar output. Returns the channel count.
int read_part(const Fields& p, int64_t student_n_per_channel, int64_t teacher_n_per_channel, loss::In& s, loss::In& t,
              loss::Out& grad, float*& out, std::vector<StoragePtr>& keep) {
  const int channels = p.integer("channels", 1);
  const DType sd = p.dtype("studentDtype"), td = p.dtype("teacherDtype");
  StoragePtr sb = p.buffer("student"), tb = p.buffer("teacher"), ob = p.buffer("out");
  const int64_t sn = elements(p.who, {student_n_per_channel, channels});
  const int64_t tn = elements(p.who, {teacher_n_per_channel, channels});
  require_elements(sb, sn, sd, p.who.c_str(), "student");
  require_elements(tb, tn, td, p.who.c_str(), "teacher");
  require_elements(ob, 1, DType::F32, p.who.c_str(), "out");
  s = loss::In{sb->ptr, sd == DType::BF16};
  t = loss::In{tb->ptr, td == DType::BF16};
  out = static_cast<float*>(ob->ptr);
  keep.insert(keep.end(), {sb, tb, ob});
  if (p.has("grad")) {
    StoragePtr gb = p.buffer("grad");
    require_elements(gb, sn, sd, p.who.c_str(), "grad");
    grad = loss::Out{gb->ptr, sd == DType::BF16};
    keep.push_back(gb);
  }
  return channels;
}

// multiTeacherLoss(terms, mode (0 cosine+smoothl1, 1 mse), alpha, beta, delta, total), each term
// { batch, lambda, gamma, summary?: Part, features?: Part & { studentGrid: [h, w], teacherGrid: [h, w] } } with
// Part = { student, teacher, studentDtype, teacherDtype, channels, grad?, out }.
Napi::Value MultiTeacherLoss(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields args = Fields::of(info, 0, kOp);
    if (!args.get("terms").IsArray()) throw Error(std::string(kOp) + ": terms must be an array");
    Napi::Array terms = args.get("terms").As<Napi::Array>();
    loss::Plan plan;
    plan.mode = static_cast<loss::Mode>(args.choice("mode", {"cosine+smoothl1", "mse"}));
    plan.alpha = args.number("alpha");
    plan.beta = args.number("beta");
    plan.delta = args.number("delta");
    if (!(plan.delta >= 0.f)) throw Error(std::string(kOp) + ": delta must be >= 0");
    // Before the terms are read into the plan's fixed array.
    const std::string why = loss::unsupported_terms(terms.Length());
    if (!why.empty()) throw Error(std::string(kOp) + ": " + why);
    plan.terms = static_cast<int>(terms.Length());
    StoragePtr total = args.buffer("total");
    require_elements(total, 1, DType::F32, kOp, "total");
    plan.total = static_cast<float*>(total->ptr);
    std::vector<StoragePtr> keep{total};
    for (int k = 0; k < plan.terms; ++k) {
      const std::string who = std::string(kOp) + ": teacher " + std::to_string(k);
      if (!terms.Get(k).IsObject()) throw Error(who + ": term must be an object");
      const Fields f{terms.Get(k).As<Napi::Object>(), who};
      loss::Term& t = plan.term[k];
      t.batch = f.integer("batch", 1);
      t.lambda = f.number("lambda");
      t.gamma = f.number("gamma");
      if (f.has("summary"))
        t.cs = read_part(f.part("summary"), t.batch, t.batch, t.ys, t.zs, t.gys, t.out_summary, keep);
      if (f.has("features")) {
        const Fields p = f.part("features");
        Napi::Value sg = p.get("studentGrid"), tg = p.get("teacherGrid");
        if (!sg.IsArray() || !tg.IsArray()) throw Error(p.who + ": studentGrid and teacherGrid must be [h, w]");
        const Fields sgf{sg.As<Napi::Object>(), p.who + " studentGrid"}, tgf{tg.As<Napi::Object>(), p.who + " teacherGrid"};
        t.hs = sgf.integer("0", 1);
        t.ws = sgf.integer("1", 1);
        t.ht = tgf.integer("0", 1);
        t.wt = tgf.integer("1", 1);
        t.cf = read_part(p, elements(p.who, {t.batch, t.hs, t.ws}), elements(p.who, {t.batch, t.ht, t.wt}), t.f, t.g,
                         t.gf, t.out_features, keep);
      }
    }
    Backend* be = nullptr;
    for (const StoragePtr& s : keep) {
      if (be && s->backend != be)
        throw Error(std::string(kOp) + ": tensors are on different devices (" + backend_name(be->kind()) + " and " +
                    backend_name(s->backend->kind()) + ")");
      be = s->backend;
    }
    loss::make_plan(plan);
    StoragePtr scratch = be->allocate(static_cast<size_t>(loss::scratch_bytes(plan)));
    Backend& b = *be;
    b.enqueue(kOp, [&b, plan, keep, scratch] { AMR_DISPATCH(b, loss, multi_teacher, plan, scratch->ptr); });
    return info.Env().Undefined();
  });
}

// lossGradScale({ out, grad, dtype, n, scalar }): out = grad * scalar[0], scalar an f32 one-element buffer.
Napi::Value LossGradScale(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "multiTeacherLoss backward";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), a = f.buffer("grad"), s = f.buffer("scalar");
    const DType dt = f.dtype("dtype");
    const int64_t n = f.int64("n", 1);
    require_elements(out, n, dt, op, "output");
    require_elements(a, n, dt, op, "gradient");
    require_elements(s, 1, DType::F32, op, "scalar");
    Backend& be = common_backend({out, a, s}, op);
    be.enqueue(op, [&be, out, a, s, dt, n] {
      AMR_DISPATCH(be, loss, scale_by, out->ptr, a->ptr, dt, n, static_cast<const float*>(s->ptr));
    });
    return info.Env().Undefined();
  });
}

// lossUnsupported(terms): null when one call takes that many teacher terms, else why not (loss.h's limit).
Napi::Value LossUnsupported(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string why = loss::unsupported_terms(int_arg(info, 0, "lossUnsupported"));
    return why.empty() ? info.Env().Null() : Napi::String::New(info.Env(), why);
  });
}

}  // namespace

void init_loss_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("multiTeacherLoss", Napi::Function::New(env, MultiTeacherLoss));
  exports.Set("lossGradScale", Napi::Function::New(env, LossGradScale));
  exports.Set("lossUnsupported", Napi::Function::New(env, LossUnsupported));
}

}  // namespace bindings
}  // namespace amr
