#include "object.h"

#include <cerrno>
#include <string>

#include "errors.h"

namespace sy {

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod("load", &BpfObject::Load),
                         InstanceMethod("maps", &BpfObject::Maps),
                         InstanceMethod("programs", &BpfObject::Programs),
                         InstanceMethod("setMapMaxEntries", &BpfObject::SetMapMaxEntries),
                         InstanceMethod("pinProgram", &BpfObject::PinProgram),
                         InstanceMethod("unpinMaps", &BpfObject::UnpinMaps),
                         InstanceMethod("close", &BpfObject::Close),
                     });
}

// new BpfObject(path): opens (parses) the ELF object; nothing reaches the kernel yet.
BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowArg(env, "BpfObject(path): path must be a string");
    return;
  }
  std::string path = info[0].As<Napi::String>();
  LogCapture capture;
  bpf_object* object = bpf_object__open_file(path.c_str(), nullptr);
  int err = libbpf_get_error(object);
  if (err != 0) {
    ThrowErrno(env, "bpf_object__open_file", err, path, capture.text());
    return;
  }
  object_ = object;
}

BpfObject::~BpfObject() {
  if (object_ != nullptr) bpf_object__close(object_);
}

bool BpfObject::CheckOpen(Napi::Env env, const char* op) {
  if (object_ == nullptr) {
    ThrowErrno(env, op, EBADF, "object is closed");
    return false;
  }
  return true;
}

// load(pinDir?): every non-internal map gets pinDir/<name> as its pin path before the
// load, so libbpf reuses a compatible map already pinned there (adoption after a restart)
// and pins the ones it creates.
Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "bpf_object__load")) return env.Undefined();
  if (loaded_) {
    ThrowErrno(env, "bpf_object__load", EALREADY, "object is loaded already");
    return env.Undefined();
  }
  if (info.Length() >= 1 && info[0].IsString()) {
    std::string dir = info[0].As<Napi::String>();
    bpf_map* map;
    bpf_object__for_each_map(map, object_) {
      if (bpf_map__is_internal(map)) continue;
      std::string path = dir + "/" + bpf_map__name(map);
      int err = bpf_map__set_pin_path(map, path.c_str());
      if (err != 0) {
        ThrowErrno(env, "bpf_map__set_pin_path", err, path);
        return env.Undefined();
      }
    }
  }
  LogCapture capture;
  int err = bpf_object__load(object_);
  if (err != 0) {
    ThrowErrno(env, "bpf_object__load", err, bpf_object__name(object_), capture.text());
    return env.Undefined();
  }
  loaded_ = true;
  return env.Undefined();
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "maps")) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, object_) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", bpf_map__name(map));
    entry.Set("fd", loaded_ ? bpf_map__fd(map) : -1);
    entry.Set("type", static_cast<uint32_t>(bpf_map__type(map)));
    entry.Set("keySize", bpf_map__key_size(map));
    entry.Set("valueSize", bpf_map__value_size(map));
    entry.Set("maxEntries", bpf_map__max_entries(map));
    entry.Set("internal", bpf_map__is_internal(map));
    const char* pin = bpf_map__pin_path(map);
    entry.Set("pinPath", pin != nullptr ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
    entry.Set("pinned", bpf_map__is_pinned(map));
    out.Set(i++, entry);
  }
  return out;
}

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "programs")) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, object_) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", bpf_program__name(prog));
    entry.Set("section", bpf_program__section_name(prog));
    entry.Set("fd", loaded_ ? bpf_program__fd(prog) : -1);
    entry.Set("type", static_cast<uint32_t>(bpf_program__type(prog)));
    out.Set(i++, entry);
  }
  return out;
}

// setMapMaxEntries(name, n): sizes are chosen by configuration, before load.
Napi::Value BpfObject::SetMapMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "bpf_map__set_max_entries")) return env.Undefined();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    ThrowArg(env, "setMapMaxEntries(name: string, maxEntries: number)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>();
  bpf_map* map = bpf_object__find_map_by_name(object_, name.c_str());
  if (map == nullptr) {
    ThrowErrno(env, "bpf_map__set_max_entries", ENOENT, "no map named " + name);
    return env.Undefined();
  }
  int err = bpf_map__set_max_entries(map, info[1].As<Napi::Number>().Uint32Value());
  if (err != 0) ThrowErrno(env, "bpf_map__set_max_entries", err, name);
  return env.Undefined();
}

Napi::Value BpfObject::PinProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "bpf_program__pin")) return env.Undefined();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    ThrowArg(env, "pinProgram(name: string, path: string)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>();
  std::string path = info[1].As<Napi::String>();
  bpf_program* prog = bpf_object__find_program_by_name(object_, name.c_str());
  if (prog == nullptr) {
    ThrowErrno(env, "bpf_program__pin", ENOENT, "no program named " + name);
    return env.Undefined();
  }
  LogCapture capture;
  int err = bpf_program__pin(prog, path.c_str());
  if (err != 0) ThrowErrno(env, "bpf_program__pin", err, path, capture.text());
  return env.Undefined();
}

Napi::Value BpfObject::UnpinMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "bpf_object__unpin_maps")) return env.Undefined();
  LogCapture capture;
  int err = bpf_object__unpin_maps(object_, nullptr);
  if (err != 0) ThrowErrno(env, "bpf_object__unpin_maps", err, "", capture.text());
  return env.Undefined();
}

// close(): releases the object's map and program fds. Pinned objects and attached
// programs live on in the kernel: that is what keeps the datapath up across restarts.
Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  if (object_ != nullptr) {
    bpf_object__close(object_);
    object_ = nullptr;
  }
  return info.Env().Undefined();
}

}  // namespace sy
