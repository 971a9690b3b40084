import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { EngineError, messageOf, storageError } from './errors.js';
import { nativeBinding, nativeLoadError } from './native/index.js';

/*
 * One engine per data directory, enforced by the kernel. The lock is flock(LOCK_EX | LOCK_NB)
 * on dir/LOCK, held on an open descriptor for the engine's life: the kernel drops it when the
 * process dies, so there is nothing stale to take over and pid reuse does not matter. The
 * file itself is never deleted (deleting a locked file lets a second opener lock a new inode
 * while the first still holds the old one); the pid written in it is for humans only.
 *
 * A second lock goes with it: a Unix socket in Linux's abstract namespace named after the
 * directory's device and inode, which the kernel also releases when the process dies. It is
 * the whole lock where the native addon cannot load (no prebuild fits, no compiler), and keeps
 * such a process and one with the addon apart; it is only seen within one network namespace,
 * where flock covers every process on the machine that sees the file.
 */

/** Releases the lock; idempotent. */
export type ReleaseLock = () => void;

function createDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const full = storageError(err, `options.dir ${JSON.stringify(dir)} cannot be created`);
    if (full.code === 'ERR_DISK_FULL') throw full;
    throw new EngineError('ERR_INVALID_CONFIG', `options.dir ${JSON.stringify(dir)} cannot be created: ${messageOf(err)}`, {
      cause: err,
      details: { option: 'dir', value: dir },
    });
  }
}

function locked(dir: string, path: string): EngineError {
  let owner = '';
  try {
    owner = readFileSync(path, 'utf8').trim();
  } catch {
    // unreadable: say less
  }
  const pid = /^\d+$/.test(owner) ? Number(owner) : undefined;
  const who = pid === undefined ? 'another engine' : pid === process.pid ? `another engine in this process (${pid})` : `process ${pid}`;
  return new EngineError('ERR_DIR_LOCKED', `${dir} is locked by ${who}`, { details: { dir, pid } });
}

/** Take dir/LOCK for this engine; throws ERR_DIR_LOCKED when another engine holds it. */
export async function acquireDirLock(dir: string): Promise<ReleaseLock> {
  createDir(dir);
  const path = join(dir, 'LOCK');
  let fd: number;
  try {
    fd = openSync(path, 'a+'); // never truncated before we own it: the owner's pid stays readable
  } catch (err) {
    throw storageError(err, `cannot open ${path}`);
  }
  let fallback: Server | undefined;
  try {
    const flocked = nativeLoadError() === undefined;
    if (flocked) {
      const native = nativeBinding();
      if (!native.flock(fd, native.LOCK_EX | native.LOCK_NB)) throw locked(dir, path);
    }
    // Taken with or without flock, so that a process without the addon and one with it still
    // keep each other out. With flock held, a socket that cannot be created is not needed.
    fallback = await abstractSocketLock(dir, path).catch((err: unknown) => {
      if (flocked && !(err instanceof EngineError)) return undefined;
      throw err;
    });
  } catch (err) {
    closeSync(fd);
    fallback?.close();
    if (err instanceof EngineError) throw err;
    throw storageError(err, `cannot lock ${path}`);
  }
  try {
    // For humans only (ls, cat): a full disk must not stop the engine from opening here.
    ftruncateSync(fd, 0);
    writeSync(fd, String(process.pid));
  } catch {
    // the lock is held all the same
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    fallback?.close();
    closeSync(fd); // drops the flock
  };
}

/** The fallback lock: listen on an abstract Unix socket named after the directory. */
function abstractSocketLock(dir: string, path: string): Promise<Server> {
  const st = statSync(dir);
  const name = `\0reward-pool-engine/lock/${st.dev}:${st.ino}`;
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? locked(dir, path) : err));
    server.listen(name, () => {
      server.unref(); // the lock never keeps the process alive
      resolve(server);
    });
  });
}
