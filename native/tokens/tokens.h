// Token assembly for a ViT (spec §1.2–1.5, §1.7): the image → patch rows (input conditioning fused, so the image is
// read once), the [prefix, patches + position] concatenation, and a row gather-sum that serves every slice of
// a token tensor (summary rows, feature rows, ViTDet orders) and, with the index lists turned around, every
// backward of these ops. Indices are int64 on the host and in the kernels: a ViT-H batch at 2048 px passes 2^31
// elements.
#pragma once
#include <cstdint>
#include <string>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace tokens {

struct PatchifyGeometry {
  int64_t batch, channels, height, width, patch;
  AMR_HD int64_t grid_h() const { return height / patch; }
  AMR_HD int64_t grid_w() const { return width / patch; }
  AMR_HD int64_t patch_elems() const { return channels * patch * patch; }
  AMR_HD int64_t out_elements() const { return batch * grid_h() * grid_w() * patch_elems(); }
};

// Why patchify cannot cut g, or empty: the one list of its limits (the kernels index whole patches only), asked by
// the binding and, through native.patchifyUnsupported, by the TypeScript op. A string, as the reason names sizes.
// PatchifyGeometry is also the TypeScript interface of that name (ts/native.ts), field for field.
inline std::string unsupported(const PatchifyGeometry& g) {
  if (g.height % g.patch == 0 && g.width % g.patch == 0) return std::string();
  return "image " + std::to_string(g.height) + "x" + std::to_string(g.width) + " is not a multiple of the patch size " +
         std::to_string(g.patch);
}

// out[b, n, c·P² + yy·P + xx] for n = py·gw + px, as RADIO's Im2Patches orders it.
struct PatchIndex {
  int64_t out, in;
  int64_t channel;
};
AMR_HD PatchIndex patch_index(const PatchifyGeometry& g, int64_t i) {
  const int64_t k = i % g.patch_elems(), row = i / g.patch_elems();
  const int64_t n = row % (g.grid_h() * g.grid_w()), b = row / (g.grid_h() * g.grid_w());
  const int64_t pp = g.patch * g.patch;
  const int64_t c = k / pp, yy = (k % pp) / g.patch, xx = k % g.patch;
  const int64_t y = (n / g.grid_w()) * g.patch + yy, x = (n % g.grid_w()) * g.patch + xx;
  return {i, ((b * g.channels + c) * g.height + y) * g.width + x, c};
}

// out [B, prefix_rows + rows, dim] = cat(prefix, patches + pos) along the rows. prefix is [prefix_rows, dim]
// shared by the batch, or [B, prefix_rows, dim] with prefix_batched; pos is null, [rows, dim] shared, or
// [B, rows, dim] with pos_batched (a per-sample crop).
// AssembleGeometry is the TypeScript interface AssembleGeometry (ts/native.ts), field for field.
struct AssembleGeometry {
  int64_t batch, prefix_rows, rows, dim;
  bool prefix_batched, pos_batched;
};

// gather_rows' sizes: x [batch, in_rows, dim] → out [batch, out_rows, dim]; the row lists travel beside it.
// GatherGeometry is the TypeScript interface GatherRowsGeometry (ts/native.ts).
struct GatherGeometry {
  int64_t batch, in_rows, out_rows, dim;
};

// Why assemble or gather_rows cannot run, or empty: the element counts must keep offsets exact. Asked by the binding.
inline std::string unsupported(const AssembleGeometry& g) {
  return double(g.batch) * double(g.prefix_rows + g.rows) * double(g.dim) > 9.0e15 ? "tensor too large" : std::string();
}
inline std::string unsupported(const GatherGeometry& g) {
  const double rows = double(g.in_rows > g.out_rows ? g.in_rows : g.out_rows);
  return double(g.batch) * rows * double(g.dim) > 9.0e15 ? "tensor too large" : std::string();
}

#define AMR_TOKENS_FUNCS                                                                                         \
  /* (x − mean[c]) / std[c] per channel, patch by patch; x and out may differ in dtype */                        \
  void patchify(GpuStream s, void* out, DType out_dt, const void* x, DType x_dt, const float* mean,              \
                const float* std, const PatchifyGeometry& g);                                                    \
  void assemble(GpuStream s, void* out, const void* prefix, const void* patches, const void* pos,                \
                const AssembleGeometry& g, DType dt);                                                            \
  /* out[b, r, :] = Σ x[b, sources[j], :] for j in [starts[r], starts[r+1]), in j order (deterministic) */         \
  void gather_rows(GpuStream s, void* out, const void* x, const int64_t* starts, const int64_t* sources,         \
                   int64_t batch, int64_t in_rows, int64_t out_rows, int64_t dim, DType dt);

namespace cpu { AMR_TOKENS_FUNCS }
namespace cuda { AMR_TOKENS_FUNCS }
namespace sim { AMR_TOKENS_FUNCS }

// One element of assemble's output, shared by the cpu loop and the gpu kernel so both compute the same thing.
template <typename T>
AMR_HD float assemble_value(const T* prefix, const T* patches, const T* pos, const AssembleGeometry& g, int64_t i) {
  const int64_t d = i % g.dim, row = i / g.dim;
  const int64_t t = row % (g.prefix_rows + g.rows), b = row / (g.prefix_rows + g.rows);
  if (t < g.prefix_rows) return Elem<T>::load(prefix, ((g.prefix_batched ? b * g.prefix_rows : 0) + t) * g.dim + d);
  const int64_t n = t - g.prefix_rows;
  const float v = Elem<T>::load(patches, (b * g.rows + n) * g.dim + d);
  return pos ? v + Elem<T>::load(pos, ((g.pos_batched ? b * g.rows : 0) + n) * g.dim + d) : v;
}

template <typename T>
AMR_HD float gather_row_value(const T* x, const int64_t* starts, const int64_t* sources, int64_t in_rows,
                              int64_t out_rows, int64_t dim, int64_t i) {
  const int64_t d = i % dim, row = i / dim;
  const int64_t r = row % out_rows, b = row / out_rows;
  float acc = 0.f;
  for (int64_t j = starts[r]; j < starts[r + 1]; ++j) acc += Elem<T>::load(x, (b * in_rows + sources[j]) * dim + d);
  return acc;
}

}  // namespace tokens
}  // namespace amr
