// Seeded random fills (Philox): argument checks, then the work is queued.
#include "../native/random/random.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// randomFill(out, dtype, n, distribution (0 normal, 1 uniform), seedHi, seedLo)
Napi::Value RandomFill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr out = buffer_arg(info, 0, "random");
    DType dt = dtype_arg(info, 1, "random");
    int64_t n = int_arg(info, 2, "random");
    int64_t dist = int_arg(info, 3, "random");
    uint64_t seed = (static_cast<uint64_t>(int_arg(info, 4, "random")) << 32) |
                    static_cast<uint64_t>(int_arg(info, 5, "random") & 0xffffffff);
    if (dt == DType::I32) throw Error("random: i32 tensors are not supported");
    if (dist > 1) throw Error("random: unknown distribution");
    require_elements(out, n, dt, "random", "output");
    Backend& be = *out->backend;
    auto d = static_cast<random::Distribution>(dist);
    be.enqueue("random", [&be, out, dt, n, d, seed] { AMR_DISPATCH(be, random, fill, out->ptr, dt, n, d, seed); });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_random_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("randomFill", Napi::Function::New(env, RandomFill));
}

}  // namespace bindings
}  // namespace amr
