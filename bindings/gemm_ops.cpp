// Matrix products with fused epilogues (fields read once through args.h, the geometry checked by gemm::unsupported
// and against the buffers), and the cpu backend's BLAS and tile switches.
#include "../native/gemm/cpu_bf16.h"
#include "../native/gemm/cpu_kernel.h"
#include "../native/gemm/cpu_microkernel.h"
#include "../native/gemm/gemm.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// geometry = { batch, m, n, k, transA, transB, strideA, strideB, strideC }: gemm::Geometry.
gemm::Geometry geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  gemm::Geometry g;
  g.batch = o.int64("batch", 0);
  g.m = o.int64("m", 0);
  g.n = o.int64("n", 0);
  g.k = o.int64("k", 0);
  g.trans_a = o.flag("transA");
  g.trans_b = o.flag("transB");
  g.stride_a = o.int64("strideA", 0);
  g.stride_b = o.int64("strideB", 0);
  g.stride_c = o.int64("strideC", 0);
  const std::string why = gemm::unsupported(g);
  if (!why.empty()) throw Error(o.who + ": " + why);
  return g;
}

// gemm({ a, b, c, bias?, residual?, preactivation?, activation, dtype, geometry })
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "matmul";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr a = f.buffer("a"), b = f.buffer("b"), c = f.buffer("c");
    StoragePtr bias = f.optional_buffer("bias"), res = f.optional_buffer("residual");
    StoragePtr pre = f.optional_buffer("preactivation");
    gemm::GemmArgs g;
    static_cast<gemm::Geometry&>(g) = geometry(f);
    const int act = f.integer("activation", 0, 6);
    // The kinds the epilogue is tested with (linear's ACTIVATION_CODE); silu and sigmoid run standalone only.
    if (act != 0 && act != 1 && act != 2 && act != 5 && act != 6) throw Error("matmul: unknown activation");
    g.activation = static_cast<gemm::Activation>(act);
    g.dtype = f.dtype("dtype");
    const int64_t c_span = gemm::c_elements(g);
    require_elements(a, gemm::a_elements(g), g.dtype, op, "a");
    require_elements(b, gemm::b_elements(g), g.dtype, op, "b");
    require_elements(c, c_span, g.dtype, op, "c");
    if (bias) require_elements(bias, g.n, g.dtype, op, "bias");
    if (res) require_elements(res, c_span, g.dtype, op, "residual");
    if (pre) require_elements(pre, c_span, g.dtype, op, "preactivation");
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

// cpuBf16Amx() -> { supported, enabled }: the AMX product path of cpu_bf16.h.
Napi::Value CpuBf16Amx(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("supported", gemm::cpu::bf16_amx_supported());
  o.Set("enabled", gemm::cpu::bf16_amx_enabled());
  return o;
}

Napi::Value SetUseBf16Amx(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setUseBf16Amx: expected a boolean");
  gemm::cpu::set_use_bf16_amx(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value SetMmaTile(const Napi::CallbackInfo& info) {
  const std::string v = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (v != "auto" && v != "small" && v != "large")
    throw Napi::TypeError::New(info.Env(), "setMmaTile: expected 'auto', 'small' or 'large'");
  gemm::set_mma_tile_choice(v == "small" ? gemm::MmaTileChoice::Small : v == "large" ? gemm::MmaTileChoice::Large : gemm::MmaTileChoice::Auto);
  return info.Env().Undefined();
}

// setCpuGemmKernel('auto' | 'avx512' | 'avx2' | 'generic'): false when this CPU cannot run that kernel. The choice
// is process-wide and applies to products queued after it, like setUseBlas.
Napi::Value SetCpuGemmKernel(const Napi::CallbackInfo& info) {
  const std::string v = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (v != "auto" && v != "avx512" && v != "avx2" && v != "generic")
    throw Napi::TypeError::New(info.Env(), "setCpuGemmKernel: expected 'auto', 'avx512', 'avx2' or 'generic'");
  return Napi::Boolean::New(info.Env(), gemm::cpu::set_micro_kernel(v.c_str()));
}

Napi::Value CpuGemmKernel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), gemm::cpu::micro_kernel().name);
}

// cpuSgemmSerial({ a, b, c, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc }): the serial product of
// cpu_kernel.h on f32 cpu buffers, so its leading dimensions, alpha and beta are tested where the kernels that call
// it only use some of them.
Napi::Value CpuSgemmSerial(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "cpuSgemmSerial";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr a = f.buffer("a"), b = f.buffer("b"), c = f.buffer("c");
    const bool ta = f.flag("transA"), tb = f.flag("transB");
    const int64_t m = f.int64("m", 0), n = f.int64("n", 0), k = f.int64("k", 0);
    const int64_t lda = f.int64("lda", 1), ldb = f.int64("ldb", 1), ldc = f.int64("ldc", 1);
    const float alpha = f.number("alpha"), beta = f.number("beta");
    // Rows of the stored matrix and their length, which lda must cover.
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    if (lda < a_cols || ldb < b_cols || ldc < n)
      throw Error(std::string(op) + ": a leading dimension is shorter than its row");
    const auto span = [&](int64_t rows, int64_t cols, int64_t ld) {
      return rows > 0 && cols > 0 ? elements(op, {rows - 1, ld}) + cols : 0;
    };
    require_elements(a, span(a_rows, a_cols, lda), DType::F32, op, "a");
    require_elements(b, span(b_rows, b_cols, ldb), DType::F32, op, "b");
    require_elements(c, span(m, n, ldc), DType::F32, op, "c");
    Backend& be = common_backend({a, b, c}, op);
    if (be.kind() != BackendKind::Cpu) throw Error(std::string(op) + ": takes cpu buffers");
    be.enqueue(op, [=] {
      gemm::cpu::sgemm_serial(ta, tb, m, n, k, alpha, static_cast<const float*>(a->ptr), lda,
                              static_cast<const float*>(b->ptr), ldb, beta, static_cast<float*>(c->ptr), ldc);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_gemm_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo));
  exports.Set("setUseBlas", Napi::Function::New(env, SetUseBlas));
  exports.Set("setMmaTile", Napi::Function::New(env, SetMmaTile));
  exports.Set("cpuBf16Amx", Napi::Function::New(env, CpuBf16Amx));
  exports.Set("setUseBf16Amx", Napi::Function::New(env, SetUseBf16Amx));
  exports.Set("setCpuGemmKernel", Napi::Function::New(env, SetCpuGemmKernel));
  exports.Set("cpuGemmKernel", Napi::Function::New(env, CpuGemmKernel));
  exports.Set("cpuSgemmSerial", Napi::Function::New(env, CpuSgemmSerial));
}

}  // namespace bindings
}  // namespace amr
