# The addon's one target. Two entry files include it, because node-gyp only reads a file named
# binding.gyp in the directory it builds:
#   binding.gyp (repo root)   development, `npm run build:native`, prebuildify
#   src/native/binding.gyp    a source build inside an app's node_modules, where the package
#                             ships no root binding.gyp: npm's lockfile-driven installs (npm ci)
#                             ignore "gypfile": false and would compile any root binding.gyp
# Paths here are relative to this file.
{
  "targets": [
    {
      "target_name": "rpe_native",
      "sources": ["args.c", "errors.c", "fallocate.c", "lock.c", "mmap.c", "module.c"],
      # NAPI_VERSION=8 (Node >= 12.22): one ABI-stable binary for every Node line we support.
      # _GNU_SOURCE: fallocate(), flock(), statx() and the MAP_/MADV_ constants are outside strict C11.
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "configurations": {
        # node-gyp's common.gypi asks for -O3 in Release; -O2 is plenty for a few syscalls.
        "Release": { "cflags!": ["-O3"], "cflags": ["-O2"] }
      }
    }
  ]
}
