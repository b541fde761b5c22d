// Typed errors for the JavaScript side, and capture of libbpf's log.
#pragma once

#include <napi.h>

#include <string>

namespace sy {

// While alive, collects every line libbpf prints, so that a failing call can hand the
// log (a verifier rejection, a BTF mismatch) to JavaScript instead of losing it on stderr.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  LogCapture* previous_;
};

// Installs the libbpf print callback once, at module load.
void InstallLibbpfLogger();

// An Error carrying name "BpfError", the operation, a positive errno with its symbolic code, and
// libbpf's log when one was captured, for a promise to reject with.
Napi::Error ErrnoError(Napi::Env env, const std::string& op, int err, const std::string& detail = "",
                       const std::string& log = "");

// Throws an Error carrying name "BpfError", the operation, a positive errno with its
// symbolic code, and libbpf's log when one was captured. `err` may be negative (libbpf style).
void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail = "",
                const std::string& log = "");

// Throws a TypeError for a bad argument.
void ThrowArg(Napi::Env env, const std::string& message);

}  // namespace sy
