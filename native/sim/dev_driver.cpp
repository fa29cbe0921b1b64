// Stand-alone checks of the sim backend (not part of the addon build). Runs every self-test of
// native/sim/selftest.cu on sim and compares with references computed here independently (float64 maths,
// the PTX ISA's layout and shuffle rules, IEEE rounding by exhaustive neighbour search). Prints PASS/FAIL
// per check and a few timings. Build and run from the repository root:
//
//   g++ -std=c++17 -O2 -I. -Inative -DAMR_SIM native/sim/dev_driver.cpp native/sim/rule_checks.cpp -x c++
//       native/sim/selftest.cu -x none native/sim/sim_runtime.cpp native/sim/sim_warp.cpp native/sim/sim_fiber.cpp -o /tmp/amr_sim_dev
//   /tmp/amr_sim_dev
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../runtime/kernel.cuh"
#include "../runtime/launch.cuh"
#include "rule_checks.h"
#include "selftest.h"

namespace st = amr::sim::selftest;
using amr::GpuStream;

static int g_failed = 0, g_passed = 0;
static void check(bool ok, const std::string& name, const std::string& detail = "") {
  std::printf("%s  %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  (ok ? g_passed : g_failed)++;
}
// max() that keeps a NaN (std::max(x, NaN) would silently return x).
static double worst_of(double worst, double e) { return std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e); }
static std::string fmt(const char* f, double a, double b = 0) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}
template <typename F>
static double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// The message of the error f throws, or "" if it throws nothing.
static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Rounding references: the representable neighbours are found by decoding every candidate bit pattern
// next to the value (no bit tricks shared with the implementation under test).
static double decode_bf16(uint16_t h) {
  const int e = (h >> 7) & 0xff, m = h & 0x7f;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0xff) return m ? NAN : s * INFINITY;
  return e == 0 ? s * std::ldexp(m, -133) : s * std::ldexp(128 + m, e - 134);
}
static double decode_f16(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0x1f) return m ? NAN : s * INFINITY;
  return e == 0 ? s * std::ldexp(m, -24) : s * std::ldexp(1024 + m, e - 25);
}
// Round-to-nearest-even of x among the finite patterns of a 16-bit format (binary search: magnitudes grow
// with the pattern), with IEEE overflow to inf from the midpoint above the largest finite value.
static uint16_t reference_round(double x, double (*decode)(uint16_t), uint16_t max_finite, double overflow_at) {
  if (std::isnan(x)) return 0x7fff;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  if (a >= overflow_at) return sign | static_cast<uint16_t>(max_finite + 1);  // the inf pattern
  uint32_t lo = 0, hi = max_finite;  // largest pattern whose value is <= a
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (decode(static_cast<uint16_t>(mid)) <= a) lo = mid; else hi = mid - 1;
  }
  uint32_t best = lo;
  if (lo < max_finite) {
    const double below = a - decode(static_cast<uint16_t>(lo)), above = decode(static_cast<uint16_t>(lo + 1)) - a;
    if (above < below || (above == below && ((lo + 1) & 1) == 0)) best = lo + 1;
  }
  return sign | static_cast<uint16_t>(best);
}

// ---------------------------------------------------------------------------------------------
static void test_block_sum() {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto [n, blocks, threads] : {std::tuple{1, 1, 32}, {1000, 3, 64}, {4097, 5, 256}, {100000, 7, 1024}}) {
    std::vector<float> x(n), sums(blocks, NAN);
    for (auto& v : x) v = u(rng);
    st::block_sum(x.data(), n, sums.data(), blocks, threads, GpuStream{});
    double worst = 0;
    for (int b = 0; b < blocks; ++b) {
      double ref = 0, mag = 0;
      for (long i = (long)b * threads; i < n; i += (long)blocks * threads)
        for (int t = 0; t < threads && i + t < n; ++t) ref += x[i + t], mag += std::fabs(x[i + t]);
      worst = worst_of(worst, std::fabs(sums[b] - ref) / std::max(mag, 1e-30));
    }
    check(worst <= 1e-6 && !std::isnan(worst), "block_sum n=" + std::to_string(n) + " threads=" + std::to_string(threads),
          fmt("max |err|/sum|x| = %.2e", worst));
  }
}

