/*
 * Argument checks shared by every function. Each returns false after throwing a coded error
 * (ERR_INVALID_ARG_TYPE for a wrong JS type, ERR_OUT_OF_RANGE for a bad number), so a caller
 * only writes `if (!rpe_arg_...) return NULL;`.
 */
#ifndef RPE_ARGS_H
#define RPE_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>

/* The largest integer a JS number holds exactly (Number.MAX_SAFE_INTEGER). */
#define RPE_MAX_SAFE 9007199254740991LL

/* Fetches exactly `n` arguments (missing ones are undefined and fail their own check). */
bool rpe_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);

/* An integer number within [min, max]. */
bool rpe_arg_int(napi_env env, napi_value value, const char *name, int64_t min, int64_t max, int64_t *out);

/* A file descriptor: an integer within [0, INT32_MAX]. */
bool rpe_arg_fd(napi_env env, napi_value value, const char *name, int *out);

/* A set of flag bits: an integer within [0, INT32_MAX]. */
bool rpe_arg_flags(napi_env env, napi_value value, const char *name, int *out);

/* Registers a function as exports[name]. */
bool rpe_export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn);

/* Registers an integer constant as exports[name]. */
bool rpe_export_int(napi_env env, napi_value exports, const char *name, int64_t value);

#endif
