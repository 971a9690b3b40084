/**
 * Heap bytes allocated, and garbage collections, on the calling thread (the coordinator)
 * between start() and stop().
 *
 * Node has no cumulative "bytes allocated" counter (v8.getHeapStatistics() reports the heap in
 * use, which drops at every GC). v8.GCProfiler records the used heap before and after every GC
 * of this isolate, so what was allocated is what was used at the end, minus what was used at
 * the start, plus what every GC freed:
 *
 *   allocated = (used_end - used_start) + sum over GCs i of (used_before_i - used_after_i)
 *
 * which is the sum of the growth between GCs: (before_1 - used_start) + (before_2 - after_1) +
 * ... + (used_end - after_n). Only the V8 heap is counted: ArrayBuffer backing stores (such as
 * the transferred Uint16Array of a DrawBatch) live outside it. Worker threads have isolates of
 * their own and are not counted. `calibrate()` checks the method on allocations of known size.
 */
import { GCProfiler, getHeapStatistics } from 'node:v8';

export interface HeapSample {
  /** Bytes allocated on this thread's V8 heap during the window. */
  allocatedBytes: number;
  /** GC events (scavenges, mark-compacts, ...) of this thread during the window. */
  gcCount: number;
  /** Sum of their pauses, milliseconds. */
  gcPauseMs: number;
}

export class HeapProbe {
  #profiler: GCProfiler | undefined;
  #usedStart = 0;

  start(): void {
    const profiler = new GCProfiler();
    this.#usedStart = getHeapStatistics().used_heap_size;
    profiler.start();
    this.#profiler = profiler;
  }

  stop(): HeapSample {
    const usedEnd = getHeapStatistics().used_heap_size;
    const profiler = this.#profiler;
    if (profiler === undefined) throw new Error('HeapProbe.stop() without start()');
    this.#profiler = undefined;
    const result = profiler.stop();
    let allocated = 0;
    let afterPrevious = this.#usedStart;
    let pauseUs = 0;
    for (const gc of result.statistics) {
      allocated += gc.beforeGC.heapStatistics.usedHeapSize - afterPrevious;
      afterPrevious = gc.afterGC.heapStatistics.usedHeapSize;
      pauseUs += gc.cost;
    }
    allocated += usedEnd - afterPrevious;
    return { allocatedBytes: Math.max(0, allocated), gcCount: result.statistics.length, gcPauseMs: pauseUs / 1000 };
  }
}

/** Measure `fn` once. */
export function measureHeap<T>(fn: () => T): HeapSample & { value: T } {
  const probe = new HeapProbe();
  probe.start();
  const value = fn();
  return { ...probe.stop(), value };
}

export interface Calibration {
  objects: number;
  /** Expected size of one `{ a, b }` object: 3 header words + 2 in-object fields. */
  expectedBytes: number;
  /** Measured per object while all of them stay reachable (so no GC can free them). */
  retainedBytes: number;
  /** Measured per object while each becomes garbage at once (many scavenges in between). */
  garbageBytes: number;
  /** GCs during the garbage run: the method had to sum across that many. */
  garbageGcs: number;
  /** Measured for an empty window (the probe's own cost). */
  emptyWindowBytes: number;
  /** Largest relative error of the two runs against expectedBytes. */
  error: number;
}

// Module-level sink so the optimizer cannot remove the allocations.
const sink: unknown[] = [undefined];

function allocateKept(keep: unknown[], n: number): void {
  for (let i = 0; i < n; i++) keep[i] = { a: i, b: i };
}

function allocateGarbage(n: number): void {
  for (let i = 0; i < n; i++) sink[0] = { a: i, b: i };
}

/**
 * Validate the method on a known allocation: `objects` objects `{ a: i, b: i }`. With pointer
 * compression (off in Node's official builds) a tagged word is 4 bytes instead of 8. Both loops
 * run optimized before they are measured: compiling them inside the window would count the
 * code objects too.
 */
export function calibrate(objects = 1_000_000): Calibration {
  const word = (process.config.variables as Record<string, unknown>).v8_enable_pointer_compression ? 4 : 8;
  const expectedBytes = 5 * word; // map, properties, elements, a, b
  const keep = new Array<unknown>(objects).fill(null);
  for (let k = 0; k < 20; k++) {
    allocateKept(keep, 5000);
    allocateGarbage(5000);
  }
  const retained = measureHeap(() => allocateKept(keep, objects));
  const garbage = measureHeap(() => allocateGarbage(objects));
  const empty = measureHeap(() => 0);
  keep.length = 0;
  sink[0] = undefined;
  const retainedBytes = retained.allocatedBytes / objects;
  const garbageBytes = garbage.allocatedBytes / objects;
  return {
    objects,
    expectedBytes,
    retainedBytes,
    garbageBytes,
    garbageGcs: garbage.gcCount,
    emptyWindowBytes: empty.allocatedBytes,
    error: Math.max(Math.abs(retainedBytes - expectedBytes), Math.abs(garbageBytes - expectedBytes)) / expectedBytes,
  };
}

export interface PromiseCosts {
  /** Heap bytes of one `new Promise(executor)`: the promise, its two resolving functions, their context. */
  newPromiseBytes: number;
  /** Heap bytes of one `await` of an already resolved promise inside an async function. */
  awaitBytes: number;
}

let capturedResolve: (v: unknown) => void = () => {};
function captureResolve(resolve: (v: unknown) => void): void {
  capturedResolve = resolve;
}

function newPromises(n: number): void {
  for (let i = 0; i < n; i++) sink[0] = new Promise(captureResolve);
}

async function awaits(n: number, p: Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i++) await p;
}

/**
 * What one promise per call costs on this thread's heap, measured with the same probe: the
 * floor under the draw() scenario's bytes per call (one promise, one await).
 */
export async function promiseCosts(n = 200_000): Promise<PromiseCosts> {
  for (let k = 0; k < 20; k++) newPromises(2000);
  const made = measureHeap(() => newPromises(n));
  sink[0] = undefined;
  capturedResolve(undefined);
  const resolved = Promise.resolve(1);
  await awaits(20_000, resolved);
  const probe = new HeapProbe();
  probe.start();
  await awaits(n, resolved);
  const awaited = probe.stop();
  return { newPromiseBytes: made.allocatedBytes / n, awaitBytes: awaited.allocatedBytes / n };
}
