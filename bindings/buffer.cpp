#include "buffer.h"

namespace amr {
namespace bindings {

AddonData& addon_data(Napi::Env env) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!d) throw Napi::Error::New(env, "am-radio: the addon was not initialized in this environment");
  return *d;
}

Backend& env_backend(Napi::Env env, BackendKind kind) { return addon_data(env).backends->get(kind); }

void NativeBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeBuffer",
                                   {InstanceMethod("release", &NativeBuffer::Release),
                                    InstanceMethod("alias", &NativeBuffer::Alias),
                                    InstanceAccessor("bytes", &NativeBuffer::GetBytes, nullptr),
                                    InstanceAccessor("backend", &NativeBuffer::GetBackend, nullptr)});
  addon_data(env).buffer_class = Napi::Persistent(cls);
  exports.Set("NativeBuffer", cls);
}

NativeBuffer::NativeBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBuffer>(info) {}

NativeBuffer::~NativeBuffer() {
  // The finalizer cannot touch the JS heap accounting safely here; the storage just drops its reference.
  storage_.reset();
}

void NativeBuffer::set_storage(Napi::Env env, StoragePtr s) {
  storage_ = std::move(s);
  // Tell V8 about host-memory tensors so that garbage collection runs before memory runs out.
  if (storage_ && storage_->backend->kind() != BackendKind::Cuda) {
    external_bytes_ = static_cast<int64_t>(storage_->block_bytes);
    Napi::MemoryManagement::AdjustExternalMemory(env, external_bytes_);
  }
}

Napi::Object NativeBuffer::Wrap(Napi::Env env, StoragePtr storage) {
  Napi::Object obj = addon_data(env).buffer_class.New({});
  NativeBuffer::Unwrap(obj)->set_storage(env, std::move(storage));
  return obj;
}

Napi::Value NativeBuffer::Release(const Napi::CallbackInfo& info) {
  if (storage_) {
    if (external_bytes_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -external_bytes_);
    external_bytes_ = 0;
    storage_.reset();
  }
  return info.Env().Undefined();
}

Napi::Value NativeBuffer::Alias(const Napi::CallbackInfo& info) {
  if (!storage_) throw Napi::Error::New(info.Env(), "tensor was disposed");
  Napi::Object obj = addon_data(info.Env()).buffer_class.New({});
  NativeBuffer::Unwrap(obj)->storage_ = storage_;  // shares memory; not counted twice
  return obj;
}

Napi::Value NativeBuffer::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), storage_ ? static_cast<double>(storage_->bytes) : 0);
}

Napi::Value NativeBuffer::GetBackend(const Napi::CallbackInfo& info) {
  if (!storage_) return info.Env().Null();
  return Napi::String::New(info.Env(), backend_name(storage_->backend->kind()));
}

StoragePtr buffer_value(Napi::Value v, const std::string& what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addon_data(v.Env()).buffer_class.Value()))
    throw Error(what + " is not a tensor buffer");
  StoragePtr s = NativeBuffer::Unwrap(v.As<Napi::Object>())->storage();
  if (!s) throw Error(what + " was disposed");
  return s;
}

StoragePtr buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(addon_data(env).buffer_class.Value()))
    throw Napi::TypeError::New(env, std::string(op) + ": argument " + std::to_string(i) + " is not a tensor buffer");
  StoragePtr s = NativeBuffer::Unwrap(info[i].As<Napi::Object>())->storage();
  if (!s) throw Napi::Error::New(env, std::string(op) + ": tensor was disposed");
  return s;
}

DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  std::string s = info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  if (s == "i32") return DType::I32;
  throw Napi::TypeError::New(info.Env(), std::string(op) + ": unknown dtype '" + s + "' (expected f32, bf16 or i32)");
}

BackendKind backend_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  std::string s = info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  if (s == "cpu") return BackendKind::Cpu;
  if (s == "cuda") return BackendKind::Cuda;
  if (s == "sim") return BackendKind::Sim;
  throw Napi::TypeError::New(info.Env(), std::string(op) + ": unknown device '" + s + "' (expected cpu, cuda or sim)");
}

double number_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  double v = number_arg(info, i, op);
  if (v != static_cast<double>(static_cast<int64_t>(v)) || v < 0)
    throw Napi::TypeError::New(info.Env(),
                               std::string(op) + ": argument " + std::to_string(i) + " must be a non-negative integer");
  return static_cast<int64_t>(v);
}

void require_elements(const StoragePtr& s, int64_t n, DType dt, const char* op, const char* what) {
  if (static_cast<size_t>(n) * dtype_size(dt) > s->bytes)
    throw Error(std::string(op) + ": " + what + " holds " + std::to_string(s->bytes) + " bytes, fewer than " +
                std::to_string(n) + " " + dtype_name(dt) + " elements");
}

Backend& common_backend(std::initializer_list<StoragePtr> buffers, const char* op) {
  Backend* b = nullptr;
  for (const StoragePtr& s : buffers) {
    if (!s) continue;
    if (b && s->backend != b)
      throw Error(std::string(op) + ": tensors are on different devices (" + backend_name(b->kind()) + " and " +
                  backend_name(s->backend->kind()) + ")");
    b = s->backend;
  }
  return *b;
}

}  // namespace bindings
}  // namespace amr
