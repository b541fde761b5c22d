// BpfObject: one BPF ELF object opened and loaded through libbpf.
#pragma once

#include <bpf/libbpf.h>
#include <napi.h>

#include <string>

namespace sy {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value LoadAsync(const Napi::CallbackInfo& info);
  bool PrepareLoad(const Napi::CallbackInfo& info, const char* op);
  void FinishLoad(Napi::Env env, Napi::Promise::Deferred& deferred, int err, const std::string& log);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value SetMapMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value PinProgram(const Napi::CallbackInfo& info);
  Napi::Value UnpinMaps(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  bool CheckOpen(Napi::Env env, const char* op);

  friend class LoadWorker;

  bpf_object* object_ = nullptr;
  bool loaded_ = false;
  // A loadAsync() is verifying on a worker thread: nothing else may touch the object meanwhile.
  bool loading_ = false;
  // close() came while loading: the object closes once the load is over.
  bool close_after_load_ = false;
};

}  // namespace sy
