// The Switchyard addon: a thin Node-API layer over libbpf. Every kernel object the
// control plane touches goes through here; policy lives in TypeScript.
#include <napi.h>

#include "errors.h"
#include "object.h"

namespace sy {
void RegisterMaps(Napi::Env env, Napi::Object exports);
void RegisterTc(Napi::Env env, Napi::Object exports);
void RegisterXdp(Napi::Env env, Napi::Object exports);
void RegisterProg(Napi::Env env, Napi::Object exports);
void RegisterCgroup(Napi::Env env, Napi::Object exports);
void RegisterIter(Napi::Env env, Napi::Object exports);
}  // namespace sy

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  sy::InstallLibbpfLogger();
  exports.Set("BpfObject", sy::BpfObject::Define(env));
  sy::RegisterMaps(env, exports);
  sy::RegisterTc(env, exports);
  sy::RegisterXdp(env, exports);
  sy::RegisterProg(env, exports);
  sy::RegisterCgroup(env, exports);
  sy::RegisterIter(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(switchyard, Init)