static void test_neighbor_exchange() {
  const int blocks = 6, threads = 96;
  std::vector<float> in(blocks * threads), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) + 0.5f;
  auto expected = [&](int b, int t) { return in[b * threads + (t + 1) % threads]; };
  st::neighbor_exchange(in.data(), out.data(), blocks, threads, true, GpuStream{});
  int bad = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) bad += out[b * threads + t] != expected(b, t);
  check(bad == 0, "neighbor_exchange with __syncthreads is exact");
  // Without the barrier every block must come out wrong, for every seed.
  for (uint64_t seed : {1ull, 2ull, 3ull, 12345ull, 0xdeadbeefull}) {
    amr::sim::set_seed(seed);
    st::neighbor_exchange(in.data(), out.data(), blocks, threads, false, GpuStream{});
    int blocks_caught = 0;
    for (int b = 0; b < blocks; ++b) {
      int wrong = 0;
      for (int t = 0; t < threads; ++t) wrong += !(out[b * threads + t] == expected(b, t));
      blocks_caught += wrong > 0;
    }
    check(blocks_caught == blocks, "missing __syncthreads detected, seed " + std::to_string(seed),
          std::to_string(blocks_caught) + "/" + std::to_string(blocks) + " blocks wrong");
  }
  // Same seed, same schedule: the wrong answer is reproducible.
  std::vector<float> again(in.size());
  amr::sim::set_seed(7);
  st::neighbor_exchange(in.data(), out.data(), blocks, threads, false, GpuStream{});
  amr::sim::set_seed(7);
  st::neighbor_exchange(in.data(), again.data(), blocks, threads, false, GpuStream{});
  check(std::memcmp(out.data(), again.data(), out.size() * sizeof(float)) == 0, "same seed gives the same schedule");
  amr::sim::set_seed(0x5EEDC0DE2024ull);
}

// bf16 bits of random values in [-1, 1), rounded with the reference rounding.
static std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = reference_round(u(rng), decode_bf16, 0x7f7f, 0x1.ffp127);
  return v;
}

static void test_gemm(int M, int N, int K, bool kn, bool report_time) {
  std::mt19937 rng(M * 131 + N * 7 + K);
  // 16-byte alignment for cp.async: std::vector<uint16_t> storage comes from operator new (16-aligned).
  std::vector<uint16_t> A = random_bf16(size_t(M) * K, rng), B = random_bf16(size_t(N) * K, rng);
  std::vector<float> C(size_t(M) * N, NAN);
  const double t = seconds([&] { st::gemm_bf16(A.data(), B.data(), C.data(), M, N, K, kn, GpuStream{}); });
  double err = 0, ref2 = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double ref = 0;
      for (int k = 0; k < K; ++k)
        ref += decode_bf16(A[size_t(m) * K + k]) * decode_bf16(kn ? B[size_t(k) * N + n] : B[size_t(n) * K + k]);
      const double d = C[size_t(m) * N + n] - ref;
      err += d * d;
      ref2 += ref * ref;
    }
  const double rel = std::sqrt(err / std::max(ref2, 1e-300));
  std::string name = std::string("gemm_bf16 ") + (kn ? "A*B  " : "A*B^T") + " M=" + std::to_string(M) +
                     " N=" + std::to_string(N) + " K=" + std::to_string(K);
  check(rel <= 1e-5 && !std::isnan(rel), name, fmt("rel err %.2e", rel) + (report_time ? fmt(", %.3f s", t) : ""));
}

static void test_round_trip() {
  std::vector<float> in = {0.0f, -0.0f, 1.0f, -1.0f, 3.14159265f, 1.0f + 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f,
                           1.0f + 3 * 0x1p-8f, 65504.0f, 65519.0f, 65520.0f, 1e5f, 0x1p-14f, 0x1p-24f, 0x1p-25f,
                           0x1.8p-25f, 0x1p-126f, 0x1p-130f, 0x1p-149f, 3.3895e38f, 3.4e38f, INFINITY, -INFINITY,
                           NAN, -NAN, 1.0e-3f, -7.25e-6f, 2049.0f, 2051.0f};
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 3000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    in.push_back(f);
  }
  const int n = static_cast<int>(in.size());
  std::vector<uint16_t> bb(n), hb(n);
  std::vector<float> bback(n), pair(2 * n), hback(n);
  st::round_trip(in.data(), n, bb.data(), bback.data(), pair.data(), hb.data(), hback.data(), GpuStream{});
  int bad_b = 0, bad_h = 0, bad_back = 0;
  for (int i = 0; i < n; ++i) {
    const uint16_t rb = reference_round(in[i], decode_bf16, 0x7f7f, 0x1.ffp127);
    const uint16_t rh = reference_round(in[i], decode_f16, 0x7bff, 65520.0);
    bad_b += bb[i] != rb;
    bad_h += hb[i] != rh;
    const double db = decode_bf16(rb), dh = decode_f16(rh);
    auto same = [](double x, float y) { return (std::isnan(x) && std::isnan(y)) || x == y; };
    bad_back += !same(db, bback[i]) || !same(dh, hback[i]) || !same(db, pair[2 * i]) ||
                !same(std::isnan(db) ? db : -db, pair[2 * i + 1]);
  }
  check(bad_b == 0, "float -> bf16 round-to-nearest-even (" + std::to_string(n) + " values, NaN -> 0x7fff)",
        std::to_string(bad_b) + " mismatches");
  check(bad_h == 0, "float -> f16 round-to-nearest-even", std::to_string(bad_h) + " mismatches");
  check(bad_back == 0, "bf16/f16 -> float and __floats2bfloat162_rn/__low2float/__high2float",
        std::to_string(bad_back) + " mismatches");
}

