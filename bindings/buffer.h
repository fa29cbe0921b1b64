// JS handle to a block of backend memory. Shapes, dtypes and autograd live in TypeScript; the native side
// sees storage, element counts and dtypes only.
#pragma once
#include <napi.h>

#include "../native/runtime/backend.h"

namespace amr {
namespace bindings {

// What the addon keeps per Node environment (N-API instance data): the main thread and every worker_thread
// that loads the addon get their own, so nothing JS-facing is shared between environments.
struct AddonData {
  Napi::FunctionReference buffer_class;
  std::shared_ptr<BackendSet> backends = std::make_shared<BackendSet>();
};
AddonData& addon_data(Napi::Env env);
// The environment's backend, or a JS Error saying why it cannot be used.
Backend& env_backend(Napi::Env env, BackendKind kind);

class NativeBuffer : public Napi::ObjectWrap<NativeBuffer> {
 public:
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
// v as a live tensor buffer; `what` names it in the error ("adamw: parameter 3: grad").
StoragePtr buffer_value(Napi::Value v, const std::string& what);
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
