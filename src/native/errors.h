/*
 * Errors thrown into JavaScript, and the CHECK macro that wraps every Node-API call.
 *
 * OS failures become an Error shaped like Node's own fs errors (code = errno name, errno =
 * negative errno as libuv reports it, syscall), so the TypeScript layer maps them to
 * EngineError codes in one place. Argument errors carry Node's ERR_* codes.
 */
#ifndef RPE_ERRORS_H
#define RPE_ERRORS_H

#include <stdbool.h>
#include <node_api.h>

/* Throws (unless an exception is already pending) and returns `ret` from the caller. */
#define CHECK_OR(env, call, ret)                                \
  do {                                                          \
    napi_status rpe_status_ = (call);                           \
    if (rpe_status_ != napi_ok) {                               \
      rpe_throw_status((env), rpe_status_, #call);              \
      return ret;                                               \
    }                                                           \
  } while (0)

/* For napi_callback bodies: NULL tells Node-API "no value, an exception is pending". */
#define CHECK(env, call) CHECK_OR(env, call, NULL)

/* A failed Node-API call. Keeps an exception already pending (it says more than we can). */
void rpe_throw_status(napi_env env, napi_status status, const char *expr);

/* `ENOSPC: no space left on device, fallocate` with code, errno and syscall set. */
void rpe_throw_errno(napi_env env, int err, const char *syscall);

/* TypeError with code ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE; printf-style message. */
void rpe_throw_type(napi_env env, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* RangeError with code ERR_OUT_OF_RANGE; printf-style message. */
void rpe_throw_range(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
