// The cuda backend exists only when the addon was built with nvcc; it is created only when a GPU and a driver
// answer, so the addon loads and runs everything else on machines without them.
#pragma once
#include <memory>
#include <string>

#include "backend.h"

namespace amr {

bool cuda_compiled();
// nullptr (and *reason set) when no usable GPU/driver is present.
std::unique_ptr<Backend> make_cuda_backend(std::string* device, std::string* reason);

}  // namespace amr
