// The GPU emulator's self-tests (selftest.h) for test/sim.test.ts, in the test-only addon am_radio_selftest.node
// (never in the shipped am_radio.node): each function checks its buffers' sizes here and queues the kernel on their
// backend (sim, or cuda on a GPU; never cpu). Also the kernels that probe the emulator's own semantics
// (rule_checks.cpp), on sim only.
#include <climits>
#include <exception>
#include <string>
#include <thread>

#include "bindings/buffer.h"
#include "bindings/dispatch.h"
#include "selftest.h"

#ifdef AMR_WITH_SIM
#include "rule_checks.h"
#endif

// Calls amr::{sim,cuda}::selftest::fn(args..., stream) for the backend; the self-tests have no cpu version.
#define AMR_SELFTEST(be, fn, ...)                                                 \
  do {                                                                            \
    const ::amr::GpuStream amr_stream_ = (be).gpu_stream();                       \
    (void)amr_stream_;                                                            \
    switch ((be).kind()) {                                                        \
      case ::amr::BackendKind::Cpu:                                               \
        throw ::amr::Error("selftest: runs on sim or cuda only");                 \
      case ::amr::BackendKind::Sim:                                               \
        AMR_IF_SIM(::amr::sim::selftest::fn(__VA_ARGS__, amr_stream_));           \
        break;                                                                    \
      case ::amr::BackendKind::Cuda:                                              \
        AMR_IF_CUDA(::amr::cuda::selftest::fn(__VA_ARGS__, amr_stream_));         \
        break;                                                                    \
    }                                                                             \
  } while (0)

namespace amr {
namespace bindings {
namespace {

int int32_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const int64_t v = int_arg(info, i, op);
  if (v > INT_MAX) throw Error(std::string(op) + ": argument " + std::to_string(i) + " is too large");
  return static_cast<int>(v);
}

bool bool_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || !info[i].IsBoolean())
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": argument " + std::to_string(i) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

// a * b * c without overflow (sizes come from JS).
int64_t product(const char* op, int64_t a, int64_t b, int64_t c = 1) {
  int64_t ab, abc;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) throw Error(std::string(op) + ": size too large");
  return abc;
}

// The backend of the buffers, refused up front when it cannot run a self-test.
Backend& selftest_backend(std::initializer_list<StoragePtr> buffers, const char* op, bool sim_only = false) {
  Backend& be = common_backend(buffers, op);
  if (be.kind() == BackendKind::Cpu) throw Error(std::string(op) + ": runs on sim or cuda only");
  if (sim_only && be.kind() != BackendKind::Sim)
    throw Error(std::string(op) + ": sim only (the kernel is meant to fail; never run it on a GPU)");
  return be;
}

// Sizes: f32 / i32 / u32 arrays are counted as 4-byte elements, bf16 and f16 bit patterns as 2-byte ones.
constexpr DType kU16 = DType::BF16, kU32 = DType::I32;

// selftestBlockSum(x, n, blockSums, blocks, threads)
Napi::Value BlockSum(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest block_sum";
    StoragePtr x = buffer_arg(info, 0, op), sums = buffer_arg(info, 2, op);
    const int n = int32_arg(info, 1, op), blocks = int32_arg(info, 3, op), threads = int32_arg(info, 4, op);
    require_elements(x, n, DType::F32, op, "x");
    require_elements(sums, blocks, DType::F32, op, "blockSums");
    Backend& be = selftest_backend({x, sums}, op);
    be.enqueue(op, [&be, x, n, sums, blocks, threads] {
      AMR_SELFTEST(be, block_sum, static_cast<const float*>(x->ptr), n, static_cast<float*>(sums->ptr), blocks, threads);
    });
    return info.Env().Undefined();
  });
}