// Expected warp_ops outputs from the CUDA/PTX rules (selftest.cu lists what o[k] is).
static void test_warp_ops() {
  const int blocks = 2, threads = 128, total = blocks * threads;
  std::vector<int> in(total), out(size_t(total) * amr::kSelftestWarpOpsOutputs, -7);
  std::mt19937 rng(9);
  for (int i = 0; i < total; ++i) {
    const int w = i / 32;
    in[i] = static_cast<int>(rng() % 200) - (w % 4 == 1 ? 100 : 0) + 1;  // warps 1, 5: mixed signs
    if (w % 4 == 2 && i % 32 == 17) in[i] = 5000;                      // warps 2, 6: any(> 1000)
    if (w % 4 == 3 && i % 32 == 3) in[i] = -5000;                      // warps 3, 7: not all(> -1000)
  }
  st::warp_ops(in.data(), out.data(), blocks, threads, GpuStream{});
  int bad[amr::kSelftestWarpOpsOutputs] = {};
  for (int i = 0; i < total; ++i) {
    const int lane = i % 32, w0 = i - lane, b0 = (i / threads) * threads;
    auto v = [&](int l) { return in[w0 + l]; };
    unsigned ballot = 0, half_ballot = 0;
    int any = 0, all = 1, count = 0;
    for (int l = 0; l < 32; ++l) {
      ballot |= unsigned(v(l) > 0) << l;
      any |= v(l) > 1000;
      all &= v(l) > -1000;
      if ((l < 16) == (lane < 16)) half_ballot |= unsigned(v(l) & 1) << l;
    }
    for (int t = 0; t < threads; ++t) count += in[b0 + t] > 0;
    const int seg8 = lane & ~7, seg16 = lane & ~15, seg4 = lane & ~3;
    float half_val = static_cast<float>(v(lane ^ 1)) * 0.5f;
    int half_bits;
    std::memcpy(&half_bits, &half_val, 4);
    const int exp[amr::kSelftestWarpOpsOutputs] = {
        static_cast<int>(ballot), any, all,
        lane >= 1 ? v(lane - 1) : v(lane),
        lane + 3 <= 31 ? v(lane + 3) : v(lane),
        v(lane ^ 5),
        v(((lane * 7 + 37) % 64) & 31),
        lane - 2 >= seg8 ? v(lane - 2) : v(lane),
        lane + 1 <= seg16 + 15 ? v(lane + 1) : v(lane),
        (lane ^ 4) <= seg4 + 3 ? v(lane ^ 4) : v(lane),
        v(seg8 + ((lane + 3) & 7)),
        half_bits,
        static_cast<int>(half_ballot),
        count};
    for (int k = 0; k < amr::kSelftestWarpOpsOutputs; ++k) bad[k] += out[size_t(i) * amr::kSelftestWarpOpsOutputs + k] != exp[k];
  }
  static const char* names[] = {"__ballot_sync", "__any_sync", "__all_sync", "__shfl_up_sync(1)", "__shfl_down_sync(3)",
                                "__shfl_xor_sync(5)", "__shfl_sync(src wraps)", "__shfl_up_sync(2, width 8)",
                                "__shfl_down_sync(1, width 16)", "__shfl_xor_sync(4, width 4)", "__shfl_sync(lane+3, width 8)",
                                "__shfl_xor_sync(float)", "__ballot_sync(half-warp masks)", "__syncthreads_count"};
  for (int k = 0; k < amr::kSelftestWarpOpsOutputs; ++k) check(bad[k] == 0, std::string("warp_ops ") + names[k], std::to_string(bad[k]) + " wrong");
}

