// Reductions (full sums, row sums for bias gradients): argument checks (args.h, reduce::unsupported), then the
// work is queued.
#include "../native/reduce/reduce.h"
#include "args.h"
#include "buffer.h"
#include "dispatch.h"
#include "modules.h"

namespace amr {
namespace bindings {
namespace {

// sum({ out, a, dtype, n, alpha }): out[0] = alpha * sum(a)
Napi::Value Sum(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Fields f = Fields::of(info, 0, "sum");
    StoragePtr out = f.buffer("out"), a = f.buffer("a");
    const DType dt = f.storage_dtype("dtype");
    const int64_t n = f.int64("n", 1);
    const double alpha = f.any_number("alpha");
    if (const char* why = reduce::unsupported(dt)) throw Error(std::string("sum: ") + why + "; cast to f32 first");
    require_elements(out, 1, dt, "sum", "output");
    require_elements(a, n, dt, "sum", "input");
    Backend& be = common_backend({out, a}, "sum");
    StoragePtr scratch = be.allocate(static_cast<size_t>(reduce::sum_scratch_bytes(n)));
    be.enqueue("sum", [&be, out, a, dt, n, alpha, scratch] {
      AMR_DISPATCH(be, reduce, sum, out->ptr, a->ptr, dt, n, alpha, scratch->ptr);
    });
    return info.Env().Undefined();
  });
}

// geometry = { rows, cols }: reduce::RowsGeometry.
reduce::RowsGeometry rows_geometry(const Fields& f) {
  const Fields o = f.part("geometry");
  reduce::RowsGeometry g;
  g.rows = o.int64("rows", 1);
  g.cols = o.int64("cols", 1);
  if (const char* why = reduce::unsupported(g)) throw Error(f.who + ": " + why);
  return g;
}

// sumRows({ out, a, dtype, geometry }): out[c] = sum over rows of a[r, c]
Napi::Value SumRows(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "sum over rows";
    const Fields f = Fields::of(info, 0, op);
    StoragePtr out = f.buffer("out"), a = f.buffer("a");
    const DType dt = f.dtype("dtype");
    const reduce::RowsGeometry g = rows_geometry(f);
    const int64_t rows = g.rows, cols = g.cols;
    require_elements(out, cols, dt, op, "output");
    require_elements(a, rows * cols, dt, op, "input");
    Backend& be = common_backend({out, a}, op);
    StoragePtr scratch = be.allocate(static_cast<size_t>(reduce::sum_rows_scratch_bytes(cols)));
    be.enqueue(op, [&be, out, a, dt, rows, cols, scratch] {
      AMR_DISPATCH(be, reduce, sum_rows, out->ptr, a->ptr, dt, rows, cols, scratch->ptr);
    });
    return info.Env().Undefined();
  });
}

}  // namespace

void init_reduce_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("sum", Napi::Function::New(env, Sum));
  exports.Set("sumRows", Napi::Function::New(env, SumRows));
}

}  // namespace bindings
}  // namespace amr
