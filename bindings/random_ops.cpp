// Seeded random fills (Philox): argument checks, then the work is queued.
#include "../native/random/random.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// randomFill({ out, dtype, n, distribution: 'normal' | 'uniform', seedHi, seedLo }): the 64-bit seed in two halves
Napi::Value RandomFill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "random");
    StoragePtr out = f.buffer("out");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 1);
    const int dist = f.choice("distribution", {"normal", "uniform"});
    const uint64_t seed = (static_cast<uint64_t>(f.int64("seedHi", 0, 0xffffffffLL)) << 32) |
                          static_cast<uint64_t>(f.int64("seedLo", 0, 0xffffffffLL));
    if (const char* why = random::unsupported(dt)) throw Error(std::string("random: ") + why);
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
