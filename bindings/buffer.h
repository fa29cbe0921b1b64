// JS handle to a block of backend memory. Shapes, dtypes and autograd live in TypeScript; the native side
// sees storage, element counts and dtypes only.
#pragma once
#include <napi.h>

#include "../native/runtime/backend.h"

namespace amr {
namespace bindings {

class NativeBuffer : public Napi::ObjectWrap<NativeBuffer> {
 public:
  static Napi::FunctionReference* constructor;
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, StoragePtr storage);

  explicit NativeBuffer(const Napi::CallbackInfo& info);
  ~NativeBuffer() override;
  StoragePtr storage() const { return storage_; }

 private:
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Alias(const Napi::CallbackInfo& info);
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetBackend(const Napi::CallbackInfo& info);
  void set_storage(Napi::Env env, StoragePtr s);

  StoragePtr storage_;
  int64_t external_bytes_ = 0;
};

// Argument helpers: each throws a JS Error naming what is wrong.
StoragePtr buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* op);
DType dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op);
BackendKind backend_arg(const Napi::CallbackInfo& info, size_t i, const char* op);
int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* op);
double number_arg(const Napi::CallbackInfo& info, size_t i, const char* op);
// Checks that a buffer holds at least n elements of dt, so a wrong count from JS can never overrun memory.
void require_elements(const StoragePtr& s, int64_t n, DType dt, const char* op, const char* what);
// The single backend that all the buffers live on.
Backend& common_backend(std::initializer_list<StoragePtr> buffers, const char* op);

// Runs f, turning amr::Error and std::exception into JS Errors.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace bindings
}  // namespace amr
