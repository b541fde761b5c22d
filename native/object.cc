#include "object.h"

#include <pthread.h>

#include <cerrno>
#include <csignal>
#include <string>

#include "errors.h"

namespace sy {

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod("load", &BpfObject::Load),
                         InstanceMethod("loadAsync", &BpfObject::LoadAsync),
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
  if (loading_) {
    ThrowErrno(env, op, EBUSY, "object is loading");
    return false;
  }
  return true;
}

// Before either load: every non-internal map gets pinDir/<name> as its pin path, so libbpf
// reuses a compatible map already pinned there (adoption after a restart) and pins the ones it
// creates.
bool BpfObject::PrepareLoad(const Napi::CallbackInfo& info, const char* op) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, op)) return false;
  if (loaded_) {
    ThrowErrno(env, op, EALREADY, "object is loaded already");
    return false;
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
        return false;
      }
    }
  }
  return true;
}

// load(pinDir?): verifies and loads on the calling (JavaScript) thread.
Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!PrepareLoad(info, "bpf_object__load")) return env.Undefined();
  LogCapture capture;
  int err = bpf_object__load(object_);
  if (err != 0) {
    ThrowErrno(env, "bpf_object__load", err, bpf_object__name(object_), capture.text());
    return env.Undefined();
  }
  loaded_ = true;
  return env.Undefined();
}

// The load on a libuv worker thread: verifying a large object takes seconds, and the agent
// lists its sources meanwhile. Every signal is blocked on that thread while the verifier runs,
// so a SIGCHLD or SIGPROF goes to another thread instead of making the verifier give up (EAGAIN).
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, BpfObject* owner, Napi::Object self)
      : Napi::AsyncWorker(env, "switchyard.bpf_object__load"),
        deferred_(Napi::Promise::Deferred::New(env)),
        owner_(owner),
        self_(Napi::Persistent(self)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    {
      LogCapture capture;
      err_ = bpf_object__load(owner_->object_);
      log_ = capture.text();
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }

  void OnOK() override { owner_->FinishLoad(Env(), deferred_, err_, log_); }

 private:
  Napi::Promise::Deferred deferred_;
  BpfObject* owner_;
  // Keeps the JavaScript object (and so owner_) alive until the load is over.
  Napi::ObjectReference self_;
  int err_ = 0;
  std::string log_;
};

// loadAsync(pinDir?): the same as load(), resolved or rejected (BpfError) once the kernel answered.
Napi::Value BpfObject::LoadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!PrepareLoad(info, "bpf_object__load")) return env.Undefined();
  loading_ = true;
  LoadWorker* worker = new LoadWorker(env, this, info.This().As<Napi::Object>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

void BpfObject::FinishLoad(Napi::Env env, Napi::Promise::Deferred& deferred, int err, const std::string& log) {
  loading_ = false;
  if (err == 0) loaded_ = true;
  std::string name = bpf_object__name(object_);
  if (close_after_load_) {
    bpf_object__close(object_);
    object_ = nullptr;
  }
  if (err != 0) {
    deferred.Reject(ErrnoError(env, "bpf_object__load", err, name, log).Value());
  } else if (object_ == nullptr) {
    deferred.Reject(ErrnoError(env, "bpf_object__load", EBADF, "object was closed while loading").Value());
  } else {
    deferred.Resolve(env.Undefined());
  }
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
  if (loading_) {
    close_after_load_ = true;
  } else if (object_ != nullptr) {
    bpf_object__close(object_);
    object_ = nullptr;
  }
  return info.Env().Undefined();
}

}  // namespace sy
