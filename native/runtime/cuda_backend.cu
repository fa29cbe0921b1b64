#include <cuda_runtime.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "cuda_backend.h"

namespace amr {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(e));
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the non-sticky out-of-memory error so later calls are not blamed for it
    return nullptr;
  }
  return p;
}

// Work is issued to the CUDA stream straight from the calling thread: CUDA itself queues it, so
// enqueue returns as soon as the kernels are launched.
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(cudaStream_t stream)
      : Backend(BackendKind::Cuda, std::make_unique<CachingAllocator>("cuda", device_alloc,
                                                                      [](void* p) { cudaFree(p); })),
        stream_(stream) {}

  void enqueue(const char* op, std::function<void()> work) override {
    if (stopped_) throw Error("backend cuda was shut down (its environment is exiting); no more work can be queued");
    cudaEvent_t begin = nullptr, end = nullptr;
    if (profiling()) {
      check(cudaEventCreate(&begin), "profile");
      check(cudaEventCreate(&end), "profile");
      check(cudaEventRecord(begin, stream_), "profile");
    }
    try {
      work();
    } catch (const std::exception& e) {
      record_error(op, e.what());
    }
    if (begin) {
      check(cudaEventRecord(end, stream_), "profile");
      std::lock_guard<std::mutex> lock(timing_mu_);
      timings_.push_back(Timing{op, begin, end});
    }
  }

  // The events of every op timed since the last take: the stream has drained (the caller synchronized first).
  std::vector<OpTime> take_profile() override {
    std::vector<Timing> done;
    {
      std::lock_guard<std::mutex> lock(timing_mu_);
      done.swap(timings_);
    }
    std::string failure;
    for (const Timing& t : done) {
      float ms = 0;
      const cudaError_t e = cudaEventSynchronize(t.end);
      if (e == cudaSuccess && cudaEventElapsedTime(&ms, t.begin, t.end) == cudaSuccess) profile_.add(t.op, ms);
      else if (failure.empty()) failure = cudaGetErrorString(e == cudaSuccess ? cudaGetLastError() : e);
      cudaEventDestroy(t.begin);
      cudaEventDestroy(t.end);
    }
    if (!failure.empty()) throw Error("profile: reading the cuda op timings failed: " + failure);
    return profile_.take();
  }

  void synchronize() override {
    cudaError_t e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess) record_error("cuda stream", cudaGetErrorString(e));
  }

  HostFetch begin_read(StoragePtr src, size_t n) override {
    // Snapshot on the device now, so work queued after the read cannot change what it returns.
    StoragePtr snap = allocate(n);
    check(cudaMemcpyAsync(snap->ptr, src->ptr, n, cudaMemcpyDeviceToDevice, stream_), "read");
    cudaStream_t s = stream_;
    return [snap, n, s] {
      auto bytes = std::make_shared<std::vector<uint8_t>>(n);
      check(cudaMemcpyAsync(bytes->data(), snap->ptr, n, cudaMemcpyDeviceToHost, s), "read");
      check(cudaStreamSynchronize(s), "read");
      return bytes;
    };
  }

  void upload(StoragePtr dst, HostFetch fetch) override {
    enqueue("copy", [this, dst, fetch] {
      HostBytes bytes = fetch();
      // From pageable memory the copy is staged before the call returns, so bytes may be freed after it.
      check(cudaMemcpyAsync(dst->ptr, bytes->data(), std::min(bytes->size(), dst->bytes), cudaMemcpyHostToDevice,
                            stream_),
            "copy to cuda");
    });
  }

  void fill_bytes(StoragePtr dst, uint8_t value) override {
    enqueue("fill", [this, dst, value] { check(cudaMemsetAsync(dst->ptr, value, dst->bytes, stream_), "fill"); });
  }

  GpuStream gpu_stream() override { return GpuStream{stream_}; }

  // Kernels already launched cannot be recalled; wait for them so no memory is freed under a running kernel.
  void shutdown() override {
    if (stopped_.exchange(true)) return;
    cudaStreamSynchronize(stream_);
    cudaGetLastError();
  }

 private:
  cudaStream_t stream_;
  std::atomic<bool> stopped_{false};

  struct Timing {
    const char* op;  // the bindings' names are string literals
    cudaEvent_t begin, end;
  };
  std::mutex timing_mu_;
  std::vector<Timing> timings_;

  void reset_profile() override {
    std::lock_guard<std::mutex> lock(timing_mu_);
    for (const Timing& t : timings_) {
      cudaEventDestroy(t.begin);
      cudaEventDestroy(t.end);
    }
    timings_.clear();
  }
};

}  // namespace

bool cuda_compiled() { return true; }

namespace {
// The oldest driver that runs this runtime: CUDA's minor-version compatibility lets any driver of the same major
// CUDA version run it, so the floor is major.0; its R-number is what users see in nvidia-smi.
int required_driver_api() { return CUDART_VERSION / 1000 * 1000; }
std::string driver_branch(int api) {
  switch (api / 1000) {
    case 12: return "R525";
    case 13: return "R580";
    default: return "the driver for CUDA " + std::to_string(api / 1000);
  }
}
std::string api_name(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
}  // namespace

CudaVersions cuda_versions() {
  CudaVersions v;
  v.runtime = CUDART_VERSION;
  v.required_driver = required_driver_api();
  // 0 (with success) when no driver is installed: the static runtime could not open libcuda.so.1.
  if (cudaDriverGetVersion(&v.driver) != cudaSuccess) v.driver = 0;
  cudaGetLastError();
  return v;
}

int cuda_device_count() {
  if (cuda_versions().driver == 0) return 0;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  cudaGetLastError();
  return count;
}

std::unique_ptr<Backend> make_cuda_backend(std::string* device, std::string* reason) {
  // Told apart before asking for devices: cudaGetDeviceCount reports a missing driver and an old one with codes
  // whose messages both read like "update your driver".
  const CudaVersions v = cuda_versions();
  const std::string needs = "CUDA " + api_name(v.required_driver) + " (NVIDIA driver " + driver_branch(v.required_driver) +
                            " or newer)";
  if (v.driver == 0) {
    *reason = "no NVIDIA driver: libcuda.so.1 could not be loaded; the cuda backend needs " + needs;
    return nullptr;
  }
  if (v.driver < v.required_driver) {
    *reason = "NVIDIA driver too old for this CUDA runtime: the driver supports CUDA " + api_name(v.driver) +
              ", am-radio's CUDA " + api_name(v.runtime) + " runtime needs " + needs;
    return nullptr;
  }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
    cudaGetLastError();
    *reason = "no GPU: the NVIDIA driver (CUDA " + api_name(v.driver) + ") is installed but reports no CUDA device";
    return nullptr;
  }
  if (e == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    *reason = "NVIDIA driver too old for this CUDA runtime (" + std::string(cudaGetErrorString(e)) + "); needs " + needs;
    return nullptr;
  }
  if (e != cudaSuccess) {
    *reason = std::string("no usable CUDA driver or GPU (") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")";
    cudaGetLastError();
    return nullptr;
  }
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  if (prop.major < 8) {
    *reason = std::string("GPU ") + prop.name + " has compute capability " + std::to_string(prop.major) + "." +
              std::to_string(prop.minor) + "; am-radio needs 8.0 or newer";
    return nullptr;
  }
  *device = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  return std::make_unique<CudaBackend>(stream);
}

}  // namespace amr
