#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "layout.h"

namespace amr {
namespace layout {
namespace AMR_GPU_NS {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

// Grid-stride kernels: enough blocks to fill any GPU, few enough that the grid limit never matters.
dim3 stride_grid(int64_t threads) {
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8));
}

// V contiguous elements moved by one aligned load and one store (16 bytes).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// One thread per element (V = 1), or per group of V innermost elements that share one step (see vector_width),
// consecutive threads on consecutive innermost indices, so the side whose innermost stride is 1 is written in
// full lines. I is uint32_t when the element count allows: a 64-bit division costs several times a 32-bit one.
template <typename T, typename I, int V>
__global__ void copy_kernel(CopyPlan p, T* out, const T* in, I groups) {
  const I stride = I(gridDim.x) * blockDim.x;
  for (I g = I(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    Step s;
    if (!plan_step(p, g * I(V), &s)) continue;
    if constexpr (V == 1) {
      copy_element(p, out, in, s);
    } else {
      Vec<T, V> v;
      if (s.src < 0)
        for (int k = 0; k < V; ++k) v.v[k] = T(0);
      else
        v = *reinterpret_cast<const Vec<T, V>*>(in + s.src);
      *reinterpret_cast<Vec<T, V>*>(out + s.dst) = v;
    }
  }
}

bool aligned_to(int64_t v, int64_t n) { return v % n == 0; }

// 16 / sizeof(T) when every group of that many innermost elements is one plain aligned run on both sides: the
// innermost dim contiguous in both buffers and a multiple of the width, no axis depending on it (so the whole
// group is padding or not, written or not), every other stride and offset a multiple of the width, the pointers
// 16-byte aligned, and no scaling. 1 otherwise.
template <typename T>
int vector_width(const CopyPlan& p, const void* out, const void* in) {
  constexpr int kWide = 16 / int(sizeof(T));
  const int last = p.rank - 1;
  bool ok = p.rank > 0 && (p.scale == 1.f || std::is_same<T, int32_t>::value) &&
            reinterpret_cast<uintptr_t>(out) % 16 == 0 && reinterpret_cast<uintptr_t>(in) % 16 == 0 &&
            aligned_to(p.src_offset, kWide) && aligned_to(p.dst_offset, kWide);
  ok = ok && p.src_stride[last] == 1 && p.dst_stride[last] == 1 && aligned_to(p.size[last], kWide);
  for (int d = 0; ok && d < last; ++d) ok = aligned_to(p.src_stride[d], kWide) && aligned_to(p.dst_stride[d], kWide);
  for (int a = 0; ok && a < p.axes; ++a) ok = p.axis[a].coef[last] == 0 && aligned_to(p.axis[a].stride, kWide);
  return ok ? kWide : 1;
}

template <typename T, int V>
void launch_copy(GpuStream s, const CopyPlan& p, T* out, const T* in, int64_t total) {
  const int64_t groups = total / V;
  if (total <= int64_t(UINT32_MAX) - int64_t(65535) * 8 * kThreads)
    launch("layout_copy", copy_kernel<T, uint32_t, V>, stride_grid(groups), dim3(kThreads), 0, s, p, out, in, uint32_t(groups));
  else
    launch("layout_copy", copy_kernel<T, uint64_t, V>, stride_grid(groups), dim3(kThreads), 0, s, p, out, in, uint64_t(groups));
}

constexpr int kTile = 32, kTileRows = 8;

// The transposing permutes (see transposed_dim): a 32 x 32 tile of (b, innermost) passes through shared memory, so
// the reads run along b and the writes along the innermost dim, both in full lines. The row of 33 keeps the column
// reads conflict-free.
template <typename T>
__global__ void transpose_kernel(CopyPlan p, int b, T* out, const T* in, int64_t outer) {
  AMR_SHARED(T, tile, [kTile][kTile + 1]);
  const int last = p.rank - 1;
  const int64_t na = p.size[last], nb = p.size[b], sa = p.src_stride[last], db = p.dst_stride[b];
  const int64_t a0 = int64_t(blockIdx.x) * kTile, b0 = int64_t(blockIdx.y) * kTile;
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  for (int64_t z = blockIdx.z; z < outer; z += gridDim.z) {
    int64_t src, dst;
    outer_offsets(p, b, z, &src, &dst);
    for (int j = ty; j < kTile; j += kTileRows)
      if (a0 + j < na && b0 + tx < nb) tile[j][tx] = in[src + (b0 + tx) + (a0 + j) * sa];
    __syncthreads();
    for (int j = ty; j < kTile; j += kTileRows)
      if (b0 + j < nb && a0 + tx < na) out[dst + (b0 + j) * db + (a0 + tx)] = tile[tx][j];
    __syncthreads();  // the next z overwrites the tile
  }
}

// transposed_dim's pairing, when the tile grid fits the launch limits.
int transpose_dim(const CopyPlan& p) {
  const int b = transposed_dim(p);
  const bool fits = b >= 0 && (p.size[b] + kTile - 1) / kTile <= 65535 && (p.size[p.rank - 1] + kTile - 1) / kTile <= 65535;
  return fits ? b : -1;
}

template <typename T>
__global__ void pad_backward_kernel(PadGeometry g, T* grad_in, const T* grad_out, int64_t total) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    Elem<T>::store(grad_in, size_t(e), pad_gather(g, grad_out, e));
  }
}

