// Small argument readers shared by the fd-based calls.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace sy {

inline bool IsBuffer(const Napi::Value& v) { return v.IsBuffer(); }

inline Napi::Buffer<uint8_t> BufferArg(const Napi::Value& v) { return v.As<Napi::Buffer<uint8_t>>(); }

inline int32_t IntArg(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }

inline uint32_t UintArg(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }

inline uint32_t OptUint(const Napi::Object& o, const char* key, uint32_t fallback) {
  return o.Has(key) && o.Get(key).IsNumber() ? o.Get(key).As<Napi::Number>().Uint32Value() : fallback;
}

inline bool OptBool(const Napi::Object& o, const char* key, bool fallback) {
  return o.Has(key) && o.Get(key).IsBoolean() ? o.Get(key).As<Napi::Boolean>().Value() : fallback;
}

inline std::string OptString(const Napi::Object& o, const char* key, const std::string& fallback) {
  return o.Has(key) && o.Get(key).IsString() ? std::string(o.Get(key).As<Napi::String>()) : fallback;
}

}  // namespace sy
