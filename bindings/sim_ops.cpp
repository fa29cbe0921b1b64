// Controls of the emulator that users have too (AMR_SIM_SEED's programmatic form): the scheduling seed of sim.
#include <cstdint>

#include "buffer.h"
#include "modules.h"

#ifdef AMR_WITH_SIM
namespace amr {
namespace sim {
void set_seed(uint64_t seed);  // native/sim/sim_cuda.h (kernel-side header, so declared here)
uint64_t get_seed();
}  // namespace sim
}  // namespace amr
#endif

namespace amr {
namespace bindings {
namespace {

#ifdef AMR_WITH_SIM
// simSetSeed(seed: bigint): queued on sim, so it applies to the launches queued after it.
Napi::Value SimSetSeed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBigInt()) throw Napi::TypeError::New(info.Env(), "simSetSeed: expected a bigint");
    bool lossless = false;
    const uint64_t seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Error("simSetSeed: the seed must fit in 64 bits");
    env_backend(info.Env(), BackendKind::Sim).enqueue("simSetSeed", [seed] { sim::set_seed(seed); });
    return info.Env().Undefined();
  });
}

// simSeed(): the seed after the work queued on sim so far (waits for it).
Napi::Value SimSeed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    env_backend(info.Env(), BackendKind::Sim).synchronize();
    return Napi::BigInt::New(info.Env(), sim::get_seed());
  });
}
#endif

}  // namespace

void init_sim_ops(Napi::Env env, Napi::Object exports) {
#ifdef AMR_WITH_SIM
  exports.Set("simSetSeed", Napi::Function::New(env, SimSetSeed));
  exports.Set("simSeed", Napi::Function::New(env, SimSeed));
#else
  (void)env;
  (void)exports;
#endif
}

}  // namespace bindings
}  // namespace amr
