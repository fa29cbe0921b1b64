// Fused attention over a timm-ordered qkv tensor [B, T, 3, heads, headDim]: global, or ViTDet windows read straight
// from the raster token layout (no permuted copy). Softmax statistics are f32; the forward keeps the per-row
// logsumexp so the backward recomputes the probabilities instead of storing them. Beside qkv the scores may get a
// bias shared by the batch ([heads, L, L]) and SAM's decomposed relative position terms (rel_pos_at below).
#pragma once
#include <cstdint>
#include <string>

#include "../runtime/common.h"
#include "../runtime/launch_types.h"

namespace amr {
namespace attention {

// The problem's geometry. window == 0 is global mode (one "window" of all T tokens, prefix included).
struct Geometry {
  int64_t batch, tokens, heads, head_dim;
  int64_t prefix;              // leading tokens, excluded from window mode (their outputs are zero there)
  int64_t window, grid_h, grid_w;
  float scale;
  // SAM's decomposed relative position terms (global mode): the token grid rel_gh × rel_gw (T = rel_gh·rel_gw in
  // raster order); 0 × 0 when there are none.
  int64_t rel_gh, rel_gw;

  AMR_HD int64_t dim() const { return heads * head_dim; }
  AMR_HD int64_t windows() const { return window ? (grid_h / window) * (grid_w / window) : 1; }
  AMR_HD int64_t length() const { return window ? window * window : tokens; }
  // Token index of row i of window w.
  AMR_HD int64_t token(int64_t w, int64_t i) const {
    if (!window) return i;
    const int64_t per_row = grid_w / window;
    const int64_t wy = w / per_row, wx = w % per_row;
    return prefix + (wy * window + i / window) * grid_w + wx * window + i % window;
  }
  // Element offset of (batch b, token t, part (0 q, 1 k, 2 v), head h, channel 0) in qkv.
  AMR_HD int64_t qkv_offset(int64_t b, int64_t t, int part, int64_t h) const {
    return ((b * tokens + t) * 3 + part) * dim() + h * head_dim;
  }
  AMR_HD int64_t out_offset(int64_t b, int64_t t, int64_t h) const { return (b * tokens + t) * dim() + h * head_dim; }
  // Rows of the per-row statistics (logsumexp, delta): [batch, heads, windows, length].
  AMR_HD int64_t stat_rows() const { return batch * heads * windows() * length(); }
  // Floats of the per-(batch, window) bias-gradient partials [batch·windows, heads, L, L].
  AMR_HD int64_t bias_partial_floats() const { return batch * windows() * heads * length() * length(); }
  // Floats of the backward's per-query-row dw accumulators [batch, heads, T, rel_gw] (the dQ pass keeps them).
  AMR_HD int64_t rel_scratch_floats() const { return stat_rows() * rel_gw; }
};

// The decomposed relative position term of score (query row, key j), SAM's add_decomposed_rel_pos without the
// [T, T] bias: relH [B, heads, T, gh] and relW [B, heads, T, gw] hold, per query, one value per key row and one per
// key column; row = (b·heads + h)·T + query, the statistics row of global mode. Every backend adds exactly this.
template <typename T>
AMR_HD float rel_pos_at(const T* rel_h, const T* rel_w, const Geometry& g, int64_t row, int64_t j) {
  return Elem<T>::load(rel_h, row * g.rel_gh + j / g.rel_gw) + Elem<T>::load(rel_w, row * g.rel_gw + j % g.rel_gw);
}

// The head dims attention runs, on every backend, in f32 and bf16, forward and backward: every multiple of 8 from 8
// to 256. This is the one place that says so; the binding (native.attentionUnsupported) and the TypeScript op ask it.
// Multiples of 8 because the bf16 kernels move rows in 16-byte pieces (8 channels) and the SIMT kernels pad a row
// to their capacity in such pieces; 256 bounds what one thread holds of a row in the SIMT kernels (4 rows of f32 in
// the dK/dV kernel). Which kernel runs a supported dim is cuda.cu's business (tensor cores or SIMT).
constexpr int64_t kHeadDimStep = 8;
constexpr int64_t kMaxHeadDim = 256;

// The parts of a call that limit each other (a bias goes with everything, so it is not among them); which
// combinations run is attention_unsupported's business.
struct Features {
  bool window = false, prefix = false, rel_pos = false;
};

// Empty when attention runs head dim head_dim on dtype dt with the given features, else the reason, naming the head
// dim, the dtype or the combination. relPos is global attention without prefix tokens: SAM's encoder has neither
// windows it reads from the raster layout (its windowed blocks partition first, so windows arrive as the batch) nor
// cls tokens, and a key's grid row and column (k / gw, k % gw) are only defined over the gh × gw patch tokens.
// relPos together with a bias runs (both terms are added).
inline std::string attention_unsupported(int64_t head_dim, DType dt, Features f = Features()) {
  if (dt == DType::I32) return "i32 tensors are not supported";
  if (head_dim < kHeadDimStep || head_dim > kMaxHeadDim || head_dim % kHeadDimStep)
    return "head dim " + std::to_string(head_dim) + " is not supported (a multiple of " + std::to_string(kHeadDimStep) +
           " from " + std::to_string(kHeadDimStep) + " to " + std::to_string(kMaxHeadDim) + ")";
  if (f.rel_pos && f.window) return "relPos is not supported with window (global attention only)";
  if (f.rel_pos && f.prefix) return "relPos is not supported with prefix tokens (every token is a grid token)";
  return std::string();
}

inline Features features_of(const Geometry& g) {
  Features f;
  f.window = g.window != 0;
  f.prefix = g.prefix != 0;
  f.rel_pos = g.rel_gh != 0;
  return f;
}

#define AMR_ATTENTION_FUNCS                                                                                     \
  /* out [B, T, D] (prefix rows zero in window mode), lse [B, heads, windows, L]; rel_h and rel_w both or       \
     neither (g.rel_gh != 0 exactly when given) */                                                              \
  void attention_forward(GpuStream s, void* out, float* lse, const void* qkv, const void* bias,                \
                         const void* rel_h, const void* rel_w, const Geometry& g, DType dt);                    \
  /* dqkv [B, T, 3D] (all written), dbias [heads, L, L] when bias is given, drel_h/drel_w [B, heads, T, gh/gw] \
     when rel_h/rel_w are; scratch: g.stat_rows() floats (delta), plus g.bias_partial_floats() when bias is     \
     given, plus g.rel_scratch_floats() when rel_h is, in that order */                                         \
  void attention_backward(GpuStream s, void* dqkv, void* dbias, void* drel_h, void* drel_w, const void* dout,   \
                          const void* qkv, const void* out, const float* lse, const void* bias,                 \
                          const void* rel_h, const void* rel_w, const Geometry& g, DType dt, float* scratch);

namespace cpu { AMR_ATTENTION_FUNCS }
namespace cuda { AMR_ATTENTION_FUNCS }
namespace sim { AMR_ATTENTION_FUNCS }

}  // namespace attention
}  // namespace amr
