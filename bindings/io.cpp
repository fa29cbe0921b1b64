// Memory, transfers and host reads. Reads are Promises resolved off the JS thread.
#include "modules.h"

#include <cstring>

#include "buffer.h"
#include "host_read.h"
#include "runtime/cuda_backend.h"

namespace amr {
namespace bindings {
namespace {

Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto infos = backend_infos();
    Napi::Array out = Napi::Array::New(env, infos.size());
    for (size_t i = 0; i < infos.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", backend_name(infos[i].kind));
      o.Set("compiled", infos[i].compiled);
      o.Set("available", infos[i].available);
      if (!infos[i].device.empty()) o.Set("device", infos[i].device);
      if (!infos[i].reason.empty()) o.Set("reason", infos[i].reason);
      out.Set(i, o);
    }
    return out;
  });
}

// cudaVersions() -> { runtime, driver, requiredDriver }: CUDA API versions (1000 * major + 10 * minor), 0 where
// there is none; for `am-radio doctor` and for telling a missing driver from an old one.
Napi::Value CudaVersionsInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    CudaVersions v = cuda_versions();
    Napi::Object o = Napi::Object::New(env);
    o.Set("runtime", v.runtime);
    o.Set("driver", v.driver);
    o.Set("requiredDriver", v.required_driver);
    return o;
  });
}

// alloc(device, bytes) -> NativeBuffer
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Backend& be = env_backend(env, backend_arg(info, 0, "alloc"));
    return NativeBuffer::Wrap(env, be.allocate(static_cast<size_t>(int_arg(info, 1, "alloc"))));
  });
}

// upload(buffer, Float32Array | Int32Array, dtype): the values are copied before the call returns.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    StoragePtr dst = buffer_arg(info, 0, "upload");
    DType dt = dtype_arg(info, 2, "upload");
    if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "upload: data must be a Float32Array or Int32Array");
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    const size_t n = arr.ElementLength();
    require_elements(dst, static_cast<int64_t>(n), dt, "upload", "destination");
    auto bytes = std::make_shared<std::vector<uint8_t>>(n * dtype_size(dt));
    const uint8_t* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    if (arr.TypedArrayType() == napi_float32_array) {
      const float* f = reinterpret_cast<const float*>(src);
      if (dt == DType::F32) std::memcpy(bytes->data(), f, n * 4);
      else if (dt == DType::BF16) {
        uint16_t* o = reinterpret_cast<uint16_t*>(bytes->data());
        for (size_t i = 0; i < n; ++i) o[i] = f32_to_bf16(f[i]);
      } else {
        int32_t* o = reinterpret_cast<int32_t*>(bytes->data());
        for (size_t i = 0; i < n; ++i) o[i] = static_cast<int32_t>(f[i]);
      }
    } else if (arr.TypedArrayType() == napi_int32_array && dt == DType::I32) {
      std::memcpy(bytes->data(), src, n * 4);
    } else {
      throw Napi::TypeError::New(env, "upload: data must be a Float32Array (or an Int32Array for i32)");
    }
    dst->backend->upload(dst, [bytes] { return bytes; });
    return env.Undefined();
  });
}

class ReadWorker : public HostReadWorker {
 public:
  ReadWorker(Napi::Env env, Backend& be, HostFetch fetch, DType dt, size_t n)
      : HostReadWorker(env, "read", be, std::move(fetch)), dt_(dt), n_(n) {}

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Float32Array out = Napi::Float32Array::New(env, n_);
    float* o = out.Data();
    if (dt_ == DType::F32) {
      std::memcpy(o, bytes_->data(), n_ * 4);
    } else if (dt_ == DType::BF16) {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes_->data());
      for (size_t i = 0; i < n_; ++i) o[i] = bf16_to_f32(h[i]);
    } else {
      const int32_t* v = reinterpret_cast<const int32_t*>(bytes_->data());
      for (size_t i = 0; i < n_; ++i) o[i] = static_cast<float>(v[i]);
    }
    deferred_.Resolve(out);
  }

 private:
  DType dt_;
  size_t n_;
};

// read(buffer, dtype, count) -> Promise<Float32Array>; reflects all work queued before the call.
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    StoragePtr src = buffer_arg(info, 0, "read");
    DType dt = dtype_arg(info, 1, "read");
    int64_t n = int_arg(info, 2, "read");
    require_elements(src, n, dt, "read", "tensor");
    auto* worker = new ReadWorker(env, *src->backend, src->backend->begin_read(src, n * dtype_size(dt)), dt, n);
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  });
}

