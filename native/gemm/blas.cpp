// Optional host BLAS, opened at run time so the addon never depends on it: OpenBLAS when installed (Debian's
// libopenblas0), otherwise the cpu backend's own blocked GEMM.
#include "blas.h"

#include <dlfcn.h>

#include <mutex>

namespace amr {
namespace gemm {
namespace cpu {
namespace {

struct Blas {
  SgemmFn sgemm = nullptr;
  const char* library = nullptr;
  std::string error;
};

Blas& blas() {
  static Blas& b = *new Blas();  // never destroyed: queue threads may still call sgemm while exit() runs
  static std::once_flag once;
  std::call_once(once, [] {
    for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}) {
      void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        b.error = dlerror();
        continue;
      }
      if (auto f = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"))) {
        b.sgemm = f;
        b.library = name;
        b.error.clear();
        return;
      }
      b.error = std::string(name) + " has no cblas_sgemm";
      dlclose(h);
    }
  });
  return b;
}

bool g_use_blas = true;

}  // namespace

SgemmFn host_sgemm() { return g_use_blas ? blas().sgemm : nullptr; }

BlasInfo blas_info() {
  Blas& b = blas();
  return BlasInfo{b.sgemm != nullptr, b.library, b.error.c_str()};
}

void set_use_blas(bool on) { g_use_blas = on; }

}  // namespace cpu
}  // namespace gemm
}  // namespace amr