static void test_errors() {
  std::vector<int> iout(64);
  std::string e = error_of([&] { st::partial_barrier(iout.data(), 64, GpuStream{}); });
  check(e.find("kernel selftest_partial_barrier: __syncthreads not reached by all threads of block (0,0,0)") == 0,
        "partial __syncthreads stops with an error", e);
  std::vector<float> fout(64);
  e = error_of([&] { st::dynamic_smem_oob(fout.data(), 64, GpuStream{}); });
  check(e.find("kernel selftest_dynamic_smem_oob: dynamic shared memory access out of bounds") == 0 &&
            e.find("thread (63,0,0)") != std::string::npos,
        "dynamic shared memory out of bounds stops with an error", e);
  std::vector<float> x(1000, 1.0f), sums(2);
  st::block_sum(x.data(), 1000, sums.data(), 2, 64, GpuStream{});
  check(sums[0] + sums[1] == 1000.0f, "the next launch after errors works");
  e = error_of([&] { st::gemm_bf16(nullptr, nullptr, nullptr, 8, 8, 12, false, GpuStream{}); });
  check(e.find("multiple of 8") != std::string::npos, "gemm_bf16 rejects K % 8 != 0", e);
}

static void test_cp_async_and_poison() {
  std::vector<float> in(512), out(5 * 64, 1.0f);
  for (int i = 0; i < 512; ++i) in[i] = i * 0.25f + 1.0f;
  st::cp_async_visibility(in.data(), out.data(), GpuStream{});
  int bad = 0;
  for (int t = 0; t < 64; ++t) {
    const float* o = &out[5 * t];
    bad += !std::isnan(o[0]) || o[1] != in[4 * t] || !std::isnan(o[2]) || o[3] != in[256 + 4 * t] || o[4] != 0.0f;
  }
  check(bad == 0, "cp.async data lands only at the wait that covers its group; zfill writes zeros",
        std::to_string(bad) + " threads wrong");
  std::vector<float> p(5 * 64 * 2, 0.0f);
  st::shared_poison(p.data(), 5, GpuStream{});
  int not_nan = 0;
  for (float v : p) not_nan += !std::isnan(v);
  check(not_nan == 0, "AMR_SHARED and dynamic shared memory start as NaN in every block",
        std::to_string(not_nan) + " values not NaN");
}

// PTX ISA ldmatrix rule: lane l, register j: (row l/4, cols 2(l%4), 2(l%4)+1) of matrix j, transposed
// with .trans. Matrix j's row r starts at the address lane 8j+r gives (selftest.cu lists the addresses).
static void test_ldmatrix_layouts() {
  std::vector<uint32_t> out(32 * amr::kSelftestLdmatrixRegs);
  st::ldmatrix_layouts(out.data(), GpuStream{});
  auto row_start = [](int num, int addr_lane, int& r, int& c) {  // start of the row a lane addresses
    if (num == 1) r = addr_lane, c = 0;
    else if (num == 2) r = addr_lane & 7, c = (addr_lane >> 3) * 8;
    else r = addr_lane & 15, c = (addr_lane >> 4) * 8;
  };
  int bad = 0;
  const int nums[6] = {1, 2, 4, 1, 2, 4}, first_reg[6] = {0, 1, 3, 7, 8, 10};
  for (int v = 0; v < 6; ++v) {
    const bool trans = v >= 3;
    for (int l = 0; l < 32; ++l)
      for (int j = 0; j < nums[v]; ++j) {
        uint32_t want = 0;
        for (int h = 0; h < 2; ++h) {
          const int mrow = trans ? 2 * (l % 4) + h : l / 4, mcol = trans ? l / 4 : 2 * (l % 4) + h;
          int r, c;
          row_start(nums[v], 8 * j + mrow, r, c);
          want |= static_cast<uint32_t>(16 * r + c + mcol) << (16 * h);
        }
        bad += out[l * amr::kSelftestLdmatrixRegs + first_reg[v] + j] != want;
      }
  }
  check(bad == 0, "ldmatrix x1/x2/x4 (.trans) fragment layouts", std::to_string(bad) + " registers wrong");
}

