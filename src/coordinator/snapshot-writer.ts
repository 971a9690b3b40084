import { Piscina } from 'piscina';
import { errorFromWire, type WireError } from '../errors.js';
import type { SnapshotJob } from '../protocol.js';
import { workerEntry } from '../worker-path.js';

/**
 * Writes the shards' snapshot jobs on one pool thread, off both the coordinator's and the
 * shards' paths: encode, write, fsync, rename, read back, retire what it covers.
 */
export class SnapshotWriter {
  readonly #dir: string;
  readonly #archive: boolean;
  readonly #onError: (shard: number, err: unknown) => void;
  #pool: Piscina | undefined;
  /** The latest job per shard, settled either way (a restart waits for it). */
  readonly #inFlight = new Map<number, Promise<void>>();

  constructor(dir: string, archive: boolean, onError: (shard: number, err: unknown) => void) {
    this.#dir = dir;
    this.#archive = archive;
    this.#onError = onError;
  }

  /** Resolves with the written file's path. */
  write(job: SnapshotJob): Promise<string> {
    this.#pool ??= new Piscina({ filename: workerEntry('snapshot-task'), minThreads: 0, maxThreads: 1, idleTimeout: 1000 });
    const transfer: ArrayBuffer[] = [];
    for (const p of job.body.pools) for (const a of [p.weights, p.quantities, p.drawn]) if (a instanceof Float64Array) transfer.push(a.buffer as ArrayBuffer);
    const task = { dir: this.#dir, body: job.body, retention: job.retention, archive: this.#archive };
    const run = this.#pool.run(task, { transferList: transfer }).then((r: { error?: WireError; path?: string }) => {
      if (r.error) throw errorFromWire(r.error);
      return r.path!;
    });
    const shard = job.body.shard;
    this.#inFlight.set(
      shard,
      run.then(
        () => {},
        () => {},
      ),
    );
    return run.catch((err: unknown) => {
      this.#onError(shard, err);
      throw err;
    });
  }

  /** Resolves once the shard's latest job has settled. */
  settled(shard: number): Promise<void> {
    return this.#inFlight.get(shard) ?? Promise.resolve();
  }

  async close(): Promise<void> {
    await Promise.all(this.#inFlight.values());
    await this.#pool?.close();
  }
}
