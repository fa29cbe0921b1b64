// Optional host BLAS, opened at run time so the addon never depends on it: OpenBLAS when installed (Debian's
// libopenblas0). Off unless asked for (set_use_blas): the built-in GEMM matches it at RADIO's large shapes and beats
// it at the small ones (README), so the answer does not depend on what the user installed; it stays reachable to
// compare the two.
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
    std::string errors;
    for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}) {
      void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        errors += std::string(errors.empty() ? "" : "; ") + dlerror();
        continue;
      }
      // libblas.so.3 is whatever the system's alternatives point at; the reference (netlib) BLAS there is single
      // threaded and several times slower than the built-in GEMM, so only OpenBLAS behind that name is taken.
      if (!dlsym(h, "openblas_get_num_threads")) {
        errors += std::string(errors.empty() ? "" : "; ") + name + " is not OpenBLAS (the built-in GEMM is faster)";
        dlclose(h);
        continue;
      }
      if (auto f = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"))) {
        b.sgemm = f;
        b.library = name;
        b.error.clear();
        return;
      }
      errors += std::string(errors.empty() ? "" : "; ") + name + " has no cblas_sgemm";
      dlclose(h);
    }
    b.error = errors;
  });
  return b;
}

bool g_use_blas = false;

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
