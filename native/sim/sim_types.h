// CUDA value types and math builtins for the sim backend (included by sim_cuda.h, never directly).
// Everything here is plain host C++: vector types, __nv_bfloat16 / __half with the hardware's rounding,
// the fast-math intrinsics, min/max with CUDA's overload set, and the bit-twiddling intrinsics.
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// ---------------------------------------------------------------------------------------------
// Index types. They are types of their own (aliased to the CUDA names) rather than global structs
// because the sim and cuda objects are linked into one .node: every function taking a dim3, amr::launch
// above all, then has a different mangled name in each backend, so the linker can never merge a sim
// instantiation with the cuda one of the same kernel signature.
namespace amr {
namespace sim {
struct Uint3 {
  unsigned int x, y, z;
};
struct Dim3 {
  unsigned int x, y, z;
  constexpr Dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr Dim3(Uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator Uint3() const { return Uint3{x, y, z}; }
};
}  // namespace sim
}  // namespace amr
using uint3 = ::amr::sim::Uint3;
using dim3 = ::amr::sim::Dim3;

// Vector types: plain aggregates with CUDA's alignments (code relies on them for 8- and 16-byte loads).

struct alignas(8) float2 { float x, y; };
struct float3 { float x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct int3 { int x, y, z; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(4) ushort2 { unsigned short x, y; };

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline ushort2 make_ushort2(unsigned short x, unsigned short y) { return ushort2{x, y}; }

// ---------------------------------------------------------------------------------------------
// Bit-exact float conversions, written from the IEEE-754 formats. The rounding is round-to-nearest-even
// as cvt.rn does; a NaN input gives the canonical NaN 0x7FFF (what NVIDIA's own host emulation in
// cuda_bf16.hpp / cuda_fp16.hpp returns for cvt.rn.{bf16,f16}.f32 of a NaN).
namespace amr {
namespace sim {
namespace detail {

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16_rn(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  // Adding 0x7FFF plus the kept lsb rounds half-way cases to even; a carry into the exponent is the
  // correct result (up to +-inf).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline uint16_t f32_to_f16_rn(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;                      // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;              // >= 65520 rounds to inf (tie goes to even = inf)
  if (a >= 0x38800000u) {                                   // normal half: >= 2^-14
    const uint32_t m = a - 0x38000000u;                     // rebias the exponent from 127 to 15
    uint32_t r = m >> 13;
    const uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  if (a <= 0x33000000u) return sign;                        // <= 2^-25: rounds to zero (2^-25 is a tie to 0)
  // Subnormal half: the value in units of 2^-24 is mant * 2^(exp - 126).
  const uint32_t exp = a >> 23;
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;                        // 14..24
  uint32_t r = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    const float v = static_cast<float>(man) * 0x1p-24f;     // exact: man < 2^10
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// double -> narrow type without double rounding: round to float with "round to odd" (the inexact bit
// is kept sticky in the float's lsb), which is exact enough for any target with >= 2 fewer bits.
inline float f64_to_f32_round_odd(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(f) && static_cast<double>(f) != d) {
    uint32_t u = f32_bits(f);
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) --u;  // rounded away from zero: step back
    f = bits_f32(u | 1u);
  }
  return f;
}
inline uint16_t f64_to_bf16_rn(double d) { return d != d ? 0x7fffu : f32_to_bf16_rn(f64_to_f32_round_odd(d)); }
inline uint16_t f64_to_f16_rn(double d) { return d != d ? 0x7fffu : f32_to_f16_rn(f64_to_f32_round_odd(d)); }

}  // namespace detail
}  // namespace sim
}  // namespace amr

// ---------------------------------------------------------------------------------------------
// __nv_bfloat16 and __half: 16-bit storage, conversions as in cuda_bf16.h / cuda_fp16.h (implicit from
// and to float, round-to-nearest-even). Arithmetic goes through float and rounds once; for + - * / this
// equals the hardware's correctly rounded result because float has more than 2p+2 bits for both formats.
// The default constructor is trivial so arrays of these types can live in shared memory.
#define AMR_SIM_HALF_TYPE(T, RAW, TO_F32, F32_TO, F64_TO)                                             \
  struct RAW {                                                                                        \
    unsigned short x;                                                                                 \
  };                                                                                                  \
  struct alignas(2) T {                                                                               \
    unsigned short __x;                                                                               \
    T() = default;                                                                                    \
    constexpr T(const RAW& r) : __x(r.x) {}                                                           \
    T(float f) : __x(::amr::sim::detail::F32_TO(f)) {}                                                \
    T(double d) : __x(::amr::sim::detail::F64_TO(d)) {}                                               \
    template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>        \
    T(I v) : __x(::amr::sim::detail::F64_TO(static_cast<double>(v))) {}                               \
    operator float() const { return ::amr::sim::detail::TO_F32(__x); }                                \
    operator RAW() const { return RAW{__x}; }                                                         \
  };                                                                                                  \
  inline T operator+(const T& a, const T& b) { return T(float(a) + float(b)); }                       \
  inline T operator-(const T& a, const T& b) { return T(float(a) - float(b)); }                       \
  inline T operator*(const T& a, const T& b) { return T(float(a) * float(b)); }                       \
  inline T operator/(const T& a, const T& b) { return T(float(a) / float(b)); }                       \
  inline T operator-(const T& a) { return T(RAW{static_cast<unsigned short>(a.__x ^ 0x8000u)}); }     \
  inline T operator+(const T& a) { return a; }                                                        \
  inline T& operator+=(T& a, const T& b) { return a = a + b; }                                        \
  inline T& operator-=(T& a, const T& b) { return a = a - b; }                                        \
  inline T& operator*=(T& a, const T& b) { return a = a * b; }                                        \
  inline T& operator/=(T& a, const T& b) { return a = a / b; }                                        \
  inline bool operator==(const T& a, const T& b) { return float(a) == float(b); }                     \
  inline bool operator!=(const T& a, const T& b) { return float(a) != float(b); }                     \
  inline bool operator<(const T& a, const T& b) { return float(a) < float(b); }                       \
  inline bool operator<=(const T& a, const T& b) { return float(a) <= float(b); }                     \
  inline bool operator>(const T& a, const T& b) { return float(a) > float(b); }                       \
  inline bool operator>=(const T& a, const T& b) { return float(a) >= float(b); }                     \
  inline T __hadd(T a, T b) { return a + b; }                                                         \
  inline T __hsub(T a, T b) { return a - b; }                                                         \
  inline T __hmul(T a, T b) { return a * b; }

AMR_SIM_HALF_TYPE(__nv_bfloat16, __nv_bfloat16_raw, bf16_to_f32, f32_to_bf16_rn, f64_to_bf16_rn)
AMR_SIM_HALF_TYPE(__half, __half_raw, f16_to_f32, f32_to_f16_rn, f64_to_f16_rn)
#undef AMR_SIM_HALF_TYPE

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
};
struct alignas(4) __half2 {
  __half x, y;
  __half2() = default;
  constexpr __half2(const __half& a, const __half& b) : x(a), y(b) {}
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;
typedef __half half;
typedef __half2 half2;

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162(a, b); }
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __nv_bfloat162(v.x, v.y); }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{float(v.x), float(v.y)}; }
inline float __low2float(__nv_bfloat162 v) { return float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return float(v.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 v) { return v.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 v) { return v.y; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __double2half(double d) { return __half(d); }
inline float __half2float(__half h) { return float(h); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2(a, b); }
inline __half2 __float22half2_rn(float2 v) { return __half2(v.x, v.y); }
inline __half2 __halves2half2(__half a, __half b) { return __half2(a, b); }
inline float2 __half22float2(__half2 v) { return float2{float(v.x), float(v.y)}; }
inline float __low2float(__half2 v) { return float(v.x); }
inline float __high2float(__half2 v) { return float(v.y); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }

// ---------------------------------------------------------------------------------------------
// Reinterpretation and float->int conversions (the hardware saturates out-of-range values; NaN gives 0).
inline unsigned int __float_as_uint(float f) { return ::amr::sim::detail::f32_bits(f); }
inline float __uint_as_float(unsigned int u) { return ::amr::sim::detail::bits_f32(u); }
inline int __float_as_int(float f) { return static_cast<int>(::amr::sim::detail::f32_bits(f)); }
inline float __int_as_float(int i) { return ::amr::sim::detail::bits_f32(static_cast<uint32_t>(i)); }
namespace amr {
namespace sim {
namespace detail {
inline int sat_f2i(float r) {
  if (r != r) return 0;
  if (r >= 2147483648.0f) return 2147483647;
  if (r < -2147483648.0f) return -2147483647 - 1;
  return static_cast<int>(r);
}
}  // namespace detail
}  // namespace sim
}  // namespace amr
inline int __float2int_rn(float f) { return ::amr::sim::detail::sat_f2i(std::nearbyint(f)); }  // ties to even
inline int __float2int_rz(float f) { return ::amr::sim::detail::sat_f2i(std::trunc(f)); }
inline int __float2int_rd(float f) { return ::amr::sim::detail::sat_f2i(std::floor(f)); }
inline int __float2int_ru(float f) { return ::amr::sim::detail::sat_f2i(std::ceil(f)); }

// ---------------------------------------------------------------------------------------------
// Fast-math intrinsics. The hardware versions are approximations (ex2.approx, lg2.approx, ...); sim uses
// the accurate libm function, which is within the intrinsics' documented error bounds.
inline float __expf(float x) { return ::expf(x); }
inline float __exp10f(float x) { return ::exp10f(x); }
inline float __logf(float x) { return ::logf(x); }
inline float __log2f(float x) { return ::log2f(x); }
inline float __log10f(float x) { return ::log10f(x); }
inline float __powf(float x, float y) { return ::powf(x, y); }
inline float __sinf(float x) { return ::sinf(x); }
inline float __cosf(float x) { return ::cosf(x); }
inline float __tanf(float x) { return ::tanf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return ::sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return ::fmaf(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
#if !(defined(__GLIBC__) && defined(__GLIBC_PREREQ) && __GLIBC_PREREQ(2, 42))
// glibc >= 2.42 declares the C23 rsqrt family itself.
inline float rsqrtf(float x) { return 1.0f / ::sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / ::sqrt(x); }
#endif
template <typename T>
inline T __ldg(const T* p) { return *p; }

// min/max with the overload set of CUDA's math_functions.h (mixed signedness goes unsigned).
#define AMR_SIM_MINMAX(R, A, B)                                                                        \
  inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
AMR_SIM_MINMAX(int, int, int)
AMR_SIM_MINMAX(unsigned int, unsigned int, unsigned int)
AMR_SIM_MINMAX(unsigned int, int, unsigned int)
AMR_SIM_MINMAX(unsigned int, unsigned int, int)
AMR_SIM_MINMAX(long, long, long)
AMR_SIM_MINMAX(unsigned long, unsigned long, unsigned long)
AMR_SIM_MINMAX(unsigned long, long, unsigned long)
AMR_SIM_MINMAX(unsigned long, unsigned long, long)
AMR_SIM_MINMAX(long long, long long, long long)
AMR_SIM_MINMAX(unsigned long long, unsigned long long, unsigned long long)
AMR_SIM_MINMAX(unsigned long long, long long, unsigned long long)
AMR_SIM_MINMAX(unsigned long long, unsigned long long, long long)
#undef AMR_SIM_MINMAX
inline float min(float a, float b) { return ::fminf(a, b); }
inline float max(float a, float b) { return ::fmaxf(a, b); }
inline double min(double a, double b) { return ::fmin(a, b); }
inline double max(double a, double b) { return ::fmax(a, b); }
inline double min(float a, double b) { return ::fmin(a, b); }
inline double max(float a, double b) { return ::fmax(a, b); }
inline double min(double a, float b) { return ::fmin(a, b); }
inline double max(double a, float b) { return ::fmax(a, b); }

// Bit intrinsics.
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
