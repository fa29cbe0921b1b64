// NCCL's entry points (native/dist/nccl.h): the library and the communicator's set-up on the JS thread (the
// blocking ncclCommInitRank on a worker, behind a Promise), collectives queued on the tensor's cuda backend.
#include "../native/dist/nccl.h"
#include "../native/runtime/cuda_backend.h"
#include "args.h"
#include "buffer.h"
#include "host_read.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

void require_bytes(const StoragePtr& s, int64_t bytes, const std::string& who, const char* what) {
  if (static_cast<int64_t>(s->bytes) < bytes)
    throw Error(who + ": " + what + " holds " + std::to_string(s->bytes) + " bytes, " + std::to_string(bytes) + " needed");
}

// ncclLibrary() -> { library, version, versionText }: opens NCCL (an Error naming the files looked for without it).
Napi::Value NcclLibrary(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const dist::nccl::LibraryInfo l = dist::nccl::library();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("library", l.library);
    out.Set("version", l.version);
    out.Set("versionText", l.version_text);
    return out;
  });
}

// ncclUniqueId() -> Uint8Array(128), the id rank 0 hands to the others.
Napi::Value NcclUniqueId(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string id = dist::nccl::unique_id();
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), id.size());
    std::memcpy(out.Data(), id.data(), id.size());
    return out;
  });
}

class InitWorker : public EnvSafeWorker {
 public:
  InitWorker(Napi::Env env, std::string id, int rank, int size)
      : EnvSafeWorker(env, "am-radio:ncclInit"), deferred_(Napi::Promise::Deferred::New(env)), id_(std::move(id)), rank_(rank), size_(size) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      dist::nccl::init_comm(id_, rank_, size_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(Napi::Error::New(Env(), e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string id_;
  int rank_, size_;
};

// ncclInit({ id, rank, size }) -> Promise<void>: ncclCommInitRank off the JS thread (it waits for every rank).
Napi::Value NcclInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "ncclInit");
    Napi::Value v = f.get("id");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Error("ncclInit: id must be a Uint8Array");
    Napi::Uint8Array a = v.As<Napi::Uint8Array>();
    const int size = f.integer("size", 1);
    const int rank = f.integer("rank", 0, size - 1);
    dist::nccl::library();  // the missing library is an Error here, not a rejected Promise later
    auto* worker = new InitWorker(env, std::string(reinterpret_cast<const char*>(a.Data()), a.ElementLength()), rank, size);
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  });
}

// ncclAllReduce({ buffer, n, dtype: 'f32' | 'bf16', op: 'sum' | 'mean' }): in place, on the buffer's cuda stream.
Napi::Value NcclAllReduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "allReduce");
    StoragePtr buf = f.buffer("buffer");
    const int64_t n = f.int64("n", 0);
    const DType dt = f.dtype("dtype");
    const bool mean = f.choice("op", {"sum", "mean"}) == 1;
    require_elements(buf, n, dt, "allReduce", "buffer");
    dist::nccl::allreduce(*buf->backend, buf, n, dt, mean);
    return info.Env().Undefined();
  });
}

// ncclBroadcast({ buffer, bytes, root }): root's first `bytes` bytes into every rank's buffer.
Napi::Value NcclBroadcast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "broadcast");
    StoragePtr buf = f.buffer("buffer");
    const int64_t bytes = f.int64("bytes", 0);
    const int root = f.integer("root", 0);
    require_bytes(buf, bytes, f.who, "buffer");
    dist::nccl::broadcast(*buf->backend, buf, bytes, root);
    return info.Env().Undefined();
  });
}

// ncclAllGather({ input, output, bytes }): every rank's first `bytes` bytes of input, in rank order, into output.
Napi::Value NcclAllGather(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "allGather");
    StoragePtr in = f.buffer("input"), out = f.buffer("output");
    const int64_t bytes = f.int64("bytes", 0);
    if (in->backend != out->backend) throw Error("allGather: input and output are on different backends");
    const int size = dist::nccl::comm_size("allGather");
    require_bytes(in, bytes, f.who, "input");
    require_bytes(out, bytes * size, f.who, "output");
    dist::nccl::allgather(*in->backend, in, out, bytes);
    return info.Env().Undefined();
  });
}

// ncclAbort({ reason }): ends the communicator now (a peer is gone); see dist::nccl::abort_comm.
Napi::Value NcclAbort(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "ncclAbort");
    dist::nccl::abort_comm(f.string("reason"));
    return info.Env().Undefined();
  });
}

// ncclDestroy(): ncclCommDestroy (every rank calls it, after synchronizing the cuda backend); idempotent.
Napi::Value NcclDestroy(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    dist::nccl::destroy_comm();
    return info.Env().Undefined();
  });
}

// cudaDeviceCount() -> the GPUs this process sees (0 without a driver or CUDA).
Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), cuda_device_count()); });
}

}  // namespace

void init_nccl_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("ncclLibrary", Napi::Function::New(env, NcclLibrary));
  exports.Set("ncclUniqueId", Napi::Function::New(env, NcclUniqueId));
  exports.Set("ncclInit", Napi::Function::New(env, NcclInit));
  exports.Set("ncclAllReduce", Napi::Function::New(env, NcclAllReduce));
  exports.Set("ncclBroadcast", Napi::Function::New(env, NcclBroadcast));
  exports.Set("ncclAllGather", Napi::Function::New(env, NcclAllGather));
  exports.Set("ncclAbort", Napi::Function::New(env, NcclAbort));
  exports.Set("ncclDestroy", Napi::Function::New(env, NcclDestroy));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
}

}  // namespace bindings
}  // namespace amr
