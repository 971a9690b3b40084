/*
 * mmap/munmap/msync/madvise over ArrayBuffers.
 *
 * A mapping is an external ArrayBuffer over the mapped pages. A small heap struct is both the
 * ArrayBuffer's finalize hint and its napi_wrap pointer, so munmap(), msync() and madvise()
 * can find it again. Two owners hold it (refs): the backing store's finalizer, which unmaps
 * if munmap() was never called, and the wrap's finalizer, which runs when the ArrayBuffer
 * object is collected. Either may run first, so whichever runs last frees it. Both run on the
 * JS thread of the env that made the mapping (Node defers buffer finalizers to it), as do
 * the functions below, so the fields need no atomics.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "native.h"

typedef struct {
  void *addr;
  size_t length;
  bool unmapped;
  int refs;
} mapping;

/* Marks ArrayBuffers made here: napi_wrap's slot is shared by every addon, the tag is ours. */
static const napi_type_tag kMappingTag = {0x7270652d6e617469ULL, 0x76652d6d6d617001ULL};

static void release(mapping *m) {
  if (--m->refs == 0) free(m);
}

/* The backing store is gone: nothing can see the pages any more. */
static void on_backing_store_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping *m = hint;
  if (!m->unmapped) {
    m->unmapped = true;
    munmap(m->addr, m->length);
  }
  release(m);
}

static void on_object_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release(data);
}

static long page_size(void) { return sysconf(_SC_PAGESIZE); }

/* mmap(fd, length, prot, flags, offset) -> ArrayBuffer over the mapped pages. */
static napi_value js_mmap(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int fd, prot, flags;
  int64_t length, offset;
  if (!rpe_args(env, info, 5, argv) || !rpe_arg_fd(env, argv[0], "fd", &fd) ||
      !rpe_arg_int(env, argv[1], "length", 1, RPE_MAX_SAFE, &length) ||
      !rpe_arg_flags(env, argv[2], "prot", &prot) || !rpe_arg_flags(env, argv[3], "flags", &flags) ||
      !rpe_arg_int(env, argv[4], "offset", 0, RPE_MAX_SAFE - length, &offset))
    return NULL;
  /*
   * Only what the exported constants make. With no address argument, MAP_FIXED would map page 0
   * or over V8's own heap, and a mapping without PROT_READ faults on the first look.
   */
  if (prot != PROT_READ && prot != (PROT_READ | PROT_WRITE)) {
    rpe_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"prot\" argument must be PROT_READ or PROT_READ | PROT_WRITE. Received %d", prot);
    return NULL;
  }
  if (flags != MAP_SHARED && flags != MAP_PRIVATE) {
    rpe_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"flags\" argument must be MAP_SHARED or MAP_PRIVATE. Received %d", flags);
    return NULL;
  }
  if (offset % page_size() != 0) {
    rpe_throw_range(env, "The value of \"offset\" is out of range. It must be a multiple of PAGESIZE (%ld). Received %lld",
                    page_size(), (long long)offset);
    return NULL;
  }

  /*
   * Touching a page wholly past the end of a file raises SIGBUS, which kills the process: refuse
   * such a mapping here, where it is still an error. (Truncating the file later is the
   * caller's to avoid.) statx, not fstat: fstat is a GLIBC_2.33 symbol, and a prebuild must
   * load wherever Node does (glibc 2.28).
   */
  struct statx st;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &st) != 0) {
    rpe_throw_errno(env, errno, "statx");
    return NULL;
  }
  if (S_ISREG(st.stx_mode) && offset + length > (int64_t)st.stx_size) {
    rpe_throw_range(env, "The mapping [%lld, %lld) is out of range: the file has %lld bytes", (long long)offset,
                    (long long)(offset + length), (long long)st.stx_size);
    return NULL;
  }

  void *addr = mmap(NULL, (size_t)length, prot, flags, fd, (off_t)offset);
  if (addr == MAP_FAILED) {
    rpe_throw_errno(env, errno, "mmap");
    return NULL;
  }
  mapping *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)length);
    rpe_throw_errno(env, ENOMEM, "mmap");
    return NULL;
  }
  *m = (mapping){.addr = addr, .length = (size_t)length, .unmapped = false, .refs = 1};

  napi_value ab;
  napi_status status = napi_create_external_arraybuffer(env, addr, (size_t)length, on_backing_store_free, m, &ab);
  if (status != napi_ok) {
    /* No ArrayBuffer, so no finalizer will run: undo by hand. */
    munmap(addr, (size_t)length);
    free(m);
    if (status == napi_no_external_buffers_allowed) {
      /* A V8 sandbox build (Electron, or a Node built with it) keeps all ArrayBuffer memory inside the sandbox. */
      napi_throw_error(env, "ERR_NO_EXTERNAL_BUFFERS",
                       "This runtime does not allow external ArrayBuffers (V8 sandbox): memory-mapped files are unavailable");
      return NULL;
    }
    rpe_throw_status(env, status, "napi_create_external_arraybuffer");
    return NULL;
  }
  /* From here the backing store's finalizer owns the mapping; on failure it unmaps at GC. */
  CHECK(env, napi_type_tag_object(env, ab, &kMappingTag));
  CHECK(env, napi_wrap(env, ab, m, on_object_free, NULL, NULL));
  m->refs++; /* the wrap's finalizer runs at a later GC, never before this line */
  return ab;
}

