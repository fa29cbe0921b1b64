#pragma once
namespace amr {
// Opaque handle to the stream a kernel is queued on (cudaStream_t on cuda, unused on sim).
struct GpuStream {
  void* handle = nullptr;
};
}  // namespace amr
