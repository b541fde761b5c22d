#include "errors.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sy {

namespace {

// Per thread: an object loads on a worker thread while the main thread may capture its own calls.
thread_local LogCapture* current_capture = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  char stack_buf[1024];
  int needed = vsnprintf(stack_buf, sizeof(stack_buf), format, copy);
  va_end(copy);
  std::string line;
  if (needed >= 0 && static_cast<size_t>(needed) < sizeof(stack_buf)) {
    line.assign(stack_buf, needed);
  } else if (needed >= 0) {
    // The verifier log arrives as one huge line; format it again into a heap buffer.
    line.resize(static_cast<size_t>(needed) + 1);
    vsnprintf(line.data(), line.size(), format, args);
    line.resize(static_cast<size_t>(needed));
  }
  if (current_capture != nullptr) {
    const_cast<std::string&>(current_capture->text()).append(line);
  }
  // Echoing is opt-in: warnings already reach the caller inside the errors they explain.
  if (getenv("SWITCHYARD_LIBBPF_DEBUG") != nullptr && (level != LIBBPF_DEBUG || current_capture == nullptr)) {
    fputs(line.c_str(), stderr);
  }
  return 0;
}

}  // namespace

LogCapture::LogCapture() : previous_(current_capture) { current_capture = this; }

LogCapture::~LogCapture() {
  current_capture = previous_;
  if (previous_ != nullptr) const_cast<std::string&>(previous_->text()).append(text_);
}

void InstallLibbpfLogger() { libbpf_set_print(LibbpfPrint); }

Napi::Error ErrnoError(Napi::Env env, const std::string& op, int err, const std::string& detail,
                       const std::string& log) {
  int code = err < 0 ? -err : err;
  const char* name = strerrorname_np(code);
  std::string message = op + ": " + strerror(code);
  if (!detail.empty()) message += " (" + detail + ")";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("name", "BpfError");
  obj.Set("op", op);
  obj.Set("errno", code);
  obj.Set("code", name != nullptr ? name : "EUNKNOWN");
  if (!detail.empty()) obj.Set("detail", detail);
  if (!log.empty()) obj.Set("libbpfLog", log);
  return error;
}

void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail,
                const std::string& log) {
  ErrnoError(env, op, err, detail, log).ThrowAsJavaScriptException();
}

void ThrowArg(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

}  // namespace sy
