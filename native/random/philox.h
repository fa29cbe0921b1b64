// Counter-based random numbers that are bit-identical on cpu, sim and cuda: Philox4x32-10 for the bits,
// then Box-Muller with our own log/sin/cos built only from correctly rounded operations (fmaf, *, /, sqrt,
// written so no compiler can fuse a multiply into an add), because libm and CUDA's fast paths differ in
// the last bits. Element i of a tensor depends only on (seed, i).
#pragma once
#include <cmath>
#include <cstdint>

#include "../runtime/common.h"

namespace amr {
namespace random {

struct U32x4 {
  uint32_t v[4];
};

AMR_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

AMR_HD U32x4 philox4x32(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return U32x4{{c0, c1, c2, c3}};
}

// Multiplication that is never fused with a following addition.
AMR_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// Uniform in [0, 1) with 24 random bits: exact in float.
AMR_HD float uniform01(uint32_t bits) { return static_cast<float>(bits >> 8) * 5.9604644775390625e-08f; }

// ln(u) for u in (0, 1].
AMR_HD float det_log(float u) {
  uint32_t bits = f32_as_bits(u);
  int e = static_cast<int>((bits >> 23) & 0xffu) - 127;
  float m = bits_as_f32((bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = mul_rn(m, 0.5f);
    e += 1;
  }
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = mul_rn(s, s);
  float p = 1.0f / 11.0f;
  p = fmaf(p, s2, 1.0f / 9.0f);
  p = fmaf(p, s2, 1.0f / 7.0f);
  p = fmaf(p, s2, 1.0f / 5.0f);
  p = fmaf(p, s2, 1.0f / 3.0f);
  p = fmaf(p, s2, 1.0f);
  const float log_m = mul_rn(mul_rn(2.0f, s), p);
  return fmaf(static_cast<float>(e), 0.693147180559945f, log_m);
}

// cos and sin of 2*pi*v for v in [0, 1).
AMR_HD void det_sincos_2pi(float v, float* c_out, float* s_out) {
  const float q = mul_rn(v, 4.0f);  // exact
  int k = static_cast<int>(q);
  float f = q - static_cast<float>(k);  // exact, [0, 1)
  if (f > 0.5f) {
    f = f - 1.0f;
    k += 1;
  }
  const float x = mul_rn(f, 1.57079632679489662f);  // |x| <= pi/4
  const float x2 = mul_rn(x, x);
  float sp = -1.0f / 39916800.0f;
  sp = fmaf(sp, x2, 1.0f / 362880.0f);
  sp = fmaf(sp, x2, -1.0f / 5040.0f);
  sp = fmaf(sp, x2, 1.0f / 120.0f);
  sp = fmaf(sp, x2, -1.0f / 6.0f);
  sp = fmaf(sp, x2, 1.0f);
  const float sn = mul_rn(x, sp);
  float cp = 1.0f / 479001600.0f;
  cp = fmaf(cp, x2, -1.0f / 3628800.0f);
  cp = fmaf(cp, x2, 1.0f / 40320.0f);
  cp = fmaf(cp, x2, -1.0f / 720.0f);
  cp = fmaf(cp, x2, 1.0f / 24.0f);
  cp = fmaf(cp, x2, -0.5f);
  const float cs = fmaf(cp, x2, 1.0f);
  switch (k & 3) {
    case 0: *c_out = cs; *s_out = sn; break;
    case 1: *c_out = -sn; *s_out = cs; break;
    case 2: *c_out = -cs; *s_out = -sn; break;
    default: *c_out = sn; *s_out = -cs; break;
  }
}

enum class Distribution : int { Normal = 0, Uniform = 1 };

// Elements 4g .. 4g+3 of a tensor filled from seed (one Philox call gives all four).
AMR_HD void sample4(Distribution dist, uint64_t seed, uint64_t group, float out[4]) {
  const U32x4 r = philox4x32(group, seed);
  if (dist == Distribution::Uniform) {
    for (int lane = 0; lane < 4; ++lane) out[lane] = uniform01(r.v[lane]);
    return;
  }
  for (int pair = 0; pair < 2; ++pair) {
    const float u = uniform01(r.v[2 * pair]) + 5.9604644775390625e-08f;  // (0, 1]: log stays finite
    const float radius = sqrtf(mul_rn(-2.0f, det_log(u)));
    float c, s;
    det_sincos_2pi(uniform01(r.v[2 * pair + 1]), &c, &s);
    out[2 * pair] = mul_rn(radius, c);
    out[2 * pair + 1] = mul_rn(radius, s);
  }
}

}  // namespace random
}  // namespace amr