// selftestNeighborExchange(in, out, blocks, threads, useBarrier)
Napi::Value NeighborExchange(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest neighbor_exchange";
    StoragePtr in = buffer_arg(info, 0, op), out = buffer_arg(info, 1, op);
    const int blocks = int32_arg(info, 2, op), threads = int32_arg(info, 3, op);
    const bool barrier = bool_arg(info, 4, op);
    const int64_t total = product(op, blocks, threads);
    require_elements(in, total, DType::F32, op, "in");
    require_elements(out, total, DType::F32, op, "out");
    Backend& be = selftest_backend({in, out}, op);
    be.enqueue(op, [&be, in, out, blocks, threads, barrier] {
      AMR_SELFTEST(be, neighbor_exchange, static_cast<const float*>(in->ptr), static_cast<float*>(out->ptr), blocks, threads,
                   barrier);
    });
    return info.Env().Undefined();
  });
}

// selftestGemmBf16(A, B, C, M, N, K, bIsKN): A, B raw bf16 bits, C f32.
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest gemm_bf16";
    StoragePtr a = buffer_arg(info, 0, op), b = buffer_arg(info, 1, op), c = buffer_arg(info, 2, op);
    const int m = int32_arg(info, 3, op), n = int32_arg(info, 4, op), k = int32_arg(info, 5, op);
    const bool kn = bool_arg(info, 6, op);
    require_elements(a, product(op, m, k), kU16, op, "A");
    require_elements(b, product(op, n, k), kU16, op, "B");
    require_elements(c, product(op, m, n), DType::F32, op, "C");
    Backend& be = selftest_backend({a, b, c}, op);
    be.enqueue(op, [&be, a, b, c, m, n, k, kn] {
      AMR_SELFTEST(be, gemm_bf16, static_cast<const uint16_t*>(a->ptr), static_cast<const uint16_t*>(b->ptr),
                   static_cast<float*>(c->ptr), m, n, k, kn);
    });
    return info.Env().Undefined();
  });
}

// selftestRoundTrip(in, n, bf16Bits, bf16Back, bf16Pair, f16Bits, f16Back)
Napi::Value RoundTrip(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest round_trip";
    StoragePtr in = buffer_arg(info, 0, op), bb = buffer_arg(info, 2, op), bback = buffer_arg(info, 3, op),
               pair = buffer_arg(info, 4, op), hb = buffer_arg(info, 5, op), hback = buffer_arg(info, 6, op);
    const int n = int32_arg(info, 1, op);
    require_elements(in, n, DType::F32, op, "in");
    require_elements(bb, n, kU16, op, "bf16Bits");
    require_elements(bback, n, DType::F32, op, "bf16Back");
    require_elements(pair, product(op, n, 2), DType::F32, op, "bf16Pair");
    require_elements(hb, n, kU16, op, "f16Bits");
    require_elements(hback, n, DType::F32, op, "f16Back");
    Backend& be = selftest_backend({in, bb, bback, pair, hb, hback}, op);
    be.enqueue(op, [&be, in, n, bb, bback, pair, hb, hback] {
      AMR_SELFTEST(be, round_trip, static_cast<const float*>(in->ptr), n, static_cast<uint16_t*>(bb->ptr),
                   static_cast<float*>(bback->ptr), static_cast<float*>(pair->ptr), static_cast<uint16_t*>(hb->ptr),
                   static_cast<float*>(hback->ptr));
    });
    return info.Env().Undefined();
  });
}

// selftestWarpOps(in, out, blocks, threads): out has kSelftestWarpOpsOutputs i32 per thread.
Napi::Value WarpOps(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest warp_ops";
    StoragePtr in = buffer_arg(info, 0, op), out = buffer_arg(info, 1, op);
    const int blocks = int32_arg(info, 2, op), threads = int32_arg(info, 3, op);
    require_elements(in, product(op, blocks, threads), DType::I32, op, "in");
    require_elements(out, product(op, blocks, threads, kSelftestWarpOpsOutputs), DType::I32, op, "out");
    Backend& be = selftest_backend({in, out}, op);
    be.enqueue(op, [&be, in, out, blocks, threads] {
      AMR_SELFTEST(be, warp_ops, static_cast<const int*>(in->ptr), static_cast<int*>(out->ptr), blocks, threads);
    });
    return info.Env().Undefined();
  });
}

