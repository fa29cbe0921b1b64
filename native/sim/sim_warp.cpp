// Warp-level instructions for the sim backend: shuffles, votes, __syncwarp, and the tensor-core path
// (mma.sync, ldmatrix, cp.async) behind native/runtime/tensor_core.cuh. Each is a warp collective
// (sim_runtime.cpp): the lanes deposit their operands, the last one to arrive computes every lane's
// result from the PTX ISA rules quoted below, and all continue.
#include <cstdio>

#include "sim_internal.h"
#include "../runtime/tensor_core.cuh"

namespace amr {
namespace sim {
namespace detail {
namespace {

[[noreturn]] void failf(const char* fmt, const char* what, unsigned x) {
  char b[192];
  std::snprintf(b, sizeof b, fmt, what, x);
  fail(b);
}

void op_shfl(LaneIO* const* lanes, unsigned part) {
  uint64_t result[32];
  for (unsigned m = part; m; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
    const int s = lanes[l]->src;
    if (s < 0) {
      result[l] = lanes[l]->value;
    } else if ((part >> s) & 1u) {
      result[l] = lanes[s]->value;
    } else {
      result[l] = ~0ull;  // source lane inactive or exited: undefined on hardware, poison here
    }
  }
  for (unsigned m = part; m; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
    lanes[l]->value = result[l];
  }
}

void op_vote(LaneIO* const* lanes, unsigned part) {
  unsigned ballot = 0;
  for (unsigned m = part; m; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(__builtin_ctz(m));
    if (lanes[l]->value) ballot |= 1u << l;
  }
  for (unsigned m = part; m; m &= m - 1) lanes[__builtin_ctz(m)]->value = ballot | (uint64_t(part) << 32);
}

void op_nothing(LaneIO* const*, unsigned) {}

void require_full_warp(unsigned part, const char* what) {
  if (part != ~0u) failf("%s needs all 32 lanes of the warp, but only lanes 0x%08x are live", what, part);
}

// 16-bit element `half` (0 = low, 1 = high) of a packed register, as f32.
template <bool kBf16>
float element(uint32_t reg, unsigned half) {
  const uint16_t h = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu);
  return kBf16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// mma.sync.aligned.m16n8k{16,8}.row.col.f32.{bf16,f16}.{bf16,f16}.f32, from the PTX ISA sections
// "Matrix Fragments for mma.m16n8k16 with floating point type" and "... for mma.m16n8k8", with
// groupID = %laneid >> 2 and threadID_in_group = %laneid % 4:
//   A element a_i (i = 0..7 for k16, 0..3 for k8; register i/2, low half for even i):
//     row = groupID for 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise
//     col = threadID_in_group * 2 + (i & 1), plus 8 for i >= 4
//   B element b_i (i = 0..3 for k16, 0..1 for k8; register i/2):
//     row (k) = threadID_in_group * 2 + (i & 1), plus 8 for i >= 2;  col (n) = groupID
//   C/D element c_i (i = 0..3, one f32 register each):
//     row = groupID for i < 2, groupID + 8 otherwise;  col = threadID_in_group * 2 + (i & 1)
// The products of two bf16 (8-bit significands) or two f16 (11-bit) are exact in f32; they are added to
// C in k order in f32.
template <int K, bool kBf16>
void op_mma(LaneIO* const* lanes, unsigned part) {
  require_full_warp(part, K == 16 ? (kBf16 ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16") : "mma.m16n8k8.bf16");
  float A[16][K], B[K][8], D[16][8];  // B as [k][n] so the n loop below is contiguous
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned g = l >> 2, t = l & 3u;
    const uint32_t* a = static_cast<const uint32_t*>(lanes[l]->in[0]);
    const uint32_t* b = static_cast<const uint32_t*>(lanes[l]->in[1]);
    const float* c = static_cast<const float*>(lanes[l]->in[2]);
    for (unsigned i = 0; i < K / 2; ++i) {
      const unsigned row = g + (((i >> 1) & 1u) ? 8u : 0u);
      const unsigned col = t * 2 + (i & 1u) + (i >= 4 ? 8u : 0u);
      A[row][col] = element<kBf16>(a[i / 2], i & 1u);
    }
    for (unsigned i = 0; i < K / 4; ++i) {
      const unsigned k = t * 2 + (i & 1u) + (i >= 2 ? 8u : 0u);
      B[k][g] = element<kBf16>(b[i / 2], i & 1u);
    }
    for (unsigned i = 0; i < 4; ++i) D[g + (i >= 2 ? 8u : 0u)][t * 2 + (i & 1u)] = c[i];
  }
  // Each D[m][n] = C[m][n] + sum over k in order; the n loop is innermost so the 8 independent sums of a
  // row advance together (vectorizable) without changing any single sum's order.
  for (unsigned m = 0; m < 16; ++m) {
    float acc[8];
    for (unsigned n = 0; n < 8; ++n) acc[n] = D[m][n];
    for (unsigned k = 0; k < K; ++k)
      for (unsigned n = 0; n < 8; ++n) acc[n] += A[m][k] * B[k][n];
    for (unsigned n = 0; n < 8; ++n) D[m][n] = acc[n];
  }
  // All operands are read before any result is written: d may alias c in the same or another lane.
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned g = l >> 2, t = l & 3u;
    float* d = static_cast<float*>(lanes[l]->out);
    for (unsigned i = 0; i < 4; ++i) d[i] = D[g + (i >= 2 ? 8u : 0u)][t * 2 + (i & 1u)];
  }
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16 (PTX ISA "Warp-level matrix load instruction:
// ldmatrix"): lanes 8j..8j+7 hold the addresses of rows 0..7 of matrix j (16 bytes each, 16-byte aligned);
// lane l receives in register j the elements (row l/4, columns 2(l%4), 2(l%4)+1) of matrix j, or of its
// transpose with .trans. Addresses in lanes above 8*num are not used.
template <int kNum, bool kTrans>
void op_ldmatrix(LaneIO* const* lanes, unsigned part) {
  require_full_warp(part, "ldmatrix");
  uint16_t M[kNum][8][8];
  for (unsigned j = 0; j < kNum; ++j)
    for (unsigned r = 0; r < 8; ++r) {
      const void* p = lanes[j * 8 + r]->in[0];
      if (reinterpret_cast<uintptr_t>(p) & 15u)
        failf("%s: row address of lane %u is not 16-byte aligned", "ldmatrix", j * 8 + r);
      std::memcpy(M[j][r], p, 16);
    }
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned g = l >> 2, t = l & 3u;
    uint32_t* out = static_cast<uint32_t*>(lanes[l]->out);
    for (unsigned j = 0; j < kNum; ++j) {
      const uint32_t lo = kTrans ? M[j][2 * t][g] : M[j][g][2 * t];
      const uint32_t hi = kTrans ? M[j][2 * t + 1][g] : M[j][g][2 * t + 1];
      out[j] = lo | (hi << 16);
    }
  }
}

Fiber* running(const char* what) {
  Fiber* f = current_fiber();
  if (!f) fail(what);
  return f;
}

void apply(const CpAsyncCopy& c) { std::memcpy(c.dst, c.data, 16); }

}  // namespace

// shfl.sync source-lane computation (PTX ISA "shfl.sync"): only bits 4:0 of the lane/delta operand are
// used; segments are `width` lanes; up/down/bfly keep the lane's own value when the source is outside
// the allowed range (up: below the segment, down/bfly: above it); idx wraps within the segment.
uint64_t shfl(unsigned mask, uint64_t value, int mode, unsigned arg, int width) {
  static const char* const kNames[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
  const char* what = kNames[mode & 3];
  Fiber* f = running(what);
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    failf("%s: width %u is not a power of two in [1, 32]", what, static_cast<unsigned>(width));
  const int lane = static_cast<int>(f->lane);
  const int seg_first = lane & ~(width - 1), seg_last = seg_first + width - 1;
  const int b = static_cast<int>(arg & 31u);
  int src = -1;
  switch (mode) {
    case kShflIdx: src = seg_first | (b & (width - 1)); break;
    case kShflUp: src = lane - b >= seg_first ? lane - b : -1; break;
    case kShflDown: src = lane + b <= seg_last ? lane + b : -1; break;
    default: src = (lane ^ b) <= seg_last ? (lane ^ b) : -1; break;
  }
  LaneIO io{};
  io.value = value;
  io.src = src;
  warp_collective(what, mask, &op_shfl, &io);
  return io.value;
}

unsigned vote(unsigned mask, int pred, unsigned* participants) {
  LaneIO io{};
  io.value = pred != 0;
  warp_collective("__ballot_sync/__any_sync/__all_sync", mask, &op_vote, &io);
  if (participants) *participants = static_cast<unsigned>(io.value >> 32);
  return static_cast<unsigned>(io.value);
}

void syncwarp(unsigned mask) {
  LaneIO io{};
  warp_collective("__syncwarp", mask, &op_nothing, &io);
}

void cp_async_flush(Fiber* f) {
  for (std::size_t i = f->copies_head; i < f->copies.size(); ++i) apply(f->copies[i]);
  f->copies.clear();
  f->copies_head = 0;
}

}  // namespace detail

namespace tc {

void mma_m16n8k16(bool bf16, float* d, const uint32_t* a, const uint32_t* b, const float* c) {
  detail::LaneIO io{};
  io.in[0] = a;
  io.in[1] = b;
  io.in[2] = c;
  io.out = d;
  if (bf16)
    detail::warp_collective("mma.m16n8k16.bf16", ~0u, &detail::op_mma<16, true>, &io);
  else
    detail::warp_collective("mma.m16n8k16.f16", ~0u, &detail::op_mma<16, false>, &io);
}

void mma_m16n8k8_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c) {
  detail::LaneIO io{};
  io.in[0] = a;
  io.in[1] = b;
  io.in[2] = c;
  io.out = d;
  detail::warp_collective("mma.m16n8k8.bf16", ~0u, &detail::op_mma<8, true>, &io);
}

void ldmatrix(int num, bool trans, uint32_t* r, const void* row_address) {
  using detail::op_ldmatrix;
  static const detail::WarpOp kOps[2][3] = {{&op_ldmatrix<1, false>, &op_ldmatrix<2, false>, &op_ldmatrix<4, false>},
                                            {&op_ldmatrix<1, true>, &op_ldmatrix<2, true>, &op_ldmatrix<4, true>}};
  static const char* const kNames[2][3] = {{"ldmatrix.x1", "ldmatrix.x2", "ldmatrix.x4"},
                                           {"ldmatrix.x1.trans", "ldmatrix.x2.trans", "ldmatrix.x4.trans"}};
  const int k = num == 1 ? 0 : num == 2 ? 1 : 2;
  detail::LaneIO io{};
  io.in[0] = row_address;
  io.out = r;
  detail::warp_collective(kNames[trans][k], ~0u, kOps[trans][k], &io);
}

void cp_async_16(void* smem_dst, const void* gmem_src, bool valid) {
  detail::Fiber* f = detail::running("cp.async");
  if (reinterpret_cast<uintptr_t>(smem_dst) & 15u) detail::fail("cp.async: shared-memory destination is not 16-byte aligned");
  if (valid && (reinterpret_cast<uintptr_t>(gmem_src) & 15u))
    detail::fail("cp.async: global-memory source is not 16-byte aligned");
  // The destination is undefined from the issue until the wait: poison it now (a thread still reading the
  // old contents, e.g. a stage refilled without a barrier, sees NaN), write the data at the wait.
  std::memset(smem_dst, 0xFF, 16);
  detail::CpAsyncCopy c;
  c.dst = static_cast<unsigned char*>(smem_dst);
  c.group = f->open_group;
  if (valid)
    std::memcpy(c.data, gmem_src, 16);
  else
    std::memset(c.data, 0, 16);
  f->copies.push_back(c);
}

void cp_async_commit() { ++detail::running("cp.async.commit_group")->open_group; }

// cp.async.wait_group n: every committed group except the newest n is complete.
void cp_async_wait(int n) {
  detail::Fiber* f = detail::running("cp.async.wait_group");
  const int64_t limit = static_cast<int64_t>(f->open_group) - n;  // groups with id < limit complete
  while (f->copies_head < f->copies.size() && static_cast<int64_t>(f->copies[f->copies_head].group) < limit)
    detail::apply(f->copies[f->copies_head++]);
  if (f->copies_head == f->copies.size()) {
    f->copies.clear();
    f->copies_head = 0;
  }
}

}  // namespace tc
}  // namespace sim
}  // namespace amr
