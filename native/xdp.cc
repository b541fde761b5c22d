// XDP attachment through libbpf's netlink helpers.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <napi.h>

#include <cerrno>
#include <string>

#include "args.h"
#include "errors.h"
#include "netns.h"

namespace sy {

namespace {

uint32_t ModeFlags(const std::string& mode) {
  if (mode == "native") return XDP_FLAGS_DRV_MODE;
  if (mode == "generic") return XDP_FLAGS_SKB_MODE;
  if (mode == "offload") return XDP_FLAGS_HW_MODE;
  return 0;
}

const char* ModeName(uint8_t attach_mode) {
  switch (attach_mode) {
    case XDP_ATTACHED_DRV:
      return "native";
    case XDP_ATTACHED_SKB:
      return "generic";
    case XDP_ATTACHED_HW:
      return "offload";
    case XDP_ATTACHED_MULTI:
      return "multi";
    default:
      return "none";
  }
}

bool Begin(const Napi::CallbackInfo& info, const char* op, InterfaceTarget* target, NetnsGuard* guard) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    ThrowArg(info.Env(), std::string(op) + "(options)");
    return false;
  }
  if (!ReadInterfaceTarget(info.Env(), info[0].As<Napi::Object>(), target)) return false;
  return EnterAndResolve(info.Env(), op, target, guard);
}

// Reads what is attached at the interface; throws (returns false) on failure.
bool QueryXdp(Napi::Env env, const InterfaceTarget& target, bpf_xdp_query_opts* query) {
  LogCapture capture;
  int err = bpf_xdp_query(target.ifindex, 0, query);
  if (err != 0) {
    ThrowErrno(env, "bpf_xdp_query", err, target.ifname, capture.text());
    return false;
  }
  return true;
}

// xdpAttach({ ifname|ifindex, netns?, progFd, mode?: native|generic|offload, expectedProgId? })
//   -> { ifindex, mode }. Never replaces a program by surprise: without expectedProgId the kernel
//   attaches only if the device has no XDP program (XDP_FLAGS_UPDATE_IF_NOEXIST; EBUSY
//   otherwise); with it, only if that very program is still the one attached (XDP_FLAGS_REPLACE
//   with its fd; EEXIST otherwise). Which programs may be replaced is the caller's decision
//   (control/bpf/attach.ts); the kernel makes it race-free.
Napi::Value XdpAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  InterfaceTarget target;
  NetnsGuard guard;
  if (!Begin(info, "xdpAttach", &target, &guard)) return env.Undefined();
  Napi::Object opts = info[0].As<Napi::Object>();
  int prog_fd = static_cast<int>(OptUint(opts, "progFd", 0));
  std::string mode = OptString(opts, "mode", "native");
  uint32_t expected_id = OptUint(opts, "expectedProgId", 0);
  if (prog_fd <= 0) {
    ThrowArg(env, "xdpAttach: progFd must be a program file descriptor");
    return env.Undefined();
  }
  if (ModeFlags(mode) == 0) {
    ThrowArg(env, "xdpAttach: mode must be native, generic or offload");
    return env.Undefined();
  }
  LogCapture capture;
  LIBBPF_OPTS(bpf_xdp_attach_opts, attach);
  uint32_t flags = ModeFlags(mode);
  int old_fd = -1;
  if (expected_id != 0) {
    old_fd = bpf_prog_get_fd_by_id(expected_id);
    if (old_fd < 0) {
      ThrowErrno(env, "bpf_prog_get_fd_by_id", old_fd, target.ifname + " expected XDP program " + std::to_string(expected_id), capture.text());
      return env.Undefined();
    }
    attach.old_prog_fd = old_fd;
    flags |= XDP_FLAGS_REPLACE;
  } else {
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  }
  int err = bpf_xdp_attach(target.ifindex, prog_fd, flags, &attach);
  if (old_fd >= 0) close(old_fd);
  if (err != 0) {
    ThrowErrno(env, "bpf_xdp_attach", err, target.ifname + " mode " + mode, capture.text());
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ifindex", target.ifindex);
  out.Set("mode", mode);
  return out;
}

// xdpQuery({ ifname|ifindex, netns? }) -> { progId, mode }  (progId 0: nothing attached)
Napi::Value XdpQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  InterfaceTarget target;
  NetnsGuard guard;
  if (!Begin(info, "xdpQuery", &target, &guard)) return env.Undefined();
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (!QueryXdp(env, target, &query)) return env.Undefined();
  uint32_t id = query.prog_id != 0 ? query.prog_id : (query.skb_prog_id != 0 ? query.skb_prog_id : query.drv_prog_id);
  Napi::Object out = Napi::Object::New(env);
  out.Set("progId", id);
  out.Set("mode", ModeName(query.attach_mode));
  return out;
}

// xdpDetach({ ifname|ifindex, netns? }) -> true when a program was removed
Napi::Value XdpDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  InterfaceTarget target;
  NetnsGuard guard;
  if (!Begin(info, "xdpDetach", &target, &guard)) return env.Undefined();
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (!QueryXdp(env, target, &query)) return env.Undefined();
  uint32_t flags = 0;
  switch (query.attach_mode) {
    case XDP_ATTACHED_NONE:
      return Napi::Boolean::New(env, false);
    case XDP_ATTACHED_SKB:
      flags = XDP_FLAGS_SKB_MODE;
      break;
    case XDP_ATTACHED_HW:
      flags = XDP_FLAGS_HW_MODE;
      break;
    default:
      flags = XDP_FLAGS_DRV_MODE;
  }
  LogCapture capture;
  int err = bpf_xdp_detach(target.ifindex, flags, nullptr);
  if (err != 0) {
    ThrowErrno(env, "bpf_xdp_detach", err, target.ifname, capture.text());
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void RegisterXdp(Napi::Env env, Napi::Object exports) {
  exports.Set("xdpAttach", Napi::Function::New(env, XdpAttach));
  exports.Set("xdpQuery", Napi::Function::New(env, XdpQuery));
  exports.Set("xdpDetach", Napi::Function::New(env, XdpDetach));
}

}  // namespace sy
