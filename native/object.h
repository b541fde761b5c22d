// BpfObject: one BPF ELF object opened and loaded through libbpf.
#pragma once

#include <bpf/libbpf.h>
#include <napi.h>

namespace sy {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value SetMapMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value PinProgram(const Napi::CallbackInfo& info);
  Napi::Value UnpinMaps(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  bool CheckOpen(Napi::Env env, const char* op);

  bpf_object* object_ = nullptr;
  bool loaded_ = false;
};

}  // namespace sy