// selftestPartialBarrier(out, threads) and selftestDynamicSmemOob(out, threads): sim only, they must fail.
Napi::Value PartialBarrier(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest partial_barrier";
    StoragePtr out = buffer_arg(info, 0, op);
    const int threads = int32_arg(info, 1, op);
    require_elements(out, threads, DType::I32, op, "out");
    Backend& be = selftest_backend({out}, op, true);
    be.enqueue(op, [&be, out, threads] { AMR_SELFTEST(be, partial_barrier, static_cast<int*>(out->ptr), threads); });
    return info.Env().Undefined();
  });
}

Napi::Value DynamicSmemOob(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest dynamic_smem_oob";
    StoragePtr out = buffer_arg(info, 0, op);
    const int threads = int32_arg(info, 1, op);
    require_elements(out, threads, DType::F32, op, "out");
    Backend& be = selftest_backend({out}, op, true);
    be.enqueue(op, [&be, out, threads] { AMR_SELFTEST(be, dynamic_smem_oob, static_cast<float*>(out->ptr), threads); });
    return info.Env().Undefined();
  });
}

// selftestCpAsyncVisibility(in, out): 512 floats in, 5 per thread (64 threads) out.
Napi::Value CpAsyncVisibility(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest cp_async_visibility";
    StoragePtr in = buffer_arg(info, 0, op), out = buffer_arg(info, 1, op);
    require_elements(in, 512, DType::F32, op, "in");
    require_elements(out, 5 * 64, DType::F32, op, "out");
    Backend& be = selftest_backend({in, out}, op);
    be.enqueue(op, [&be, in, out] {
      AMR_SELFTEST(be, cp_async_visibility, static_cast<const float*>(in->ptr), static_cast<float*>(out->ptr));
    });
    return info.Env().Undefined();
  });
}

// selftestSharedPoison(out, blocks): 2 floats per thread, 64 threads per block.
Napi::Value SharedPoison(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest shared_poison";
    StoragePtr out = buffer_arg(info, 0, op);
    const int blocks = int32_arg(info, 1, op);
    require_elements(out, product(op, blocks, 64 * 2), DType::F32, op, "out");
    Backend& be = selftest_backend({out}, op);
    be.enqueue(op, [&be, out, blocks] { AMR_SELFTEST(be, shared_poison, static_cast<float*>(out->ptr), blocks); });
    return info.Env().Undefined();
  });
}

// selftestLdmatrixLayouts(out): kSelftestLdmatrixRegs u32 per lane, one warp.
Napi::Value LdmatrixLayouts(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest ldmatrix_layouts";
    StoragePtr out = buffer_arg(info, 0, op);
    require_elements(out, 32 * kSelftestLdmatrixRegs, kU32, op, "out");
    Backend& be = selftest_backend({out}, op);
    be.enqueue(op, [&be, out] { AMR_SELFTEST(be, ldmatrix_layouts, static_cast<uint32_t*>(out->ptr)); });
    return info.Env().Undefined();
  });
}

