// The one argument reader of the bindings: an op takes one options object of named fields, and every read
// validates the field once, with an error that names the op and the field ("conv2d: stride[1] must be an
// integer >= 1"). New bindings read their arguments through it rather than by position.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "buffer.h"

namespace amr {
namespace bindings {

struct Fields {
  Napi::Object obj;
  std::string who;  // the op (and the part), for messages: "multiTeacherLoss: teacher 1 summary"

  // The options object of argument i of an op.
  static Fields of(const Napi::CallbackInfo& info, size_t i, const std::string& op) {
    if (info.Length() <= i || !info[i].IsObject()) throw Error(op + ": expected an options object");
    return Fields{info[i].As<Napi::Object>(), op};
  }

  Napi::Value get(const char* key) const { return obj.Get(key); }
  bool has(const char* key) const {
    Napi::Value v = get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  Napi::Object object(const char* key) const {
    if (!get(key).IsObject()) throw Error(who + ": " + key + " must be an object");
    return get(key).As<Napi::Object>();
  }
  int64_t int64(const char* key, int64_t min, int64_t max = 9007199254740991LL) const {
    Napi::Value v = get(key);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(d == std::floor(d)) || d < static_cast<double>(min) || d > static_cast<double>(max))
      throw Error(who + ": " + key + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                  "]");
    return static_cast<int64_t>(d);
  }
  int integer(const char* key, int min, int max = 2147483647) const {
    return static_cast<int>(int64(key, min, max));
  }
  // An array of exactly n integers, each >= min ("stride must be [sh, sw]").
  std::vector<int> integers(const char* key, size_t n, int min) const {
    Napi::Value v = get(key);
    if (!v.IsArray() || v.As<Napi::Array>().Length() != n)
      throw Error(who + ": " + key + " must be an array of " + std::to_string(n) + " integers");
    const Fields a{v.As<Napi::Object>(), who};
    std::vector<int> out(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string k = std::to_string(i);
      Napi::Value e = a.obj.Get(static_cast<uint32_t>(i));
      const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : std::nan("");
      if (!(d == std::floor(d)) || d < min || d > 2147483647.0)
        throw Error(who + ": " + key + "[" + k + "] must be an integer >= " + std::to_string(min));
      out[i] = static_cast<int>(d);
    }
    return out;
  }
  // An Int32Array, copied ("gatherRows: sources must be an Int32Array").
  std::vector<int32_t> int32s(const char* key) const {
    Napi::Value v = get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw Error(who + ": " + key + " must be an Int32Array");
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
  }
  float number(const char* key) const { return static_cast<float>(real(key)); }
  // Any number, NaN and the infinities included (a fill value, a scale that poisons on purpose).
  double any_number(const char* key) const {
    Napi::Value v = get(key);
    if (!v.IsNumber()) throw Error(who + ": " + key + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  double real(const char* key) const {
    Napi::Value v = get(key);
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
      throw Error(who + ": " + key + " must be a finite number");
    return v.As<Napi::Number>().DoubleValue();
  }
  bool flag(const char* key) const {
    Napi::Value v = get(key);
    if (v.IsUndefined()) return false;
    if (!v.IsBoolean()) throw Error(who + ": " + key + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  std::string string(const char* key) const {
    if (!get(key).IsString()) throw Error(who + ": " + key + " must be a string");
    return get(key).As<Napi::String>().Utf8Value();
  }
  // One of the names in `choices`, returned as its index.
  int choice(const char* key, std::initializer_list<const char*> choices) const {
    const std::string s = get(key).IsString() ? get(key).As<Napi::String>().Utf8Value() : "";
    std::string list;
    int i = 0;
    for (const char* c : choices) {
      if (s == c) return i;
      list += (i ? ", " : "") + std::string("'") + c + "'";
      ++i;
    }
    throw Error(who + ": " + key + " must be one of " + list + ", got '" + s + "'");
  }
  // A floating-point dtype (f32 or bf16).
  DType dtype(const char* key) const {
    return choice(key, {"f32", "bf16"}) == 0 ? DType::F32 : DType::BF16;
  }
  // Any storage dtype (f32, bf16 or i32): the copies, fills and casts that move bits whatever they are.
  DType storage_dtype(const char* key) const {
    static const DType kinds[] = {DType::F32, DType::BF16, DType::I32};
    return kinds[choice(key, {"f32", "bf16", "i32"})];
  }
  StoragePtr buffer(const char* key) const { return buffer_value(get(key), who + ": " + key); }
  // A buffer that may be absent (undefined or null): nullptr then.
  StoragePtr optional_buffer(const char* key) const { return has(key) ? buffer(key) : nullptr; }
  Fields part(const char* key) const { return Fields{object(key), who + " " + key}; }
};

// Element count of a product of sizes, refusing anything that could overflow an offset.
inline int64_t elements(const std::string& who, std::initializer_list<int64_t> dims) {
  double n = 1;
  for (int64_t d : dims) n *= static_cast<double>(d);
  if (n > 9.0e15) throw Error(who + ": tensor too large");
  int64_t out = 1;
  for (int64_t d : dims) out *= d;
  return out;
}

}  // namespace bindings
}  // namespace amr
