// One launch covers every teacher: block = one work item (a summary band, a run of grid tokens, or a band of student
// rows), warp = one token at a time, lanes across channels. Each item writes its two partial sums to scratch; a
// one-block kernel then adds them in a fixed order, so the result is the same bits every run.
#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "loss.h"

// The plan is passed as a __grid_constant__ kernel parameter: read in place from parameter memory, never copied
// per thread.

namespace amr {
namespace loss {
namespace AMR_GPU_NS {

static_assert(sizeof(Plan) <= 4000, "the plan must fit the classic 4 KB kernel parameter limit");

namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ float warp_sum(float v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(kFull, v, m);
  return v;
}

// One map's channels at a grid token: a bilinear sample of its own grid (one tap per axis when it is not resized).
struct Sampled {
  In m;
  int64_t base;
  int width, C;
  Tap y, x;
  __device__ float operator()(int c) const { return sample(m, base, width, C, y, x, c); }
};
// A token read as is: the student when it is already on the common grid, and summaries.
struct Direct {
  In m;
  int64_t base;
  __device__ float operator()(int c) const { return load(m, base + c); }
};

// Warp-wide: the token's cosine factors; adds this lane's share of the elementwise loss to elem.
template <typename S, typename T>
__device__ CosGrad token_stats(const S& student, const T& teacher, int C, Mode mode, float delta, float& elem) {
  float dot = 0.f, ss = 0.f, tt = 0.f;
  for (int c = threadIdx.x & 31; c < C; c += 32) {
    const float a = student(c), g = teacher(c);
    dot += a * g;
    ss += a * a;
    tt += g * g;
    elem += elem_loss(mode, a - g, delta);
  }
  return cos_grad(warp_sum(dot), warp_sum(ss), warp_sum(tt));
}

// Warp-wide: writes d total / d student for a token the student holds unresized.
template <typename T>
__device__ void token_grad(const Direct& student, const T& teacher, int C, Out out, float kt, float ka, float w_elem,
                           Mode mode, float delta) {
  for (int c = threadIdx.x & 31; c < C; c += 32) {
    const float a = student(c), g = teacher(c);
    float v = kt * g + ka * a;
    if (w_elem != 0.f) v += w_elem * elem_grad(mode, a - g, delta);
    store(out, student.base + c, v);
  }
}

__device__ void summary_item(const Term& t, int64_t index, float& cos_loss) {
  const int64_t b = index * kSummaryRows + (threadIdx.x >> 5);
  if (b >= t.batch) return;
  const Direct student{t.ys, b * t.cs}, teacher{t.zs, b * t.cs};
  float unused = 0.f;
  const CosGrad k = token_stats(student, teacher, t.cs, Mode::Mse, 0.f, unused);
  cos_loss += 1.f - k.cos;
  if (t.gys.p) token_grad(student, teacher, t.cs, t.gys, t.w_summary * k.kt, t.w_summary * k.ka, 0.f, Mode::Mse, 0.f);
}

__device__ Sampled student_at(const Term& t, int64_t b, int i, int j) {
  return Sampled{t.f, b * t.hs * t.ws * t.cf, t.ws, t.cf, axis_tap(t.hs, t.gh, i), axis_tap(t.ws, t.gw, j)};
}
__device__ Sampled teacher_at(const Term& t, int64_t b, int i, int j) {
  return Sampled{t.g, b * t.ht * t.wt * t.cf, t.wt, t.cf, axis_tap(t.ht, t.gh, i), axis_tap(t.wt, t.gw, j)};
}

// A run of tokens of the flattened (batch, grid token) space; the student is on the grid, so each token's gradient
// is written right after its statistics.
__device__ void direct_item(const Plan& plan, const Term& t, int64_t index, float& cos_loss, float& elem) {
  const int64_t tokens = int64_t(t.gh) * t.gw;
  const int64_t end = (index + 1) * kTokensPerItem < t.batch * tokens ? (index + 1) * kTokensPerItem : t.batch * tokens;
  for (int64_t n = index * kTokensPerItem + (threadIdx.x >> 5); n < end; n += kWarps) {
    const int64_t b = n / tokens;
    const Direct student{t.f, n * t.cf};
    const Sampled teacher = teacher_at(t, b, static_cast<int>((n % tokens) / t.gw), static_cast<int>(n % t.gw));
    const CosGrad k = token_stats(student, teacher, t.cf, plan.mode, plan.delta, elem);
    cos_loss += 1.f - k.cos;
    if (t.gf.p) token_grad(student, teacher, t.cf, t.gf, t.w_cos * k.kt, t.w_cos * k.ka, t.w_elem, plan.mode, plan.delta);
  }
}

// A band of student rows of one sample, student upsampled. Phase 1: statistics of every grid token that reads the
// band (the loss counts only tokens whose first row tap is in the band, so each grid token is counted by exactly
// one item); phase 2: each student token of the band gathers its gradient from those tokens.
__device__ void gather_item(const Plan& plan, const Term& t, int64_t index, float& cos_loss, float& elem) {
  AMR_DYNAMIC_SMEM(float, factors);
  const int bands = (t.hs + t.rows_per_item - 1) / t.rows_per_item;
  const int64_t b = index / bands;
  const int r0 = static_cast<int>(index % bands) * t.rows_per_item;
  const int r1 = r0 + t.rows_per_item < t.hs ? r0 + t.rows_per_item : t.hs;
  int lo, hi;
  band_rows(t, r0, r1, &lo, &hi);
  const bool grad = t.gf.p != nullptr;
  for (int q = threadIdx.x >> 5; q < (hi - lo) * t.gw; q += kWarps) {
    const int i = lo + q / t.gw, j = q % t.gw;
    const int first_row = axis_tap(t.hs, t.gh, i).i0;
    const bool owned = first_row >= r0 && first_row < r1;
    if (!owned && !grad) continue;
    float token_elem = 0.f;
    const CosGrad k = token_stats(student_at(t, b, i, j), teacher_at(t, b, i, j), t.cf, plan.mode, plan.delta, token_elem);
    if (owned) {
      cos_loss += 1.f - k.cos;
      elem += token_elem;
    }
    if (grad && (threadIdx.x & 31) == 0) {
      factors[2 * q] = t.w_cos * k.kt;
      factors[2 * q + 1] = t.w_cos * k.ka;
    }
  }
  if (!grad) return;
  __syncthreads();
  const int64_t s_base = b * t.hs * t.ws * t.cf, t_base = b * t.ht * t.wt * t.cf;
  for (int q = threadIdx.x >> 5; q < (r1 - r0) * t.ws; q += kWarps) {
    const int r = r0 + q / t.ws, x = q % t.ws;
    int i0, i1, j0, j1;
    readers_of(t.hs, t.gh, r, &i0, &i1);
    readers_of(t.ws, t.gw, x, &j0, &j1);
    for (int c = threadIdx.x & 31; c < t.cf; c += 32) {
      float acc = 0.f;
      for (int i = i0; i < i1; ++i) {
        const Tap sy = axis_tap(t.hs, t.gh, i), ty = axis_tap(t.ht, t.gh, i);
        const float wr = tap_weight(sy, r);
        if (wr == 0.f) continue;
        for (int j = j0; j < j1; ++j) {
          const Tap sx = axis_tap(t.ws, t.gw, j), tx = axis_tap(t.wt, t.gw, j);
          const float w = wr * tap_weight(sx, x);
          if (w == 0.f) continue;
          const float a = sample(t.f, s_base, t.ws, t.cf, sy, sx, c);
          const float g = sample(t.g, t_base, t.wt, t.cf, ty, tx, c);
          const int f = (i - lo) * t.gw + j;
          acc += w * (factors[2 * f] * g + factors[2 * f + 1] * a + t.w_elem * elem_grad(plan.mode, a - g, plan.delta));
        }
      }
      store(t.gf, s_base + (int64_t(r) * t.ws + x) * t.cf + c, acc);
    }
  }
}

__global__ void loss_kernel(const __grid_constant__ Plan plan, float* partial) {
  AMR_SHARED(float, warp_sums, [kWarps][2]);
  const int64_t item = blockIdx.x;
  int k = 0;
  while (k + 1 < plan.terms && item >= plan.term[k + 1].first_item) ++k;
  const Term& t = plan.term[k];
  const int64_t local = item - t.first_item;
  float cos_loss = 0.f, elem = 0.f;  // cos_loss is the same in every lane of a warp; elem is per lane
  if (local < t.summary_items) summary_item(t, local, cos_loss);
  else if (t.rows_per_item == 0) direct_item(plan, t, local - t.summary_items, cos_loss, elem);
  else gather_item(plan, t, local - t.summary_items, cos_loss, elem);
  elem = warp_sum(elem);
  if ((threadIdx.x & 31) == 0) {
    warp_sums[threadIdx.x >> 5][0] = cos_loss;
    warp_sums[threadIdx.x >> 5][1] = elem;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float c = 0.f, e = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      c += warp_sums[w][0];
      e += warp_sums[w][1];
    }
    partial[2 * item] = c;
    partial[2 * item + 1] = e;
  }
}

// Fixed pairing tree over the block: the order depends only on the item count.
__device__ float block_sum(const float* partial, int64_t first, int64_t count, int slot) {
  AMR_SHARED(float, buf, [kThreads]);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) v += partial[2 * (first + i) + slot];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if ((int)threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  const float total = buf[0];
  __syncthreads();  // buf is reused by the next call
  return total;
}

__global__ void final_kernel(const __grid_constant__ Plan plan, const float* partial) {
  double total = 0.0;
  for (int k = 0; k < plan.terms; ++k) {
    const Term& t = plan.term[k];
    const int64_t features = t.first_item + t.summary_items;
    const float s = block_sum(partial, t.first_item, t.summary_items, 0);
    const float fc = block_sum(partial, features, t.feature_items, 0);
    const float fe = block_sum(partial, features, t.feature_items, 1);
    if (threadIdx.x != 0) continue;
    if (t.cs > 0) {
      const double ls = double(s) / t.batch;
      *t.out_summary = static_cast<float>(ls);
      total += t.lambda * ls;
    }
    if (t.cf > 0) {
      const double tokens = double(t.batch) * t.gh * t.gw, elements = tokens * t.cf;
      const double lf = plan.mode == Mode::Mse ? fe / elements : plan.alpha * fc / tokens + plan.beta * fe / elements;
      *t.out_features = static_cast<float>(lf);
      total += t.gamma * lf;
    }
  }
  if (threadIdx.x == 0) *plan.total = static_cast<float>(total);
}

__global__ void scale_by_kernel(Out out, In a, int64_t n, const float* scalar) {
  const float s = *scalar;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(out, i, load(a, i) * s);
}

}  // namespace

void multi_teacher(GpuStream s, const Plan& plan, void* scratch) {
  float* partial = static_cast<float*>(scratch);
  const size_t smem = size_t(plan.stats_capacity) * 2 * sizeof(float);
  launch("multi_teacher_loss", loss_kernel, dim3(static_cast<unsigned>(plan.items)), dim3(kThreads), smem, s, plan,
         partial);
  launch("multi_teacher_loss_final", final_kernel, dim3(1), dim3(kThreads), 0, s, plan,
         static_cast<const float*>(partial));
}

void scale_by(GpuStream s, void* out, const void* a, DType dt, int64_t n, const float* scalar) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  launch("loss_grad_scale", scale_by_kernel, dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8)),
         dim3(kThreads), 0, s, Out{out, dt == DType::BF16}, In{a, dt == DType::BF16}, n, scalar);
}

}  // namespace AMR_GPU_NS
}  // namespace loss
}  // namespace amr
