/*
 * Reserve real blocks for a WAL segment. A sparse file would defer ENOSPC to the first store
 * into a hole of the mapping, and there the kernel answers with SIGBUS; allocating up front
 * turns a full disk into an error at segment creation.
 */
#include <errno.h>
#include <fcntl.h>

#include "args.h"
#include "errors.h"
#include "native.h"

/* fallocate(fd, offset, length): blocks for [offset, offset + length); extends the size. */
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t offset, length;
  if (!rpe_args(env, info, 3, argv) || !rpe_arg_fd(env, argv[0], "fd", &fd) ||
      !rpe_arg_int(env, argv[1], "offset", 0, RPE_MAX_SAFE, &offset) ||
      !rpe_arg_int(env, argv[2], "length", 1, RPE_MAX_SAFE - offset, &length))
    return NULL;

  /* Mode 0: allocate and extend; unwritten extents read as zeros without writing any. */
  int rc;
  do rc = fallocate(fd, 0, (off_t)offset, (off_t)length);
  while (rc == -1 && errno == EINTR);
  if (rc == 0) return NULL;
  if (errno != EOPNOTSUPP) {
    rpe_throw_errno(env, errno, "fallocate");
    return NULL;
  }

  /*
   * The filesystem has no fallocate (ext2/ext3 files without extents, some network or FUSE
   * mounts): glibc's posix_fallocate writes one byte per block instead. It returns the error
   * number and leaves errno alone.
   */
  do rc = posix_fallocate(fd, (off_t)offset, (off_t)length);
  while (rc == EINTR);
  if (rc != 0) rpe_throw_errno(env, rc, "posix_fallocate");
  return NULL;
}

bool rpe_init_fallocate(napi_env env, napi_value exports) {
  return rpe_export_fn(env, exports, "fallocate", js_fallocate);
}
