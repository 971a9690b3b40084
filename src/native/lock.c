/* flock(2) for the data directory's LOCK file: the kernel drops it when the process dies. */
#include <errno.h>
#include <sys/file.h>

#include "args.h"
#include "errors.h"
#include "native.h"

/* flock(fd, operation) -> true when taken (or released); false for LOCK_NB on a held lock. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, op;
  if (!rpe_args(env, info, 2, argv) || !rpe_arg_fd(env, argv[0], "fd", &fd) ||
      !rpe_arg_flags(env, argv[1], "operation", &op))
    return NULL;

  int rc;
  /* A blocking LOCK_EX can be interrupted by a signal handler; that is not a failure. */
  do rc = flock(fd, op);
  while (rc == -1 && errno == EINTR);

  bool taken = rc == 0;
  if (!taken && !(errno == EWOULDBLOCK && (op & LOCK_NB))) {
    rpe_throw_errno(env, errno, "flock");
    return NULL;
  }
  napi_value result;
  CHECK(env, napi_get_boolean(env, taken, &result));
  return result;
}

bool rpe_init_lock(napi_env env, napi_value exports) {
  return rpe_export_fn(env, exports, "flock", js_flock) && rpe_export_int(env, exports, "LOCK_SH", LOCK_SH) &&
         rpe_export_int(env, exports, "LOCK_EX", LOCK_EX) && rpe_export_int(env, exports, "LOCK_NB", LOCK_NB) &&
         rpe_export_int(env, exports, "LOCK_UN", LOCK_UN);
}
