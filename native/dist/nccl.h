// Collectives on cuda tensors through NCCL, opened at run time with dlopen (libnccl.so.2, or the file named by
// AM_RADIO_NCCL_LIBRARY) so that the addon loads and runs without it, and without CUDA: this file is host C++ that
// never includes a CUDA header (NCCL's stream argument is cudaStream_t, a pointer, which GpuStream carries), so it
// compiles the same in builds with and without nvcc.
//
// One communicator per process (NCCL's own model: one rank per process and GPU). It is made from a 128-byte
// unique id that rank 0 draws and that reaches the other ranks by MPI or by the TCP rendezvous (ts/train).
// Collectives are issued on the stream of the tensor's cuda backend, so they run in order with the kernels queued
// before and after them, like any other op. A watchdog thread polls the communicator's asynchronous error and
// aborts it (which ends NCCL kernels stuck waiting for a dead peer) so that a failure shows as an Error, not a hang.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../runtime/backend.h"

namespace amr {
namespace dist {
namespace nccl {

constexpr size_t kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

struct LibraryInfo {
  std::string library;  // the file that was opened
  int version;          // ncclGetVersion's code: major·10000 + minor·100 + patch (2.9 on; major·1000 + ... before)
  std::string version_text;  // "2.21.5"
};

// Opens the library (once per process; later calls return the same). Throws amr::Error naming every file tried,
// why each failed, and AM_RADIO_NCCL_LIBRARY.
LibraryInfo library();
// ncclGetUniqueId: the id rank 0 hands to every rank.
std::string unique_id();
// ncclCommInitRank: blocks until all `size` ranks have called it with the same id. Throws on failure (a second
// communicator in one process, a rank out of range, NCCL's own error with a hint about GPU assignment).
void init_comm(const std::string& id, int rank, int size);
bool has_comm();
int comm_size(const char* op);  // throws (naming op) when there is no usable communicator

// Each queues its NCCL call on be's stream (be is a cuda backend). In place. n elements / bytes.
void allreduce(Backend& be, const StoragePtr& buf, int64_t n, DType dt, bool mean);
void broadcast(Backend& be, const StoragePtr& buf, int64_t bytes, int root);
void allgather(Backend& be, const StoragePtr& in, const StoragePtr& out, int64_t bytes);

// Ends the communicator now (ncclCommAbort), because `why`: kernels waiting for peers stop, the next read on every
// backend that ran a collective reports `why`, and later collectives throw it. Safe from any thread; idempotent.
void abort_comm(const std::string& why);
// ncclCommDestroy after the collectives queued so far (every rank calls it). Idempotent.
void destroy_comm();

}  // namespace nccl
}  // namespace dist
}  // namespace amr
