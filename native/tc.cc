// tc (clsact) attachment through libbpf's netlink helpers. Filters stay in the kernel
// after the process exits, which is what lets the agent restart without a traffic gap.
#include <bpf/libbpf.h>
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "netns.h"

namespace sy {

namespace {

bool ReadDirection(Napi::Env env, const Napi::Object& opts, bpf_tc_attach_point* out) {
  std::string dir = OptString(opts, "direction", "");
  if (dir == "ingress") {
    *out = BPF_TC_INGRESS;
  } else if (dir == "egress") {
    *out = BPF_TC_EGRESS;
  } else {
    ThrowArg(env, "direction must be \"ingress\" or \"egress\"");
    return false;
  }
  return true;
}

struct TcCall {
  InterfaceTarget target;
  NetnsGuard guard;
  bpf_tc_attach_point point;
  uint32_t handle;
  uint32_t priority;
};

bool Prepare(const Napi::CallbackInfo& info, const char* op, TcCall* call) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ThrowArg(env, std::string(op) + "(options)");
    return false;
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  if (!ReadInterfaceTarget(env, opts, &call->target)) return false;
  if (!ReadDirection(env, opts, &call->point)) return false;
  call->handle = OptUint(opts, "handle", 1);
  call->priority = OptUint(opts, "priority", 1);
  return EnterAndResolve(env, op, &call->target, &call->guard);
}

// tcAttach({ ifname|ifindex, netns?, direction, progFd, handle?, priority?, replace? })
//   -> { ifindex, handle, priority, progId }
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcCall call;
  if (!Prepare(info, "tcAttach", &call)) return env.Undefined();
  Napi::Object opts = info[0].As<Napi::Object>();
  int prog_fd = static_cast<int>(OptUint(opts, "progFd", 0));
  if (prog_fd <= 0) {
    ThrowArg(env, "tcAttach: progFd must be a program file descriptor");
    return env.Undefined();
  }
  LogCapture capture;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = call.target.ifindex, .attach_point = call.point);
  int err = bpf_tc_hook_create(&hook);
  // The clsact qdisc is shared with other users of the device; finding it is fine.
  if (err != 0 && err != -EEXIST) {
    ThrowErrno(env, "bpf_tc_hook_create", err, call.target.ifname, capture.text());
    return env.Undefined();
  }
  LIBBPF_OPTS(bpf_tc_opts, tc_opts, .prog_fd = prog_fd, .flags = OptBool(opts, "replace", true) ? static_cast<uint32_t>(BPF_TC_F_REPLACE) : 0u,
              .handle = call.handle, .priority = call.priority);
  err = bpf_tc_attach(&hook, &tc_opts);
  if (err != 0) {
    ThrowErrno(env, "bpf_tc_attach", err, call.target.ifname, capture.text());
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ifindex", call.target.ifindex);
  out.Set("handle", tc_opts.handle);
  out.Set("priority", tc_opts.priority);
  out.Set("progId", tc_opts.prog_id);
  return out;
}

// tcDetach({ ifname|ifindex, netns?, direction, handle?, priority? }) -> true if removed
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcCall call;
  if (!Prepare(info, "tcDetach", &call)) return env.Undefined();
  LogCapture capture;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = call.target.ifindex, .attach_point = call.point);
  LIBBPF_OPTS(bpf_tc_opts, tc_opts, .handle = call.handle, .priority = call.priority);
  int err = bpf_tc_detach(&hook, &tc_opts);
  if (err == -ENOENT || err == -EINVAL) {
    // No clsact qdisc (EINVAL from the kernel) or no such filter: nothing to remove.
    return Napi::Boolean::New(env, false);
  }
  if (err != 0) {
    ThrowErrno(env, "bpf_tc_detach", err, call.target.ifname, capture.text());
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// tcQuery({ ifname|ifindex, netns?, direction, handle?, priority? }) -> progId | null
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TcCall call;
  if (!Prepare(info, "tcQuery", &call)) return env.Undefined();
  LogCapture capture;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = call.target.ifindex, .attach_point = call.point);
  LIBBPF_OPTS(bpf_tc_opts, tc_opts, .handle = call.handle, .priority = call.priority);
  int err = bpf_tc_query(&hook, &tc_opts);
  if (err == -ENOENT || err == -EINVAL) return env.Null();
  if (err != 0) {
    ThrowErrno(env, "bpf_tc_query", err, call.target.ifname, capture.text());
    return env.Undefined();
  }
  return Napi::Number::New(env, tc_opts.prog_id);
}

}  // namespace

void RegisterTc(Napi::Env env, Napi::Object exports) {
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("tcQuery", Napi::Function::New(env, TcQuery));
}

}  // namespace sy
