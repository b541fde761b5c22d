// Runs a kernel call inside another network namespace, on this thread only.
#pragma once

#include <napi.h>

#include <string>

namespace sy {

// Enters the network namespace at `path` (e.g. /run/netns/NAME) for the lifetime of the
// guard and returns the calling thread to its own namespace afterwards. setns() moves only
// the calling thread, and all addon calls are synchronous on the JS thread, so nothing
// else observes the switch.
class NetnsGuard {
 public:
  NetnsGuard() = default;
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  // Returns 0 or a negative errno.
  int Enter(const std::string& path);

 private:
  int saved_fd_ = -1;
};

// Options shared by interface-level calls: { ifname | ifindex, netns? }.
struct InterfaceTarget {
  std::string ifname;
  int ifindex = 0;
  std::string netns;
};

// Reads { ifname?, ifindex?, netns? } from `opts`; throws on bad arguments (returns false).
bool ReadInterfaceTarget(Napi::Env env, const Napi::Object& opts, InterfaceTarget* out);

// Enters the target's namespace (if any) and resolves its ifindex. Throws a BpfError named
// after `op` and returns false when the namespace or the interface does not exist.
bool EnterAndResolve(Napi::Env env, const std::string& op, InterfaceTarget* target,
                     NetnsGuard* guard);

}  // namespace sy
