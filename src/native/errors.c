#include "errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

/*
 * Our own table: strerrorname_np needs glibc 2.32, and the messages are libuv's (lowercase),
 * so an error from here reads like one from node:fs. First match wins, which matters where
 * Linux gives two names one number (EWOULDBLOCK = EAGAIN, EOPNOTSUPP = ENOTSUP): the name
 * is the one node:fs would report.
 */
static const struct {
  int err;
  const char *name;
  const char *message;
} kErrnos[] = {
  {EPERM, "EPERM", "operation not permitted"},
  {ENOENT, "ENOENT", "no such file or directory"},
  {EINTR, "EINTR", "interrupted system call"},
  {EIO, "EIO", "i/o error"},
  {ENXIO, "ENXIO", "no such device or address"},
  {EBADF, "EBADF", "bad file descriptor"},
  {EAGAIN, "EAGAIN", "resource temporarily unavailable"},
  {ENOMEM, "ENOMEM", "not enough memory"},
  {EACCES, "EACCES", "permission denied"},
  {EFAULT, "EFAULT", "bad address in system call argument"},
  {EBUSY, "EBUSY", "resource busy or locked"},
  {EEXIST, "EEXIST", "file already exists"},
  {ENODEV, "ENODEV", "no such device"},
  {ENOTDIR, "ENOTDIR", "not a directory"},
  {EISDIR, "EISDIR", "illegal operation on a directory"},
  {EINVAL, "EINVAL", "invalid argument"},
  {ENFILE, "ENFILE", "file table overflow"},
  {EMFILE, "EMFILE", "too many open files"},
  {ETXTBSY, "ETXTBSY", "text file is busy"},
  {EFBIG, "EFBIG", "file too large"},
  {ENOSPC, "ENOSPC", "no space left on device"},
  {ESPIPE, "ESPIPE", "invalid seek"},
  {EROFS, "EROFS", "read-only file system"},
  {EDEADLK, "EDEADLK", "resource deadlock avoided"},
  {ENOLCK, "ENOLCK", "no locks available"},
  {ENOSYS, "ENOSYS", "function not implemented"},
  {ENOTSUP, "ENOTSUP", "operation not supported"}, /* Linux: also EOPNOTSUPP, named as libuv does */
  {EOPNOTSUPP, "EOPNOTSUPP", "operation not supported"},
  {EOVERFLOW, "EOVERFLOW", "value too large for defined data type"},
  {EDQUOT, "EDQUOT", "disk quota exceeded"},
  {ESTALE, "ESTALE", "stale file handle"},
  {ECANCELED, "ECANCELED", "operation canceled"},
};

static int find(int err) {
  for (size_t i = 0; i < sizeof kErrnos / sizeof kErrnos[0]; i++)
    if (kErrnos[i].err == err) return (int)i;
  return -1;
}

/* Sets obj[key] = value; failures here only lose a property, never the error being thrown. */
static void set_prop(napi_env env, napi_value obj, const char *key, napi_value value) {
  if (value != NULL) napi_set_named_property(env, obj, key, value);
}

void rpe_throw_errno(napi_env env, int err, const char *syscall) {
  int i = find(err);
  char unknown[48];
  const char *name = "UNKNOWN", *text = unknown;
  if (i >= 0) {
    name = kErrnos[i].name;
    text = kErrnos[i].message;
  } else {
    snprintf(unknown, sizeof unknown, "unknown error %d", err);
  }
  char message[160];
  snprintf(message, sizeof message, "%s: %s, %s", name, text, syscall);

  napi_value code, msg, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok) {
    napi_throw_error(env, name, message); /* best effort when even creating failed */
    return;
  }
  /* Negative, as libuv and node:fs report it: util.getSystemErrorName(e.errno) works. */
  if (napi_create_int32(env, -err, &errno_value) != napi_ok) errno_value = NULL;
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok) syscall_value = NULL;
  set_prop(env, error, "errno", errno_value);
  set_prop(env, error, "syscall", syscall_value);
  napi_throw(env, error);
}

void rpe_throw_type(napi_env env, const char *code, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_type_error(env, code, message);
}

void rpe_throw_range(napi_env env, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

void rpe_throw_status(napi_env env, napi_status status, const char *expr) {
  /* Read the error info first: any further Node-API call overwrites it. */
  const napi_extended_error_info *info = NULL;
  const char *why = NULL;
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL) why = info->error_message;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  char message[256];
  snprintf(message, sizeof message, "Node-API call failed (status %d: %s): %s", (int)status,
           why != NULL ? why : "no details", expr);
  napi_throw_error(env, "ERR_NAPI", message);
}