// selftestMmaLayouts(aBf16, bBf16, aF16, bF16, c, d): A 16x16 and B 16x8 bit patterns, C 16x8 f32, D 3x16x8 f32.
Napi::Value MmaLayouts(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest mma_layouts";
    StoragePtr ab = buffer_arg(info, 0, op), bb = buffer_arg(info, 1, op), ah = buffer_arg(info, 2, op),
               bh = buffer_arg(info, 3, op), c = buffer_arg(info, 4, op), d = buffer_arg(info, 5, op);
    require_elements(ab, 256, kU16, op, "aBf16");
    require_elements(bb, 128, kU16, op, "bBf16");
    require_elements(ah, 256, kU16, op, "aF16");
    require_elements(bh, 128, kU16, op, "bF16");
    require_elements(c, 128, DType::F32, op, "c");
    require_elements(d, 384, DType::F32, op, "d");
    Backend& be = selftest_backend({ab, bb, ah, bh, c, d}, op);
    be.enqueue(op, [&be, ab, bb, ah, bh, c, d] {
      AMR_SELFTEST(be, mma_layouts, static_cast<const uint16_t*>(ab->ptr), static_cast<const uint16_t*>(bb->ptr),
                   static_cast<const uint16_t*>(ah->ptr), static_cast<const uint16_t*>(bh->ptr),
                   static_cast<const float*>(c->ptr), static_cast<float*>(d->ptr));
    });
    return info.Env().Undefined();
  });
}

#ifdef AMR_WITH_SIM
// selftestSimKernel(name, out): one of the emulator-semantics kernels of rule_checks.cpp, on sim.
Napi::Value SimKernel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest sim kernel";
    const std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    const int64_t bytes = sim::dev::kernel_output_bytes(name);
    if (bytes < 0) throw Error(std::string(op) + ": unknown kernel '" + name + "'");
    StoragePtr out = buffer_arg(info, 1, op);
    require_elements(out, bytes / 4, DType::I32, op, "out");
    Backend& be = selftest_backend({out}, op, true);
    be.enqueue(op, [name, out] { sim::dev::run_kernel(name, out->ptr); });
    return info.Env().Undefined();
  });
}

// selftestSimConcurrentLaunches(x, n, sums1, sums2): 20 block_sum launches (8 blocks) into each of sums1 and
// sums2, from the sim queue thread and a second OS thread at once.
Napi::Value SimConcurrentLaunches(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "selftest concurrent launches";
    StoragePtr x = buffer_arg(info, 0, op), s1 = buffer_arg(info, 2, op), s2 = buffer_arg(info, 3, op);
    const int n = int32_arg(info, 1, op);
    require_elements(x, n, DType::F32, op, "x");
    require_elements(s1, 8, DType::F32, op, "sums1");
    require_elements(s2, 8, DType::F32, op, "sums2");
    Backend& be = selftest_backend({x, s1, s2}, op, true);
    be.enqueue(op, [x, n, s1, s2] {
      sim::dev::concurrent_launches(static_cast<const float*>(x->ptr), n, static_cast<float*>(s1->ptr),
                                    static_cast<float*>(s2->ptr));
    });
    return info.Env().Undefined();
  });
}
#endif

}  // namespace

void init_selftest_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("selftestBlockSum", Napi::Function::New(env, BlockSum));
  exports.Set("selftestNeighborExchange", Napi::Function::New(env, NeighborExchange));
  exports.Set("selftestGemmBf16", Napi::Function::New(env, GemmBf16));
  exports.Set("selftestRoundTrip", Napi::Function::New(env, RoundTrip));
  exports.Set("selftestWarpOps", Napi::Function::New(env, WarpOps));
  exports.Set("selftestPartialBarrier", Napi::Function::New(env, PartialBarrier));
  exports.Set("selftestDynamicSmemOob", Napi::Function::New(env, DynamicSmemOob));
  exports.Set("selftestCpAsyncVisibility", Napi::Function::New(env, CpAsyncVisibility));
  exports.Set("selftestSharedPoison", Napi::Function::New(env, SharedPoison));
  exports.Set("selftestLdmatrixLayouts", Napi::Function::New(env, LdmatrixLayouts));
  exports.Set("selftestMmaLayouts", Napi::Function::New(env, MmaLayouts));
#ifdef AMR_WITH_SIM
  exports.Set("selftestSimKernel", Napi::Function::New(env, SimKernel));
  exports.Set("selftestSimConcurrentLaunches", Napi::Function::New(env, SimConcurrentLaunches));
#endif
}

}  // namespace bindings
}  // namespace amr

