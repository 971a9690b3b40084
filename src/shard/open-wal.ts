import type { EngineError } from '../errors.js';
import type { ShardConfig } from '../protocol.js';
import { realStorage } from '../storage/real-storage.js';
import type { Storage } from '../storage/storage.js';
import { FileWalWriter } from '../wal/file-writer.js';
import { MmapWalWriter } from '../wal/mmap-writer.js';
import { NullWalWriter, type WalWriter } from '../wal/writer.js';

/** The WAL writer a shard's config asks for, its first segment open. */
export function openWalWriter(config: ShardConfig, onBackgroundError: (err: EngineError) => void, storage: Storage = realStorage): WalWriter {
  if (config.wal === 'none') return new NullWalWriter();
  const opts = {
    storage,
    dir: config.dir!,
    shard: config.shard,
    epoch: config.epoch,
    firstSeq: config.firstSeq,
    segmentBytes: config.segmentBytes,
    replicated: config.replicated,
    // Under replication the stream makes a draw durable; the local copy syncs in the background.
    sync: config.sync === 'replicated' ? ('interval' as const) : config.sync,
    syncIntervalMs: config.syncIntervalMs,
    onBackgroundError,
  };
  return config.wal === 'mmap' ? new MmapWalWriter(opts).start() : new FileWalWriter(opts).start();
}
