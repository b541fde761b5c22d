// Program-level calls: BPF_PROG_TEST_RUN and program info.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "args.h"
#include "errors.h"
#include "netns.h"

namespace sy {

namespace {

// progTestRun(fd, data, { repeat?, ctxIn?, ctxOutSize?, dataOutSize?, netns? })
//   -> { retval, data, ctx | null, durationNs }
// netns: run inside that network namespace (a path), whose routes FIB lookups then see.
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
  NetnsGuard guard;
  if (opts.Has("netns") && opts.Get("netns").IsString()) {
    std::string path = opts.Get("netns").As<Napi::String>();
    int entered = guard.Enter(path);
    if (entered != 0) {
      ThrowErrno(env, "progTestRun", entered, "network namespace " + path);
      return env.Undefined();
    }
  }
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

// The helpers the datapath's builds differ by (object-path.ts), each with a program type that may
// call it. A probe passes 0 in r1 only, so only helpers taking one scalar (or none) belong here.
struct HelperProbe {
  const char* name;
  bpf_func_id id;
  bpf_prog_type prog_type;
  bpf_attach_type attach_type;
};
const HelperProbe kHelperProbes[] = {
    {"set_retval", BPF_FUNC_set_retval, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT},
    {"ktime_get_coarse_ns", BPF_FUNC_ktime_get_coarse_ns, BPF_PROG_TYPE_SCHED_CLS, BPF_CGROUP_INET_INGRESS},
};

// helperSupported(name) -> whether the kernel's verifier accepts a call to that helper: a
// four-instruction program (r1 = 0; call; r0 = 1; exit) is loaded and closed. Only an "unknown
// func" refusal means no; any other failure is thrown, so a missing privilege is not taken
// for a missing helper.
Napi::Value HelperSupported(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowArg(env, "helperSupported(name)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  const HelperProbe* probe = nullptr;
  for (const auto& p : kHelperProbes)
    if (name == p.name) probe = &p;
  if (probe == nullptr) {
    ThrowArg(env, "helperSupported: no probe for helper " + name);
    return env.Undefined();
  }
  struct bpf_insn insns[4] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_1;
  insns[1].code = BPF_JMP | BPF_CALL;
  insns[1].imm = probe->id;
  insns[2].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[2].dst_reg = BPF_REG_0;
  insns[2].imm = 1;
  insns[3].code = BPF_JMP | BPF_EXIT;
  std::vector<char> log(4096);
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .log_level = 1, .log_size = static_cast<__u32>(log.size()), .log_buf = log.data());
  if (probe->prog_type == BPF_PROG_TYPE_CGROUP_SOCK_ADDR) opts.expected_attach_type = probe->attach_type;
  int fd = bpf_prog_load(probe->prog_type, "sy_probe", "GPL", insns, 4, &opts);
  if (fd >= 0) {
    close(fd);
    return Napi::Boolean::New(env, true);
  }
  int err = fd;  // libbpf 1.x: -errno
  std::string text(log.data());
  if (text.find("unknown func") != std::string::npos || text.find("invalid func") != std::string::npos)
    return Napi::Boolean::New(env, false);
  ThrowErrno(env, "bpf_prog_load (helper probe " + name + ")", err, "", text);
  return env.Undefined();
}

}  // namespace

void RegisterProg(Napi::Env env, Napi::Object exports) {
  exports.Set("progTestRun", Napi::Function::New(env, ProgTestRun));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("progFdById", Napi::Function::New(env, ProgFdById));
  exports.Set("kernelFunctionExists", Napi::Function::New(env, KernelFunctionExists));
  exports.Set("helperSupported", Napi::Function::New(env, HelperSupported));
}

}  // namespace sy
