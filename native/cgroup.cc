// cgroup attachment for the socket-level programs, and the network namespace cookie that lets
// those programs act only in the host's namespace.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <napi.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "netns.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace sy {

namespace {

struct AttachTypeName {
  const char* name;
  bpf_attach_type type;
};

const AttachTypeName kAttachTypes[] = {
    {"connect4", BPF_CGROUP_INET4_CONNECT},        {"connect6", BPF_CGROUP_INET6_CONNECT},
    {"sendmsg4", BPF_CGROUP_UDP4_SENDMSG},         {"sendmsg6", BPF_CGROUP_UDP6_SENDMSG},
    {"recvmsg4", BPF_CGROUP_UDP4_RECVMSG},         {"recvmsg6", BPF_CGROUP_UDP6_RECVMSG},
    {"getpeername4", BPF_CGROUP_INET4_GETPEERNAME}, {"getpeername6", BPF_CGROUP_INET6_GETPEERNAME},
    {"sock_create", BPF_CGROUP_INET_SOCK_CREATE},
};

bool ReadAttach(const Napi::CallbackInfo& info, const char* op, std::string* path, bpf_attach_type* type) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    ThrowArg(env, std::string(op) + "({ path, attachType, progFd? })");
    return false;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  *path = OptString(o, "path", "");
  std::string name = OptString(o, "attachType", "");
  for (const auto& t : kAttachTypes) {
    if (name == t.name) {
      *type = t.type;
      return !path->empty() || (ThrowArg(env, std::string(op) + ": path is required"), false);
    }
  }
  ThrowArg(env, std::string(op) + ": unknown attachType \"" + name + "\"");
  return false;
}

int OpenCgroup(Napi::Env env, const char* op, const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, op, errno, "cgroup " + path);
  return fd;
}

// cgroupAttach({ path, attachType, progFd }): multi-attach, so other users' programs stay.
Napi::Value CgroupAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bpf_attach_type type;
  if (!ReadAttach(info, "cgroupAttach", &path, &type)) return env.Undefined();
  int prog_fd = static_cast<int>(OptUint(info[0].As<Napi::Object>(), "progFd", 0));
  int cg = OpenCgroup(env, "cgroupAttach", path);
  if (cg < 0) return env.Undefined();
  int err = bpf_prog_attach(prog_fd, cg, type, BPF_F_ALLOW_MULTI);
  close(cg);
  if (err != 0) ThrowErrno(env, "bpf_prog_attach", err, path);
  return env.Undefined();
}

// cgroupDetach({ path, attachType, progFd }) -> true if it was attached
Napi::Value CgroupDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bpf_attach_type type;
  if (!ReadAttach(info, "cgroupDetach", &path, &type)) return env.Undefined();
  int prog_fd = static_cast<int>(OptUint(info[0].As<Napi::Object>(), "progFd", 0));
  int cg = OpenCgroup(env, "cgroupDetach", path);
  if (cg < 0) return env.Undefined();
  int err = bpf_prog_detach2(prog_fd, cg, type);
  close(cg);
  if (err == -ENOENT) return Napi::Boolean::New(env, false);
  if (err != 0) {
    ThrowErrno(env, "bpf_prog_detach2", err, path);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// cgroupQuery({ path, attachType }) -> program ids attached there
Napi::Value CgroupQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bpf_attach_type type;
  if (!ReadAttach(info, "cgroupQuery", &path, &type)) return env.Undefined();
  int cg = OpenCgroup(env, "cgroupQuery", path);
  if (cg < 0) return env.Undefined();
  __u32 ids[64];
  __u32 count = 64;
  __u32 flags = 0;
  int err = bpf_prog_query(cg, type, 0, &flags, ids, &count);
  close(cg);
  if (err != 0) {
    ThrowErrno(env, "bpf_prog_query", err, path);
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, count);
  for (__u32 i = 0; i < count; i++) out.Set(i, ids[i]);
  return out;
}

// netnsCookie(netnsPath?) -> BigInt cookie of that network namespace (SO_NETNS_COOKIE, 5.14+)
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsGuard guard;
  if (info.Length() >= 1 && info[0].IsString()) {
    std::string path = info[0].As<Napi::String>();
    int err = guard.Enter(path);
    if (err != 0) {
      ThrowErrno(env, "netnsCookie", err, "network namespace " + path);
      return env.Undefined();
    }
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", errno);
    return env.Undefined();
  }
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int saved = errno;
  close(fd);
  if (rc != 0) {
    ThrowErrno(env, "getsockopt(SO_NETNS_COOKIE)", saved);
    return env.Undefined();
  }
  return Napi::BigInt::New(env, cookie);
}

}  // namespace

void RegisterCgroup(Napi::Env env, Napi::Object exports) {
  exports.Set("cgroupAttach", Napi::Function::New(env, CgroupAttach));
  exports.Set("cgroupDetach", Napi::Function::New(env, CgroupDetach));
  exports.Set("cgroupQuery", Napi::Function::New(env, CgroupQuery));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
}

}  // namespace sy
