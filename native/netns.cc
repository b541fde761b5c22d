#include "netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"

namespace sy {

NetnsGuard::~NetnsGuard() {
  if (saved_fd_ >= 0) {
    // Returning to our own namespace cannot fail for a valid fd we opened ourselves.
    setns(saved_fd_, CLONE_NEWNET);
    close(saved_fd_);
  }
}

int NetnsGuard::Enter(const std::string& path) {
  int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved < 0) return -errno;
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = -errno;
    close(saved);
    return err;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = -errno;
    close(target);
    close(saved);
    return err;
  }
  close(target);
  saved_fd_ = saved;
  return 0;
}

bool ReadInterfaceTarget(Napi::Env env, const Napi::Object& opts, InterfaceTarget* out) {
  if (opts.Has("ifname") && opts.Get("ifname").IsString()) {
    out->ifname = opts.Get("ifname").As<Napi::String>();
  } else if (opts.Has("ifindex") && opts.Get("ifindex").IsNumber()) {
    out->ifindex = opts.Get("ifindex").As<Napi::Number>().Int32Value();
  } else {
    ThrowArg(env, "an interface is needed: { ifname } or { ifindex }");
    return false;
  }
  if (opts.Has("netns") && opts.Get("netns").IsString()) {
    out->netns = opts.Get("netns").As<Napi::String>();
  }
  return true;
}

bool EnterAndResolve(Napi::Env env, const std::string& op, InterfaceTarget* target,
                     NetnsGuard* guard) {
  if (!target->netns.empty()) {
    int err = guard->Enter(target->netns);
    if (err != 0) {
      ThrowErrno(env, op, err, "network namespace " + target->netns);
      return false;
    }
  }
  if (target->ifindex == 0) {
    unsigned int index = if_nametoindex(target->ifname.c_str());
    if (index == 0) {
      ThrowErrno(env, op, errno == 0 ? ENODEV : errno, "interface " + target->ifname);
      return false;
    }
    target->ifindex = static_cast<int>(index);
  }
  return true;
}

}  // namespace sy
