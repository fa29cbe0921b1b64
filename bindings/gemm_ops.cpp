// Matrix products with fused epilogues, and the cpu backend's BLAS and tile switches.
#include "../native/gemm/gemm.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

StoragePtr optional_buffer(const Napi::Object& o, const char* key, const char* op) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  return buffer_value(v, std::string(op) + ": " + key);
}

int64_t field_int(const Napi::Object& o, const char* key, const char* op) {
  Napi::Value v = o.Get(key);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Error(std::string(op) + ": " + key + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

bool field_bool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

// Elements an operand spans: the last batch entry's start plus one matrix.
int64_t span(int64_t batch, int64_t stride, int64_t matrix) { return batch > 0 ? (batch - 1) * stride + matrix : 0; }

// gemm({ a, b, c, m, n, k, batch, transA, transB, strideA, strideB, strideC, bias, activation, residual,
//        preactivation, dtype })
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "matmul";
    if (info.Length() < 1 || !info[0].IsObject()) throw Error("matmul: expected an argument object");
    Napi::Object o = info[0].As<Napi::Object>();
    StoragePtr a = optional_buffer(o, "a", op), b = optional_buffer(o, "b", op), c = optional_buffer(o, "c", op);
    if (!a || !b || !c) throw Error("matmul: a, b and c are required");
    StoragePtr bias = optional_buffer(o, "bias", op), res = optional_buffer(o, "residual", op);
    StoragePtr pre = optional_buffer(o, "preactivation", op);
    gemm::GemmArgs g;
    g.m = field_int(o, "m", op);
    g.n = field_int(o, "n", op);
    g.k = field_int(o, "k", op);
    g.batch = field_int(o, "batch", op);
    g.stride_a = field_int(o, "strideA", op);
    g.stride_b = field_int(o, "strideB", op);
    g.stride_c = field_int(o, "strideC", op);
    g.trans_a = field_bool(o, "transA");
    g.trans_b = field_bool(o, "transB");
    const int64_t act = field_int(o, "activation", op);
    // The kinds the epilogue is tested with (linear's ACTIVATION_CODE); silu and sigmoid run standalone only.
    if (act != 0 && act != 1 && act != 2 && act != 5 && act != 6) throw Error("matmul: unknown activation");
    g.activation = static_cast<gemm::Activation>(act);
    Napi::Value dtv = o.Get("dtype");
    std::string dts = dtv.IsString() ? dtv.As<Napi::String>().Utf8Value() : "";
    if (dts != "f32" && dts != "bf16") throw Error("matmul: dtype must be f32 or bf16");
    g.dtype = dts == "f32" ? DType::F32 : DType::BF16;
    require_elements(a, span(g.batch, g.stride_a, g.m * g.k), g.dtype, op, "a");
    require_elements(b, span(g.batch, g.stride_b, g.k * g.n), g.dtype, op, "b");
    require_elements(c, span(g.batch, g.stride_c, g.m * g.n), g.dtype, op, "c");
    if (bias) require_elements(bias, g.n, g.dtype, op, "bias");
    if (res) require_elements(res, span(g.batch, g.stride_c, g.m * g.n), g.dtype, op, "residual");
    if (pre) require_elements(pre, span(g.batch, g.stride_c, g.m * g.n), g.dtype, op, "preactivation");
    Backend& be = common_backend({a, b, c, bias, res, pre}, op);
    be.enqueue(op, [&be, g, a, b, c, bias, res, pre]() mutable {
      g.a = a->ptr;
      g.b = b->ptr;
      g.c = c->ptr;
      g.bias = bias ? bias->ptr : nullptr;
      g.residual = res ? res->ptr : nullptr;
      g.preactivation = pre ? pre->ptr : nullptr;
      AMR_DISPATCH(be, gemm, gemm, g);
    });
    return info.Env().Undefined();
  });
}

Napi::Value BlasInfo(const Napi::CallbackInfo& info) {
  gemm::cpu::BlasInfo bi = gemm::cpu::blas_info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("loaded", bi.loaded);
  if (bi.library) o.Set("library", bi.library);
  if (!bi.loaded) o.Set("error", bi.error);
  return o;
}

Napi::Value SetUseBlas(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setUseBlas: expected a boolean");
  gemm::cpu::set_use_blas(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value SetMmaTile(const Napi::CallbackInfo& info) {
  const std::string v = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (v != "auto" && v != "small" && v != "large")
    throw Napi::TypeError::New(info.Env(), "setMmaTile: expected 'auto', 'small' or 'large'");
  gemm::set_mma_tile_choice(v == "small" ? gemm::MmaTileChoice::Small : v == "large" ? gemm::MmaTileChoice::Large : gemm::MmaTileChoice::Auto);
  return info.Env().Undefined();
}

}  // namespace

void init_gemm_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo));
  exports.Set("setUseBlas", Napi::Function::New(env, SetUseBlas));
  exports.Set("setMmaTile", Napi::Function::New(env, SetMmaTile));
}

}  // namespace bindings
}  // namespace amr
