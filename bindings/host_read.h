// The Promise side of a host read: the queued fetch runs off the JS thread, then the subclass turns the bytes into
// a JS value on it. An error recorded by queued work (or by the fetch) rejects the Promise with the op named.
#pragma once
#include <napi.h>

#include <exception>
#include <string>

#include "../native/runtime/backend.h"

namespace amr {
namespace bindings {

// An AsyncWorker whose completion survives its environment's teardown: a read or synchronize can finish while
// a worker_thread exits with it pending; JS can no longer run then, so resolving the Promise fails. Nobody is
// left to see it: drop the result instead of letting the failure escape as a C++ exception (std::terminate).
class EnvSafeWorker : public Napi::AsyncWorker {
 public:
  using Napi::AsyncWorker::AsyncWorker;
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    try {
      Napi::AsyncWorker::OnWorkComplete(env, status);
    } catch (...) {
      Destroy();
    }
  }
};

class HostReadWorker : public EnvSafeWorker {
 public:
  HostReadWorker(Napi::Env env, const char* op, Backend& be, HostFetch fetch)
      : EnvSafeWorker(env, (std::string("am-radio:") + op).c_str()), deferred_(Napi::Promise::Deferred::New(env)),
        op_(op), be_(be), fetch_(std::move(fetch)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      bytes_ = fetch_();
    } catch (const std::exception& e) {
      be_.record_error(op_, e.what());
    }
    std::string err = be_.take_error();
    if (!err.empty()) SetError(err);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(Napi::Error::New(Env(), e.Message()).Value()); }

 protected:
  Napi::Promise::Deferred deferred_;
  HostBytes bytes_;

 private:
  const char* op_;
  Backend& be_;
  HostFetch fetch_;
};

}  // namespace bindings
}  // namespace amr
