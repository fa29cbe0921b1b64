// Linked instead of cuda_backend.cu when the addon is built without nvcc.
#include "cuda_backend.h"

namespace amr {
bool cuda_compiled() { return false; }
CudaVersions cuda_versions() { return {}; }
int cuda_device_count() { return 0; }
std::unique_ptr<Backend> make_cuda_backend(std::string*, std::string* reason) {
  *reason = "the addon was built without CUDA (nvcc was not found at build time)";
  return nullptr;
}
}  // namespace amr