constexpr int kSplit = 8;

// inner > 1: 32 outputs per block, neighbouring threads on neighbouring inner elements (full-line reads when inner
// is wide); the n rows are split over the block's 8 thread rows, whose partial sums are added in row order, so the
// result is the same run to run. The split gives a short output (the summary mean: B x C) 8 times the threads.
template <typename T>
__global__ void reduce_strided_kernel(ReduceGeometry g, T* out, const T* in) {
  AMR_SHARED(float, part, [kSplit][kWarp]);
  const int64_t total = g.outer * g.inner;
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  for (int64_t base = int64_t(blockIdx.x) * kWarp; base < total; base += int64_t(gridDim.x) * kWarp) {
    const int64_t e = base + tx;
    float acc = 0.f;
    if (e < total) {
      const int64_t o = e / g.inner, i = e - o * g.inner;
      const T* src = in + o * g.n * g.inner + i;
      for (int64_t k = ty; k < g.n; k += kSplit) acc += Elem<T>::load(src, size_t(k * g.inner));
    }
    part[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && e < total) {
      float sum = 0.f;
      for (int r = 0; r < kSplit; ++r) sum += part[r][tx];
      Elem<T>::store(out, size_t(e), sum * g.alpha);
    }
    __syncthreads();  // the next round overwrites part
  }
}

// inner == 1 (the last dim): a warp per output row reads the row in full lines and adds the lanes' partial sums
// by a fixed butterfly, so the result does not depend on timing.
template <typename T>
__global__ void reduce_rows_kernel(ReduceGeometry g, T* out, const T* in) {
  const int lane = int(threadIdx.x) % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; r < g.outer; r += warps) {
    const T* src = in + r * g.n;
    float acc = 0.f;
    for (int64_t k = lane; k < g.n; k += kWarp) acc += Elem<T>::load(src, size_t(k));
    for (int off = kWarp / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) Elem<T>::store(out, size_t(r), acc * g.alpha);
  }
}

}  // namespace

void copy(GpuStream s, const CopyPlan& plan, void* out, const void* in, DType dt) {
  const CopyPlan p = simplify(plan);
  const int64_t total = plan_elements(p);
  with_dtype(dt, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(in);
    const int b = transpose_dim(p);
    if (b >= 0) {
      const int64_t outer = total / (p.size[b] * p.size[p.rank - 1]);
      const dim3 grid(unsigned((p.size[p.rank - 1] + kTile - 1) / kTile), unsigned((p.size[b] + kTile - 1) / kTile),
                      unsigned(outer < 65535 ? outer : 65535));
      launch("layout_transpose", transpose_kernel<T>, grid, dim3(kTile, kTileRows), 0, s, p, b, o, x, outer);
    } else if (vector_width<T>(p, out, in) > 1)
      launch_copy<T, 16 / int(sizeof(T))>(s, p, o, x, total);
    else
      launch_copy<T, 1>(s, p, o, x, total);
  });
}

void pad_backward(GpuStream s, const PadGeometry& g, void* grad_in, const void* grad_out, DType dt) {
  with_float_dtype(dt, "pad2d backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const int64_t total = g.planes * g.in_h * g.in_w * g.inner;
    launch("layout_pad_backward", pad_backward_kernel<T>, stride_grid(total), dim3(kThreads), 0, s, g,
           static_cast<T*>(grad_in), static_cast<const T*>(grad_out), total);
  });
}

void reduce(GpuStream s, const ReduceGeometry& g, void* out, const void* in, DType dt) {
  with_float_dtype(dt, "sum", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(in);
    if (g.inner == 1)
      launch("layout_reduce_rows", reduce_rows_kernel<T>, stride_grid(g.outer * kWarp), dim3(kThreads), 0, s, g, o, x);
    else
      launch("layout_reduce", reduce_strided_kernel<T>, stride_grid(g.outer * g.inner * kSplit), dim3(kWarp, kSplit), 0, s, g,
             o, x);
  });
}

}  // namespace AMR_GPU_NS
}  // namespace layout
}  // namespace amr
