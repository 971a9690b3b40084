/*
 * rpe_native: the engine's own small addon (flock, mmap family, fallocate) on Node-API only,
 * so one binary loads on every Node line from 20 on. NAPI_MODULE_INIT makes it context-aware:
 * this runs once per env (main thread and every worker), and nothing here is shared between
 * envs except constants.
 */
#include "native.h"

NAPI_MODULE_INIT() {
  if (!rpe_init_lock(env, exports) || !rpe_init_mmap(env, exports) || !rpe_init_fallocate(env, exports))
    return NULL; /* an exception is pending: require() throws it */
  return exports;
}
