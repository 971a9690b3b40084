/* Each concern adds its functions and constants to the exports object; module.c calls them all. */
#ifndef RPE_NATIVE_H
#define RPE_NATIVE_H

#include <stdbool.h>
#include <node_api.h>

bool rpe_init_lock(napi_env env, napi_value exports);
bool rpe_init_mmap(napi_env env, napi_value exports);
bool rpe_init_fallocate(napi_env env, napi_value exports);

#endif