/* The mapping behind an ArrayBuffer made by js_mmap, or NULL after throwing. */
static mapping *arg_mapping(napi_env env, napi_value value) {
  bool is_ab = false, ours = false;
  CHECK(env, napi_is_arraybuffer(env, value, &is_ab));
  if (is_ab) CHECK(env, napi_check_object_type_tag(env, value, &kMappingTag, &ours));
  if (!ours) {
    rpe_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"arrayBuffer\" argument must be an ArrayBuffer returned by mmap()%s",
                   is_ab ? ". Received an ArrayBuffer that is not a mapping" : "");
    return NULL;
  }
  void *m = NULL;
  CHECK(env, napi_unwrap(env, value, &m));
  return m;
}

/* munmap(arrayBuffer): detach first, so no view can reach the pages afterwards. Idempotent. */
static napi_value js_munmap(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!rpe_args(env, info, 1, argv)) return NULL;
  mapping *m = arg_mapping(env, argv[0]);
  if (m == NULL) return NULL;
  if (m->unmapped) return NULL;

  bool detached = false;
  CHECK(env, napi_is_detached_arraybuffer(env, argv[0], &detached));
  /*
   * Detached by someone else (ArrayBuffer.prototype.transfer): the pages now live in another
   * ArrayBuffer, whose collection unmaps them. Unmapping here would leave it dangling.
   */
  if (detached) return NULL;

  CHECK(env, napi_detach_arraybuffer(env, argv[0]));
  /* Detaching may free the backing store; its finalizer is deferred, but check anyway. */
  if (m->unmapped) return NULL;
  m->unmapped = true;
  if (munmap(m->addr, m->length) != 0) rpe_throw_errno(env, errno, "munmap");
  return NULL;
}

/*
 * Validates (arrayBuffer, offset, length) against the mapping and returns the page-aligned
 * range covering it: msync and madvise want a page-aligned start, so offset is rounded down
 * and length grows by the same amount.
 */
static bool arg_range(napi_env env, napi_value *argv, char **start, size_t *len) {
  if (arg_mapping(env, argv[0]) == NULL) return false;
  bool detached = false;
  CHECK_OR(env, napi_is_detached_arraybuffer(env, argv[0], &detached), false);
  if (detached) {
    rpe_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"arrayBuffer\" argument is detached: the mapping was unmapped");
    return false;
  }
  void *data;
  size_t size;
  CHECK_OR(env, napi_get_arraybuffer_info(env, argv[0], &data, &size), false);
  int64_t offset, length;
  if (!rpe_arg_int(env, argv[1], "offset", 0, (int64_t)size, &offset) ||
      !rpe_arg_int(env, argv[2], "length", 0, (int64_t)size - offset, &length))
    return false;
  int64_t aligned = offset & ~(int64_t)(page_size() - 1);
  *start = (char *)data + aligned; /* data is page-aligned: mmap returns whole pages */
  *len = (size_t)(length + (offset - aligned));
  return true;
}

/* msync(arrayBuffer, offset, length, flags): MS_SYNC waits for the pages to reach the file. */
static napi_value js_msync(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char *start;
  size_t len;
  int flags;
  if (!rpe_args(env, info, 4, argv) || !arg_range(env, argv, &start, &len) ||
      !rpe_arg_flags(env, argv[3], "flags", &flags))
    return NULL;
  if (msync(start, len, flags) != 0) rpe_throw_errno(env, errno, "msync");
  return NULL;
}

/* madvise(arrayBuffer, offset, length, advice) */
static napi_value js_madvise(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char *start;
  size_t len;
  int advice;
  if (!rpe_args(env, info, 4, argv) || !arg_range(env, argv, &start, &len) ||
      !rpe_arg_flags(env, argv[3], "advice", &advice))
    return NULL;
  /* Not every advice is advice: MADV_REMOVE punches holes in the file, MADV_HWPOISON kills pages. */
  if (advice != MADV_NORMAL && advice != MADV_RANDOM && advice != MADV_SEQUENTIAL && advice != MADV_WILLNEED &&
      advice != MADV_DONTNEED) {
    rpe_throw_type(env, "ERR_INVALID_ARG_VALUE",
                   "The \"advice\" argument must be MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED or MADV_DONTNEED. Received %d",
                   advice);
    return NULL;
  }
  if (madvise(start, len, advice) != 0) rpe_throw_errno(env, errno, "madvise");
  return NULL;
}

bool rpe_init_mmap(napi_env env, napi_value exports) {
  return rpe_export_fn(env, exports, "mmap", js_mmap) && rpe_export_fn(env, exports, "munmap", js_munmap) &&
         rpe_export_fn(env, exports, "msync", js_msync) && rpe_export_fn(env, exports, "madvise", js_madvise) &&
         rpe_export_int(env, exports, "PROT_READ", PROT_READ) &&
         rpe_export_int(env, exports, "PROT_WRITE", PROT_WRITE) &&
         rpe_export_int(env, exports, "MAP_SHARED", MAP_SHARED) &&
         rpe_export_int(env, exports, "MAP_PRIVATE", MAP_PRIVATE) && rpe_export_int(env, exports, "MS_SYNC", MS_SYNC) &&
         rpe_export_int(env, exports, "MS_ASYNC", MS_ASYNC) &&
         rpe_export_int(env, exports, "MS_INVALIDATE", MS_INVALIDATE) &&
         rpe_export_int(env, exports, "MADV_NORMAL", MADV_NORMAL) &&
         rpe_export_int(env, exports, "MADV_RANDOM", MADV_RANDOM) &&
         rpe_export_int(env, exports, "MADV_SEQUENTIAL", MADV_SEQUENTIAL) &&
         rpe_export_int(env, exports, "MADV_WILLNEED", MADV_WILLNEED) &&
         rpe_export_int(env, exports, "MADV_DONTNEED", MADV_DONTNEED) &&
         rpe_export_int(env, exports, "PAGESIZE", page_size());
}
