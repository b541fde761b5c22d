// BPF iterators: run an iterator program over the kernel objects it walks and return what it
// wrote. The socket iterators (iter/tcp, iter/udp) walk the network namespace of the task that
// creates the iterator, so the iterator is created inside the namespace asked for.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "netns.h"

namespace sy {

namespace {

// iterRun(progFd, netnsPath?) -> Buffer: an iterator link for the program, one iterator made
// from it (in netnsPath's namespace when given), read to its end; link and iterator are closed.
Napi::Value IterRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArg(env, "iterRun(progFd, netnsPath?)");
    return env.Undefined();
  }
  int link = bpf_link_create(IntArg(info[0]), 0, BPF_TRACE_ITER, nullptr);
  if (link < 0) {
    ThrowErrno(env, "bpf_link_create (iterator)", link);
    return env.Undefined();
  }
  int iter;
  {
    NetnsGuard guard;
    if (info.Length() >= 2 && info[1].IsString()) {
      std::string path = info[1].As<Napi::String>();
      int err = guard.Enter(path);
      if (err != 0) {
        close(link);
        ThrowErrno(env, "iterRun", err, "network namespace " + path);
        return env.Undefined();
      }
    }
    iter = bpf_iter_create(link);
  }
  if (iter < 0) {
    close(link);
    ThrowErrno(env, "bpf_iter_create", iter);
    return env.Undefined();
  }
  std::vector<uint8_t> out;
  uint8_t buf[4096];
  for (;;) {
    ssize_t n = read(iter, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      close(iter);
      close(link);
      ThrowErrno(env, "read (iterator)", err);
      return env.Undefined();
    }
    out.insert(out.end(), buf, buf + n);
  }
  close(iter);
  close(link);
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

}  // namespace

void RegisterIter(Napi::Env env, Napi::Object exports) {
  exports.Set("iterRun", Napi::Function::New(env, IterRun));
}

}  // namespace sy
