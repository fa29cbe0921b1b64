// ---------------------------------------------------------------------------------------------
// Kernels that probe the emulator's own rules and errors (exited lanes, mismatched collectives, exceptions,
// spin-waits, nested launches, concurrent launches). Sim only: on hardware several of them are undefined.
#include "rule_checks.h"

#include <exception>
#include <stdexcept>
#include <thread>

#include "native/runtime/kernel.cuh"
#include "native/runtime/launch.cuh"
#include "selftest.h"

namespace amr {
namespace sim {
namespace dev {

__global__ void exited_lane_kernel(float* out) {  // lanes >= 16 exit; the rest shuffle with a full mask
  const int lane = threadIdx.x;
  if (lane >= 16) return;
  out[lane] = __shfl_down_sync(0xffffffffu, 1.0f, 8);  // lanes 8..15 read exited lanes 16..23
  out[32 + lane] = __all_sync(0xffffffffu, 1);
}
__global__ void mismatch_kernel(int* out) {  // lane 0 votes while the others shuffle
  const int v = threadIdx.x == 0 ? __any_sync(0xffffffffu, 1) : __shfl_sync(0xffffffffu, 1, 0);
  out[threadIdx.x] = v;
}
__global__ void index_kernel(int* hits) {
  const int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  atomicAdd(&hits[bx * blockDim.x * blockDim.y * blockDim.z + tx], 1);
}
__global__ void throwing_kernel(int* out) {
  if (threadIdx.x == 5) throw std::runtime_error("thrown from a kernel");
  out[threadIdx.x] = 1;
}
__global__ void spin_kernel(int* out) {  // thread 0 publishes a flag the others spin on
  __shared__ volatile int flag;  // written before it is read; volatile so the spin re-reads it
  if (threadIdx.x == 0) flag = 0;
  __syncthreads();
  if (threadIdx.x == 0) flag = 42;
  while (flag != 42) __nanosleep(100);
  out[threadIdx.x] = flag;
}
__global__ void nested_kernel(int* out) {
  if (threadIdx.x == 0) launch("inner", index_kernel, dim3(1), dim3(1), 0, GpuStream{}, out);
}

int64_t kernel_output_bytes(const std::string& name) {
  if (name == "exited_lane") return 64 * 4;
  if (name == "mismatch") return 32 * 4;
  if (name == "index") return 12 * 64 * 4;  // 2x2x3 blocks of 4x4x4 threads, one counter each
  if (name == "thrower" || name == "spin") return 64 * 4;
  if (name == "nested") return 4;
  return -1;
}

void run_kernel(const std::string& name, void* out) {
  int* iout = static_cast<int*>(out);
  if (name == "exited_lane") launch("exited_lane", exited_lane_kernel, dim3(1), dim3(32), 0, GpuStream{}, static_cast<float*>(out));
  else if (name == "mismatch") launch("mismatch", mismatch_kernel, dim3(1), dim3(32), 0, GpuStream{}, iout);
  else if (name == "index") launch("index", index_kernel, dim3(2, 2, 3), dim3(4, 4, 4), 0, GpuStream{}, iout);
  else if (name == "thrower") launch("thrower", throwing_kernel, dim3(1), dim3(64), 0, GpuStream{}, iout);
  else if (name == "spin") launch("spin", spin_kernel, dim3(2), dim3(64), 0, GpuStream{}, iout);
  else if (name == "nested") launch("nested", nested_kernel, dim3(1), dim3(1), 0, GpuStream{}, iout);
}

void concurrent_launches(const float* x, int n, float* sums1, float* sums2) {
  std::exception_ptr other, mine;
  std::thread t([&] {
    try {
      for (int r = 0; r < 20; ++r) selftest::block_sum(x, n, sums1, 8, 128, GpuStream{});
    } catch (...) {
      other = std::current_exception();
    }
  });
  try {
    for (int r = 0; r < 20; ++r) selftest::block_sum(x, n, sums2, 8, 256, GpuStream{});
  } catch (...) {
    mine = std::current_exception();
  }
  t.join();
  if (mine) std::rethrow_exception(mine);
  if (other) std::rethrow_exception(other);
}

}  // namespace dev
}  // namespace sim
}  // namespace amr