static void test_mma_layouts() {
  std::mt19937 rng(11);
  std::vector<uint16_t> ab = random_bf16(256, rng), bb = random_bf16(128, rng), ah(256), bh(128);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (auto& x : ah) x = reference_round(u(rng), decode_f16, 0x7bff, 65520.0);
  for (auto& x : bh) x = reference_round(u(rng), decode_f16, 0x7bff, 65520.0);
  std::vector<float> c(128), d(384, NAN);
  for (auto& x : c) x = u(rng);
  st::mma_layouts(ab.data(), bb.data(), ah.data(), bh.data(), c.data(), d.data(), GpuStream{});
  const char* names[3] = {"mma.m16n8k16 bf16", "mma.m16n8k16 f16", "mma.m16n8k8 bf16"};
  for (int v = 0; v < 3; ++v) {
    double worst = 0;
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double ref = c[m * 8 + n], mag = std::fabs(ref);
        for (int k = 0; k < (v == 2 ? 8 : 16); ++k) {
          const double p = v == 1 ? decode_f16(ah[m * 16 + k]) * decode_f16(bh[k * 8 + n])
                                  : decode_bf16(ab[m * 16 + k]) * decode_bf16(bb[k * 8 + n]);
          ref += p;
          mag += std::fabs(p);
        }
        const double got = d[v * 128 + m * 8 + n];
        worst = worst_of(worst, std::fabs(got - ref) / mag);
      }
    check(worst <= 1e-6 && !std::isnan(worst), std::string(names[v]) + " fragment layouts and result", fmt("max err/sum|terms| = %.2e", worst));
  }
}

// ---------------------------------------------------------------------------------------------
// Emulator semantics beyond the self-tests: the sim-only kernels of rule_checks.cpp.
namespace dev = amr::sim::dev;

static void test_semantics() {
  std::vector<float> f(64, 0.0f);
  dev::run_kernel("exited_lane", f.data());
  bool ok = true;
  for (int l = 0; l < 16; ++l) ok &= l < 8 ? f[l] == 1.0f && f[32 + l] == 1.0f : std::isnan(f[l]);
  check(ok, "shuffle from an exited lane gives NaN; votes count the live lanes");
  std::vector<int> i(64 * 4 * 3 * 2 * 2 * 3, 0);
  std::string e = error_of([&] { dev::run_kernel("mismatch", i.data()); });
  check(e.find("kernel mismatch: ") == 0 && e.find("not reached by all lanes of warp 0") != std::string::npos,
        "mismatched warp collectives stop with an error", e);
  std::fill(i.begin(), i.end(), 0);
  dev::run_kernel("index", i.data());
  ok = true;
  for (size_t k = 0; k < 64 * 12; ++k) ok &= i[k] == 1;
  check(ok, "3-D grid and block indices cover every thread exactly once");
  e = error_of([&] { dev::run_kernel("thrower", i.data()); });
  check(e == "kernel thrower: thrown from a kernel", "an exception thrown in a kernel becomes a KernelError", e);
  dev::run_kernel("spin", i.data());
  ok = true;
  for (int k = 0; k < 64; ++k) ok &= i[k] == 42;
  check(ok, "__nanosleep lets a spin-wait on another thread's write finish");
  e = error_of([&] { dev::run_kernel("nested", i.data()); });
  check(e.find("kernel inner: launched from inside a running sim kernel") == 0, "launch from inside a kernel is an error", e);
  // Two OS threads launching at once: launches are serialized and both come out right.
  std::vector<float> x(50000, 1.0f), s1(8), s2(8);
  dev::concurrent_launches(x.data(), 50000, s1.data(), s2.data());
  double a = 0, b = 0;
  for (int k = 0; k < 8; ++k) a += s1[k], b += s2[k];
  check(a == 50000 && b == 50000, "concurrent launches from two OS threads");
}

static void timings() {
  std::vector<float> x(1 << 20), sums(1024);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = u(rng);
  const double t = seconds([&] { st::block_sum(x.data(), int(x.size()), sums.data(), 1024, 256, GpuStream{}); });
  double s = 0, ref = 0;
  for (float v : sums) s += v;
  for (float v : x) ref += v;
  check(std::fabs(s - ref) < 1e-2, "block_sum of 2^20 floats (1024 blocks x 256 threads)", fmt("%.3f s", t));
  test_gemm(256, 256, 256, false, true);
  test_gemm(256, 256, 256, true, true);
}

int main() {
  test_block_sum();
  test_neighbor_exchange();
  for (bool kn : {false, true})
    for (auto [M, N, K] : {std::tuple{1, 8, 8}, {17, 24, 40}, {64, 64, 32}, {100, 72, 136}, {129, 65 + 7 * kn, 264}, {33, 200, 0}})
      test_gemm(M, N, K, kn, false);
  test_round_trip();
  test_warp_ops();
  test_errors();
  test_cp_async_and_poison();
  test_ldmatrix_layouts();
  test_mma_layouts();
  test_semantics();
  timings();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
