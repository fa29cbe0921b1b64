// The cuda backend exists only when the addon was built with nvcc; it is created only when a GPU and a driver
// answer, so the addon loads and runs everything else on machines without them.
#pragma once
#include <memory>
#include <string>

#include "backend.h"

namespace amr {

bool cuda_compiled();

// CUDA versions as the runtime API encodes them (1000 * major + 10 * minor); 0 where there is none (no driver,
// or a build without CUDA). required_driver: the oldest driver API version this runtime runs on.
struct CudaVersions {
  int runtime = 0;
  int driver = 0;
  int required_driver = 0;
};
CudaVersions cuda_versions();
// The GPUs this process sees (after CUDA_VISIBLE_DEVICES); 0 without a driver or in a build without CUDA. The
// backend runs on the first; the process group uses the count to refuse ranks of one machine sharing it.
int cuda_device_count();
// nullptr (and *reason set) when no usable GPU/driver is present.
std::unique_ptr<Backend> make_cuda_backend(std::string* device, std::string* reason);

}  // namespace amr
