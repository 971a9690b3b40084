#include "args.h"

#include <math.h>
#include <stdio.h>

#include "errors.h"

bool rpe_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  CHECK_OR(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), false);
  return true; /* Node-API fills argv[argc..n) with undefined */
}

static const char *type_name(napi_valuetype t) {
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

/* A number as JS prints it, for "Received ..." (integers in full, no exponent). */
static void format_number(double d, char *buf, size_t size) {
  if (d != d)
    snprintf(buf, size, "NaN");
  else if (isinf(d))
    snprintf(buf, size, "%sInfinity", d < 0 ? "-" : "");
  else if (d > -9e18 && d < 9e18 && d == (double)(long long)d)
    snprintf(buf, size, "%lld", (long long)d);
  else
    snprintf(buf, size, "%g", d);
}

bool rpe_arg_int(napi_env env, napi_value value, const char *name, int64_t min, int64_t max, int64_t *out) {
  napi_valuetype type;
  CHECK_OR(env, napi_typeof(env, value, &type), false);
  if (type != napi_number) {
    rpe_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"%s\" argument must be of type number. Received type %s",
                   name, type_name(type));
    return false;
  }
  double d;
  CHECK_OR(env, napi_get_value_double(env, value, &d), false);
  char received[32];
  format_number(d, received, sizeof received);
  /* NaN fails every comparison, so test it first; the int64 cast is defined only within range. */
  if (d != d) {
    rpe_throw_range(env, "The value of \"%s\" is out of range. It must be an integer. Received %s", name, received);
    return false;
  }
  if (d < (double)min || d > (double)max) {
    rpe_throw_range(env, "The value of \"%s\" is out of range. It must be >= %lld && <= %lld. Received %s", name,
                    (long long)min, (long long)max, received);
    return false;
  }
  if ((double)(int64_t)d != d) {
    rpe_throw_range(env, "The value of \"%s\" is out of range. It must be an integer. Received %s", name, received);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

bool rpe_arg_fd(napi_env env, napi_value value, const char *name, int *out) {
  int64_t v;
  if (!rpe_arg_int(env, value, name, 0, INT32_MAX, &v)) return false;
  *out = (int)v;
  return true;
}

bool rpe_arg_flags(napi_env env, napi_value value, const char *name, int *out) {
  return rpe_arg_fd(env, value, name, out); /* same range: non-negative int32 */
}

bool rpe_export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value f;
  CHECK_OR(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f), false);
  CHECK_OR(env, napi_set_named_property(env, exports, name, f), false);
  return true;
}

bool rpe_export_int(napi_env env, napi_value exports, const char *name, int64_t value) {
  napi_value v;
  CHECK_OR(env, napi_create_int64(env, value, &v), false);
  CHECK_OR(env, napi_set_named_property(env, exports, name, v), false);
  return true;
}