// copyTo(buffer, device) -> NativeBuffer on the other device.
Napi::Value CopyTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    StoragePtr src = buffer_arg(info, 0, "to");
    Backend& dst = env_backend(env, backend_arg(info, 1, "to"));
    return NativeBuffer::Wrap(env, copy_to_backend(src, dst));
  });
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    for (const BackendInfo& bi : backend_infos()) {
      if (!bi.available) continue;
      Backend& be = env_backend(env, bi.kind);
      Napi::Object o = Napi::Object::New(env);
      o.Set("inUse", static_cast<double>(be.allocator().bytes_in_use()));
      o.Set("cached", static_cast<double>(be.allocator().bytes_cached()));
      out.Set(backend_name(bi.kind), o);
    }
    return out;
  });
}

class SyncWorker : public EnvSafeWorker {
 public:
  SyncWorker(Napi::Env env, Backend& be)
      : EnvSafeWorker(env, "am-radio:synchronize"), deferred_(Napi::Promise::Deferred::New(env)), be_(be) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    be_.synchronize();
    std::string err = be_.take_error();
    if (!err.empty()) SetError(err);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(Napi::Error::New(Env(), e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Backend& be_;
};

// synchronize(device) -> Promise<void>: resolves when all queued work is done (rejects with its error).
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto* worker = new SyncWorker(env, env_backend(env, backend_arg(info, 0, "synchronize")));
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  });
}

// emptyCache(device): returns cached blocks to the system once queued work is done with them.
Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Backend& be = env_backend(env, backend_arg(info, 0, "emptyCache"));
    be.synchronize();
    be.allocator().empty_cache();
    return env.Undefined();
  });
}

// setPoisonAllocations(on): see amr::set_poison_allocations.
Napi::Value SetPoisonAllocations(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setPoisonAllocations: expected a boolean");
  set_poison_allocations(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

// queueFailure(device, message): queues work that fails, to exercise how queued errors reach JS.
Napi::Value QueueFailure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Backend& be = env_backend(env, backend_arg(info, 0, "queueFailure"));
    std::string message = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "failure";
    be.enqueue("queueFailure", [message] { throw Error(message); });
    return env.Undefined();
  });
}

// setProfiling(device, on): times every op queued on the device from now on (runtime/profile.h); on starts from
// empty totals.
Napi::Value SetProfiling(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Backend& be = env_backend(env, backend_arg(info, 0, "setProfiling"));
    if (info.Length() < 2 || !info[1].IsBoolean()) throw Error("setProfiling: on must be a boolean");
    be.set_profiling(info[1].As<Napi::Boolean>().Value());
    return env.Undefined();
  });
}

// takeProfile(device) -> [{ op, calls, ms }]: the totals since profiling started or was last taken. Called after
// synchronize(device), so every timed op has finished.
Napi::Value TakeProfile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Backend& be = env_backend(env, backend_arg(info, 0, "takeProfile"));
    const std::vector<OpTime> times = be.take_profile();
    Napi::Array out = Napi::Array::New(env, times.size());
    for (size_t i = 0; i < times.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("op", times[i].op);
      o.Set("calls", static_cast<double>(times[i].calls));
      o.Set("ms", times[i].ms);
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  });
}

class ReadBytesWorker : public HostReadWorker {
 public:
  ReadBytesWorker(Napi::Env env, Backend& be, HostFetch fetch) : HostReadWorker(env, "readBytes", be, std::move(fetch)) {}
  void OnOK() override {
    Napi::ArrayBuffer out = Napi::ArrayBuffer::New(Env(), bytes_->size());
    if (!bytes_->empty()) std::memcpy(out.Data(), bytes_->data(), bytes_->size());
    deferred_.Resolve(out);
  }
};

// readBytes(buffer, bytes) -> Promise<ArrayBuffer>: the first bytes of the buffer, unconverted, after the work
// queued before the call (rejects with the backend's pending error, as read() does).
Napi::Value ReadBytes(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StoragePtr src = buffer_arg(info, 0, "readBytes");
    const int64_t n = int_arg(info, 1, "readBytes");
    if (static_cast<uint64_t>(n) > src->bytes)
      throw Error("readBytes: the buffer holds " + std::to_string(src->bytes) + " bytes, fewer than " + std::to_string(n));
    auto* worker = new ReadBytesWorker(info.Env(), *src->backend, src->backend->begin_read(src, static_cast<size_t>(n)));
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  });
}

}  // namespace

void init_io(Napi::Env env, Napi::Object exports) {
  exports.Set("backends", Napi::Function::New(env, Backends));
  exports.Set("cudaVersions", Napi::Function::New(env, CudaVersionsInfo));
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("upload", Napi::Function::New(env, Upload));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("copyTo", Napi::Function::New(env, CopyTo));
  exports.Set("memory", Napi::Function::New(env, Memory));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("setPoisonAllocations", Napi::Function::New(env, SetPoisonAllocations));
  exports.Set("queueFailure", Napi::Function::New(env, QueueFailure));
  exports.Set("readBytes", Napi::Function::New(env, ReadBytes));
  exports.Set("setProfiling", Napi::Function::New(env, SetProfiling));
  exports.Set("takeProfile", Napi::Function::New(env, TakeProfile));
}

}  // namespace bindings
}  // namespace amr
