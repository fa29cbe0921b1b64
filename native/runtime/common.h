// Types and helpers shared by every layer of the native side, host and device code alike.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define AMR_HD __host__ __device__ __forceinline__
#else
#define AMR_HD inline
#endif

namespace amr {

// A user-facing failure: the message names the problem and reaches JS as an Error.
struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

enum class DType : int { F32 = 0, BF16 = 1, I32 = 2 };

inline size_t dtype_size(DType d) { return d == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}

enum class BackendKind : int { Cpu = 0, Cuda = 1, Sim = 2 };
inline const char* backend_name(BackendKind k) {
  switch (k) {
    case BackendKind::Cpu: return "cpu";
    case BackendKind::Cuda: return "cuda";
    case BackendKind::Sim: return "sim";
  }
  return "?";
}

AMR_HD uint32_t f32_as_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
AMR_HD float bits_as_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// bf16 is stored as raw bits everywhere so that cpu, sim and cuda round identically (nearest even,
// NaN kept quiet), the way __float2bfloat16_rn does on the hardware.
AMR_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_as_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
AMR_HD float bf16_to_f32(uint16_t h) { return bits_as_f32(static_cast<uint32_t>(h) << 16); }

// Element access by dtype, so one templated kernel body serves f32, bf16 and i32 storage.
template <typename T> struct Elem;
template <> struct Elem<float> {
  static AMR_HD float load(const float* p, size_t i) { return p[i]; }
  static AMR_HD void store(float* p, size_t i, float v) { p[i] = v; }
};
template <> struct Elem<uint16_t> {
  static AMR_HD float load(const uint16_t* p, size_t i) { return bf16_to_f32(p[i]); }
  static AMR_HD void store(uint16_t* p, size_t i, float v) { p[i] = f32_to_bf16(v); }
};
template <> struct Elem<int32_t> {
  static AMR_HD int32_t load(const int32_t* p, size_t i) { return p[i]; }
  static AMR_HD void store(int32_t* p, size_t i, int32_t v) { p[i] = v; }
};

// Calls f with a null pointer of the storage type of dtype d (float, uint16_t for bf16, int32_t).
template <typename F>
inline void with_dtype(DType d, F&& f) {
  switch (d) {
    case DType::F32: f(static_cast<float*>(nullptr)); return;
    case DType::BF16: f(static_cast<uint16_t*>(nullptr)); return;
    case DType::I32: f(static_cast<int32_t*>(nullptr)); return;
  }
}

// Same, for ops defined on floating-point storage only (f32, bf16); i32 raises an Error naming the op.
template <typename F>
inline void with_float_dtype(DType d, const char* op, F&& f) {
  if (d == DType::F32) f(static_cast<float*>(nullptr));
  else if (d == DType::BF16) f(static_cast<uint16_t*>(nullptr));
  else throw Error(std::string(op) + ": i32 tensors are not supported");
}

}  // namespace amr
