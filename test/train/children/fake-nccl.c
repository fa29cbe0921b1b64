/* A stand-in for libnccl.so.2 that needs no GPU, for test/train/nccl.test.ts: it lets the machine without a GPU or
 * NCCL drive what native/dist/nccl.cpp does around the collectives (opening the library and reading its version,
 * the unique id, ncclCommInitRank off the JS thread, the watchdog that turns an asynchronous error into an abort,
 * destroy, and a process that exits with a communicator alive). Collectives need cuda tensors, so it has none that
 * do anything: they return an error. Built by the test with `cc -shared -fPIC`. */
#include <stdlib.h>
#include <string.h>

typedef struct {
  char internal[128];
} ncclUniqueId;

static int polls = 0;
static int comm_token = 0;

int ncclGetVersion(int* v) {
  *v = 21803; /* 2.18.3 */
  return 0;
}
int ncclGetUniqueId(ncclUniqueId* id) {
  for (int i = 0; i < 128; i++) id->internal[i] = (char)(i * 7 + 3);
  return 0;
}
int ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
  if (getenv("FAKE_NCCL_INIT_FAIL")) return 5; /* ncclInvalidUsage, as for two ranks on one GPU */
  /* The id must arrive intact: the bytes ncclGetUniqueId wrote. */
  for (int i = 0; i < 128; i++)
    if (id.internal[i] != (char)(i * 7 + 3)) return 4; /* ncclInvalidArgument */
  if (nranks < 1 || rank < 0 || rank >= nranks) return 4;
  *comm = &comm_token;
  return 0;
}
int ncclCommDestroy(void* comm) { return comm == &comm_token ? 0 : 4; }
int ncclCommAbort(void* comm) { return comm == &comm_token ? 0 : 4; }
int ncclCommGetAsyncError(void* comm, int* err) {
  const char* after = getenv("FAKE_NCCL_ASYNC_ERROR_AFTER");
  *err = after && ++polls > atoi(after) ? 6 : 0; /* ncclRemoteError */
  return comm == &comm_token ? 0 : 4;
}
int ncclAllReduce(const void* s, void* r, size_t n, int t, int op, void* comm, void* stream) { return 5; }
int ncclBroadcast(const void* s, void* r, size_t n, int t, int root, void* comm, void* stream) { return 5; }
int ncclAllGather(const void* s, void* r, size_t n, int t, void* comm, void* stream) { return 5; }
const char* ncclGetErrorString(int rc) {
  switch (rc) {
    case 4: return "invalid argument (fake)";
    case 5: return "invalid usage (fake)";
    case 6: return "remote process exited or there was a network error (fake)";
    default: return "unknown (fake)";
  }
}
