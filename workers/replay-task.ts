/** piscina task: decode one WAL segment into a composable per-pool summary. */
import { decodeSegment, type DecodeTask, type DecodedSegment } from '../src/recovery/decode-segment.js';
import { errorToWire, EngineError, type WireError } from '../src/errors.js';

export default function replaySegment(task: DecodeTask | null): DecodedSegment | { error: WireError } | null {
  // A warm-up call: answering it says this thread is up with the decoder loaded.
  if (task === null) return null;
  try {
    return decodeSegment(task);
  } catch (err) {
    // Errors lose class and code across threads: send the wire form.
    return { error: errorToWire(err instanceof EngineError ? err : new EngineError('ERR_CORRUPT_WAL', `${task.file}: ${(err as Error).message}`, { details: { file: task.file, offset: 0 } })) };
  }
}
