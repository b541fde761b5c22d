// Program-level calls: BPF_PROG_TEST_RUN and program info.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"

namespace sy {

namespace {

// progTestRun(fd, data, { repeat?, ctxIn?, ctxOutSize?, dataOutSize? })
//   -> { retval, data, ctx | null, durationNs }
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer()) {
    ThrowArg(env, "progTestRun(fd, data: Buffer, options?)");
    return env.Undefined();
  }
  Napi::Object opts = info.Length() >= 3 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  auto data_in = BufferArg(info[1]);
  // Room for a program that grows the packet (e.g. an ICMP error quoting the original).
  size_t out_size = OptUint(opts, "dataOutSize", static_cast<uint32_t>(data_in.Length()) + 512);
  std::vector<uint8_t> data_out(out_size);
  std::vector<uint8_t> ctx_in;
  std::vector<uint8_t> ctx_out;
  if (opts.Has("ctxIn") && opts.Get("ctxIn").IsBuffer()) {
    auto c = BufferArg(opts.Get("ctxIn"));
    ctx_in.assign(c.Data(), c.Data() + c.Length());
    ctx_out.resize(OptUint(opts, "ctxOutSize", static_cast<uint32_t>(c.Length())));
  }
  LIBBPF_OPTS(bpf_test_run_opts, run);
  run.data_in = data_in.Data();
  run.data_out = data_out.data();
  run.data_size_in = static_cast<uint32_t>(data_in.Length());
  run.data_size_out = static_cast<uint32_t>(data_out.size());
  run.ctx_in = ctx_in.empty() ? nullptr : ctx_in.data();
  run.ctx_out = ctx_out.empty() ? nullptr : ctx_out.data();
  run.ctx_size_in = static_cast<uint32_t>(ctx_in.size());
  run.ctx_size_out = static_cast<uint32_t>(ctx_out.size());
  run.repeat = static_cast<int>(OptUint(opts, "repeat", 1));
  int err = bpf_prog_test_run_opts(IntArg(info[0]), &run);
  if (err != 0) {
    ThrowErrno(env, "bpf_prog_test_run_opts", err);
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("retval", run.retval);
  out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_out.data(), run.data_size_out));
  out.Set("ctx", ctx_out.empty() ? env.Null() : Napi::Value(Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), run.ctx_size_out)));
  out.Set("durationNs", run.duration);
  return out;
}

// progInfo(fd) -> { id, type, name, tag }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArg(env, "progInfo(fd)");
    return env.Undefined();
  }
  bpf_prog_info prog_info;
  memset(&prog_info, 0, sizeof(prog_info));
  uint32_t len = sizeof(prog_info);
  int err = bpf_obj_get_info_by_fd(IntArg(info[0]), &prog_info, &len);
  if (err != 0) {
    ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
    return env.Undefined();
  }
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", prog_info.tag[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", prog_info.id);
  out.Set("type", prog_info.type);
  out.Set("name", prog_info.name);
  out.Set("tag", tag);
  return out;
}

// progFdById(id) -> fd of a loaded program (to detach an earlier agent's instance)
Napi::Value ProgFdById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArg(env, "progFdById(id)");
    return env.Undefined();
  }
  int fd = bpf_prog_get_fd_by_id(UintArg(info[0]));
  if (fd < 0) {
    ThrowErrno(env, "bpf_prog_get_fd_by_id", fd);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// kernelFunctionExists(name) -> whether the running kernel's BTF has a function of that name:
// how the control plane asks for a kfunc before loading an object that calls it.
Napi::Value KernelFunctionExists(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowArg(env, "kernelFunctionExists(name)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct btf* vmlinux = btf__load_vmlinux_btf();
  int err = libbpf_get_error(vmlinux);
  if (err != 0) {
    ThrowErrno(env, "btf__load_vmlinux_btf", err);
    return env.Undefined();
  }
  bool found = btf__find_by_name_kind(vmlinux, name.c_str(), BTF_KIND_FUNC) >= 0;
  btf__free(vmlinux);
  return Napi::Boolean::New(env, found);
}

}  // namespace

void RegisterProg(Napi::Env env, Napi::Object exports) {
  exports.Set("progTestRun", Napi::Function::New(env, ProgTestRun));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("progFdById", Napi::Function::New(env, ProgFdById));
  exports.Set("kernelFunctionExists", Napi::Function::New(env, KernelFunctionExists));
}

}  // namespace sy
