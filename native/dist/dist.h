// Collectives between processes for data-parallel training, over an MPI library opened at run time (dlopen), so
// the addon loads and runs without one. MPI's C ABI is not portable (Open MPI's handles are pointers to exported
// structs, MPICH's are integer constants): the opened library's ABI is recognised, Open MPI's or MPICH's (which
// Intel MPI and MVAPICH keep), and driven through its own table of handles; any other is refused with an Error.
//
// Every collective runs on the calling thread and is non-blocking underneath (MPI_I* + MPI_Test polling), so it
// can stop at a backend queue's cancellation point (process exit) and give up after a timeout with an Error
// instead of hanging forever when a peer is gone and no launcher kills this process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace amr {
namespace dist {

struct InitResult {
  int rank;
  int size;
  std::string library;  // the file that was opened
  std::string version;  // MPI_Get_library_version's first line
};

// Opens the library (once per process: AM_RADIO_MPI_LIBRARY names one file to use instead of the usual names) and
// initialises MPI with MPI_THREAD_SERIALIZED (collectives run on a backend's queue thread, init on the JS thread;
// every call here holds one process-wide lock). Idempotent. Throws amr::Error naming what was looked for.
InitResult init(double timeout_seconds);
bool initialized();
// The world size of the initialised group; throws (naming op) when MPI is not initialised or was finalised.
int world_size(const char* op);

// In place on n floats: the sum over ranks, or the mean (the sum scaled by 1 / size).
void allreduce_f32(float* data, int64_t n, bool mean);
// bytes from root's buffer into every rank's.
void broadcast(void* data, int64_t bytes, int root);
void barrier();
// Each rank's `bytes` from in, concatenated in rank order into out (size · bytes).
void allgather(const void* in, void* out, int64_t bytes);
// Ends every rank of the job (MPI_Abort on the world communicator).
[[noreturn]] void abort_job(int code);
// MPI_Finalize; afterwards no collective may run (they throw).
void finalize();

}  // namespace dist
}  // namespace amr
