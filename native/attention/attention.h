// Fused attention over a timm-ordered qkv tensor [B, T, 3, heads, headDim]: global, or ViTDet windows read straight
// from the raster token layout (no permuted copy). Softmax statistics are f32; the forward keeps the per-row
// logsumexp so the backward recomputes the probabilities instead of storing them.
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
};

// The head dims attention runs, on every backend, in f32 and bf16, forward and backward: every multiple of 8 from 8
// to 256. This is the one place that says so; the binding (native.attentionUnsupported) and the TypeScript op ask it.
// Multiples of 8 because the bf16 kernels move rows in 16-byte pieces (8 channels) and the SIMT kernels pad a row
// to their capacity in such pieces; 256 bounds what one thread holds of a row in the SIMT kernels (4 rows of f32 in
// the dK/dV kernel). Which kernel runs a supported dim is cuda.cu's business (tensor cores or SIMT).
constexpr int64_t kHeadDimStep = 8;
constexpr int64_t kMaxHeadDim = 256;

// Empty when attention runs head dim head_dim on dtype dt, else the reason, naming the head dim or the dtype.
inline std::string attention_unsupported(int64_t head_dim, DType dt) {
  if (dt == DType::I32) return "i32 tensors are not supported";
  if (head_dim < kHeadDimStep || head_dim > kMaxHeadDim || head_dim % kHeadDimStep)
    return "head dim " + std::to_string(head_dim) + " is not supported (a multiple of " + std::to_string(kHeadDimStep) +
           " from " + std::to_string(kHeadDimStep) + " to " + std::to_string(kMaxHeadDim) + ")";
  return std::string();
}

#define AMR_ATTENTION_FUNCS                                                                                     \
  /* out [B, T, D] (prefix rows zero in window mode), lse [B, heads, windows, L] */                            \
  void attention_forward(GpuStream s, void* out, float* lse, const void* qkv, const void* bias,                \
                         const Geometry& g, DType dt);                                                          \
  /* dqkv [B, T, 3D] (all written), dbias [heads, L, L] when bias is given; scratch: g.stat_rows() floats      \
     (delta) plus g.bias_partial_floats() when bias is given */                                                  \
  void attention_backward(GpuStream s, void* dqkv, void* dbias, const void* dout, const void* qkv,              \
                          const void* out, const float* lse, const void* bias, const Geometry& g, DType dt,      \
                          float* scratch);

namespace cpu { AMR_ATTENTION_FUNCS }
namespace cuda { AMR_ATTENTION_FUNCS }
namespace sim { AMR_ATTENTION_FUNCS }

}  // namespace attention
}  // namespace amr
