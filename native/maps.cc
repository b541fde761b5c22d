// Map operations on file descriptors: element calls, batch calls, info, pins.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"

namespace sy {

namespace {

bool Need(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  if (info.Length() < n) {
    ThrowArg(info.Env(), usage);
    return false;
  }
  return true;
}

// mapInfo(fd) -> { type, id, keySize, valueSize, maxEntries, flags, name }
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 1, "mapInfo(fd)")) return env.Undefined();
  bpf_map_info map_info;
  memset(&map_info, 0, sizeof(map_info));
  uint32_t len = sizeof(map_info);
  int err = bpf_obj_get_info_by_fd(IntArg(info[0]), &map_info, &len);
  if (err != 0) {
    ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", map_info.type);
  out.Set("id", map_info.id);
  out.Set("keySize", map_info.key_size);
  out.Set("valueSize", map_info.value_size);
  out.Set("maxEntries", map_info.max_entries);
  out.Set("flags", map_info.map_flags);
  out.Set("name", map_info.name);
  return out;
}

// mapLookup(fd, key, valueLen) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 3, "mapLookup(fd, key, valueLen)")) return env.Undefined();
  auto key = BufferArg(info[1]);
  auto value = Napi::Buffer<uint8_t>::New(env, UintArg(info[2]));
  int err = bpf_map_lookup_elem(IntArg(info[0]), key.Data(), value.Data());
  if (err == -ENOENT) return env.Null();
  if (err != 0) {
    ThrowErrno(env, "bpf_map_lookup_elem", err);
    return env.Undefined();
  }
  return value;
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 4, "mapUpdate(fd, key, value, flags)")) return env.Undefined();
  auto key = BufferArg(info[1]);
  auto value = BufferArg(info[2]);
  int err = bpf_map_update_elem(IntArg(info[0]), key.Data(), value.Data(), UintArg(info[3]));
  if (err != 0) ThrowErrno(env, "bpf_map_update_elem", err);
  return env.Undefined();
}

// mapDelete(fd, key) -> true when an entry was removed, false when there was none
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 2, "mapDelete(fd, key)")) return env.Undefined();
  auto key = BufferArg(info[1]);
  int err = bpf_map_delete_elem(IntArg(info[0]), key.Data());
  if (err == -ENOENT) return Napi::Boolean::New(env, false);
  if (err != 0) {
    ThrowErrno(env, "bpf_map_delete_elem", err);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keyLen) -> Buffer | null (null: no more keys)
Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 3, "mapNextKey(fd, key, keyLen)")) return env.Undefined();
  const void* current = info[1].IsBuffer() ? BufferArg(info[1]).Data() : nullptr;
  auto next = Napi::Buffer<uint8_t>::New(env, UintArg(info[2]));
  int err = bpf_map_get_next_key(IntArg(info[0]), current, next.Data());
  if (err == -ENOENT) return env.Null();
  if (err != 0) {
    ThrowErrno(env, "bpf_map_get_next_key", err);
    return env.Undefined();
  }
  return next;
}

// The kernel's batch cursor is a bucket number for hash maps and a key for arrays;
// this size holds either.
size_t CursorSize(uint32_t key_len) { return key_len < 8 ? 8 : key_len; }

// mapLookupBatch(fd, cursor | null, keyLen, valueLen, maxCount)
//   -> { keys, values, count, cursor | null }  (cursor null: the map is exhausted)
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 5, "mapLookupBatch(fd, cursor, keyLen, valueLen, maxCount)"))
    return env.Undefined();
  int fd = IntArg(info[0]);
  uint32_t key_len = UintArg(info[2]);
  uint32_t value_len = UintArg(info[3]);
  uint32_t count = UintArg(info[4]);
  std::vector<uint8_t> in_cursor;
  if (info[1].IsBuffer()) {
    auto c = BufferArg(info[1]);
    in_cursor.assign(c.Data(), c.Data() + c.Length());
  }
  auto out_cursor = Napi::Buffer<uint8_t>::New(env, CursorSize(key_len));
  auto keys = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(key_len) * count);
  auto values = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(value_len) * count);
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_lookup_batch(fd, in_cursor.empty() ? nullptr : in_cursor.data(),
                                 out_cursor.Data(), keys.Data(), values.Data(), &count, &opts);
  bool done = err == -ENOENT;
  if (err != 0 && !done) {
    ThrowErrno(env, "bpf_map_lookup_batch", err);
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", keys);
  out.Set("values", values);
  out.Set("count", count);
  out.Set("cursor", done ? env.Null() : Napi::Value(out_cursor));
  return out;
}

// mapUpdateBatch(fd, keys, values, count, flags) -> count written
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 5, "mapUpdateBatch(fd, keys, values, count, flags)")) return env.Undefined();
  auto keys = BufferArg(info[1]);
  auto values = BufferArg(info[2]);
  uint32_t count = UintArg(info[3]);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = UintArg(info[4]));
  int err = bpf_map_update_batch(IntArg(info[0]), keys.Data(), values.Data(), &count, &opts);
  if (err != 0) {
    ThrowErrno(env, "bpf_map_update_batch", err, std::to_string(count) + " written before the error");
    return env.Undefined();
  }
  return Napi::Number::New(env, count);
}

// mapDeleteBatch(fd, keys, count) -> count deleted
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 3, "mapDeleteBatch(fd, keys, count)")) return env.Undefined();
  auto keys = BufferArg(info[1]);
  uint32_t count = UintArg(info[2]);
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_delete_batch(IntArg(info[0]), keys.Data(), &count, &opts);
  if (err != 0) {
    ThrowErrno(env, "bpf_map_delete_batch", err, std::to_string(count) + " deleted before the error");
    return env.Undefined();
  }
  return Napi::Number::New(env, count);
}

// objGet(path) -> fd of a pinned map or program
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 1, "objGet(path)") || !info[0].IsString()) return env.Undefined();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    ThrowErrno(env, "bpf_obj_get", fd, path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// objPin(fd, path)
Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 2, "objPin(fd, path)") || !info[1].IsString()) return env.Undefined();
  std::string path = info[1].As<Napi::String>();
  int err = bpf_obj_pin(IntArg(info[0]), path.c_str());
  if (err != 0) ThrowErrno(env, "bpf_obj_pin", err, path);
  return env.Undefined();
}

// mapCreate(type, keySize, valueSize, maxEntries, name) -> fd of a new, unpinned map (e.g. an
// inner map of a map-in-map, filled and then inserted into its outer map).
Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 5, "mapCreate(type, keySize, valueSize, maxEntries, name)")) return env.Undefined();
  std::string name = info[4].IsString() ? std::string(info[4].As<Napi::String>()) : std::string();
  int fd = bpf_map_create(static_cast<bpf_map_type>(UintArg(info[0])), name.c_str(), UintArg(info[1]), UintArg(info[2]),
                          UintArg(info[3]), nullptr);
  if (fd < 0) {
    ThrowErrno(env, "bpf_map_create", fd, name);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Need(info, 1, "closeFd(fd)")) return env.Undefined();
  if (close(IntArg(info[0])) != 0) ThrowErrno(env, "close", errno);
  return env.Undefined();
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) {
    ThrowErrno(info.Env(), "libbpf_num_possible_cpus", n);
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

void RegisterMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapLookupBatch", Napi::Function::New(env, MapLookupBatch));
  exports.Set("mapUpdateBatch", Napi::Function::New(env, MapUpdateBatch));
  exports.Set("mapDeleteBatch", Napi::Function::New(env, MapDeleteBatch));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("mapCreate", Napi::Function::New(env, MapCreate));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
}

}  // namespace sy
