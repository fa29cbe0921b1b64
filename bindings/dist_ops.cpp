// The dist family's entry points: process-group set-up on the JS thread, collectives queued on the tensor's
// backend like any other op, so they run in order with the ops that produce and consume the tensor.
#include "../native/dist/dist.h"
#include "args.h"
#include "buffer.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// Collectives work on host memory through MPI; device memory would need a GPU-aware MPI or NCCL.
StoragePtr host_buffer(const Fields& f, const char* key) {
  StoragePtr s = f.buffer(key);
  if (s->backend->kind() != BackendKind::Cpu)
    throw Error(f.who + ": " + key + " is on " + backend_name(s->backend->kind()) +
                "; MPI collectives take cpu tensors (cuda tensors go through NCCL, native/dist/nccl.h)");
  return s;
}

void require_bytes(const StoragePtr& s, int64_t bytes, const std::string& who, const char* what) {
  if (static_cast<int64_t>(s->bytes) < bytes)
    throw Error(who + ": " + what + " holds " + std::to_string(s->bytes) + " bytes, " + std::to_string(bytes) + " needed");
}

// distInit({ timeoutSeconds }) -> { rank, size, library, version }
Napi::Value DistInit(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "distInit");
    const dist::InitResult r = dist::init(f.real("timeoutSeconds"));
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("rank", r.rank);
    out.Set("size", r.size);
    out.Set("library", r.library);
    out.Set("version", r.version);
    return out;
  });
}

// distAllReduce({ buffer, n, op: 'sum' | 'mean' }): in place on n f32.
Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "allReduce");
    StoragePtr buf = host_buffer(f, "buffer");
    const int64_t n = f.int64("n", 0);
    const bool mean = f.choice("op", {"sum", "mean"}) == 1;
    require_elements(buf, n, DType::F32, "allReduce", "buffer");
    dist::world_size("allReduce");  // refuses now, on the JS thread, when there is no group
    buf->backend->enqueue("allReduce", [buf, n, mean] { dist::allreduce_f32(static_cast<float*>(buf->ptr), n, mean); });
    return info.Env().Undefined();
  });
}

// distBroadcast({ buffer, bytes, root }): root's first `bytes` bytes into every rank's buffer.
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "broadcast");
    StoragePtr buf = host_buffer(f, "buffer");
    const int64_t bytes = f.int64("bytes", 0);
    const int size = dist::world_size("broadcast");
    const int root = f.integer("root", 0, size - 1);
    require_bytes(buf, bytes, f.who, "buffer");
    buf->backend->enqueue("broadcast", [buf, bytes, root] { dist::broadcast(buf->ptr, bytes, root); });
    return info.Env().Undefined();
  });
}

// distBarrier(): queued on this environment's cpu backend; synchronize('cpu') waits for it.
Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    dist::world_size("barrier");
    env_backend(info.Env(), BackendKind::Cpu).enqueue("barrier", [] { dist::barrier(); });
    return info.Env().Undefined();
  });
}

// distAllGather({ input, output, bytes }): every rank's first `bytes` bytes of input, in rank order, into output.
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "allGather");
    StoragePtr in = host_buffer(f, "input"), out = host_buffer(f, "output");
    const int64_t bytes = f.int64("bytes", 0, int64_t{1} << 30);
    const int size = dist::world_size("allGather");
    require_bytes(in, bytes, f.who, "input");
    require_bytes(out, bytes * size, f.who, "output");
    if (in->backend != out->backend) throw Error("allGather: input and output are on different backends");
    in->backend->enqueue("allGather", [in, out, bytes] { dist::allgather(in->ptr, out->ptr, bytes); });
    return info.Env().Undefined();
  });
}

// distFinalize(): MPI_Finalize (collective: every rank must call it); idempotent.
Napi::Value DistFinalize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    dist::finalize();
    return info.Env().Undefined();
  });
}

// distAbort(code): ends every rank of the job now.
Napi::Value DistAbort(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "distAbort");
    dist::abort_job(f.integer("code", 1, 255));
    return info.Env().Undefined();  // not reached
  });
}

}  // namespace

void init_dist_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("distInit", Napi::Function::New(env, DistInit));
  exports.Set("distAllReduce", Napi::Function::New(env, DistAllReduce));
  exports.Set("distBroadcast", Napi::Function::New(env, DistBroadcast));
  exports.Set("distBarrier", Napi::Function::New(env, DistBarrier));
  exports.Set("distAllGather", Napi::Function::New(env, DistAllGather));
  exports.Set("distFinalize", Napi::Function::New(env, DistFinalize));
  exports.Set("distAbort", Napi::Function::New(env, DistAbort));
}

}  // namespace bindings
}  // namespace amr
