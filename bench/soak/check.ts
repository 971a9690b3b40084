/**
 * What a killed child acknowledged (read from its lines), what a directory held before the
 * round (the model), and the checks of a recovered state against both. Pure: no engine, no I/O.
 */
import type { PoolState } from '../../src/index.js';
import { catalogOf } from './workload.js';

export interface RunLog {
  /** maxRequestId the child's own recovery found (undefined: killed before its open resolved). */
  openMaxRequestId: number | undefined;
  opening: boolean;
  ready: boolean;
  closing: boolean;
  closed: boolean;
  createRequested: Set<string>;
  created: Set<string>;
  /** createPool refused because the catalog does not fit in a segment: pool -> record bytes. */
  refused: Map<string, number>;
  /** Draws requested / acknowledged per pool. */
  requested: Map<string, number>;
  acked: Map<string, number>;
  /** Acknowledged draws per item index; the last slot counts empty draws. */
  ackCounts: Map<string, number[]>;
  maxAckId: Map<string, number>;
  /** Lowest request id acknowledged in this run (Infinity: none). */
  minAckId: number;
  ackedDraws: number;
  acks: number;
  /** "pool/index" -> weight of the last acknowledged update. */
  ackedWeights: Map<string, number>;
  /** The update requested and not acknowledged (one at a time). */
  updateInFlight: { key: string; weight: number } | undefined;
  snapshots: number;
  rotations: number;
  restarts: number;
  /** `fail` lines, and lines that make no sense. */
  failures: string[];
}

export function newLog(): RunLog {
  return {
    openMaxRequestId: undefined,
    opening: false,
    ready: false,
    closing: false,
    closed: false,
    createRequested: new Set(),
    created: new Set(),
    refused: new Map(),
    requested: new Map(),
    acked: new Map(),
    ackCounts: new Map(),
    maxAckId: new Map(),
    minAckId: Number.POSITIVE_INFINITY,
    ackedDraws: 0,
    acks: 0,
    ackedWeights: new Map(),
    updateInFlight: undefined,
    snapshots: 0,
    rotations: 0,
    restarts: 0,
    failures: [],
  };
}

function countsOf(log: RunLog, pool: string): number[] | undefined {
  let c = log.ackCounts.get(pool);
  if (c === undefined) {
    const catalog = catalogOf(pool);
    if (catalog === undefined) return undefined;
    c = new Array<number>(catalog.length + 1).fill(0);
    log.ackCounts.set(pool, c);
  }
  return c;
}

function acknowledge(log: RunLog, pool: string, first: number, count: number): void {
  log.acked.set(pool, (log.acked.get(pool) ?? 0) + count);
  log.maxAckId.set(pool, Math.max(log.maxAckId.get(pool) ?? 0, first + count - 1));
  log.minAckId = Math.min(log.minAckId, first);
  log.ackedDraws += count;
  log.acks++;
}

export function parseLine(line: string, log: RunLog): void {
  const parts = line.split(' ');
  const [kind, a] = parts;
  switch (kind) {
    case 'opening':
      log.opening = true;
      return;
    case 'open':
      log.openMaxRequestId = Number(a);
      return;
    case 'exists':
      return;
    case 'creq':
      log.createRequested.add(a!);
      return;
    case 'created':
      log.created.add(a!);
      return;
    case 'refused':
      log.refused.set(a!, Number(parts[2]));
      return;
    case 'ready':
      log.ready = true;
      return;
    case 'req':
      log.requested.set(a!, (log.requested.get(a!) ?? 0) + Number(parts[2]));
      return;
    case 'ack': {
      const first = Number(parts[2]);
      const count = Number(parts[3]);
      const counts = JSON.parse(parts[4]!) as number[];
      const acc = countsOf(log, a!);
      if (acc === undefined || acc.length !== counts.length || counts.reduce((x, y) => x + y, 0) !== count) {
        log.failures.push(`ack that does not fit the catalog: ${line}`);
        return;
      }
      counts.forEach((n, i) => (acc[i]! += n));
      acknowledge(log, a!, first, count);
      return;
    }
    case 'd': {
      const id = Number(parts[2]);
      const idx = Number(parts[3]);
      const acc = countsOf(log, a!);
      if (acc === undefined || idx < -1 || idx >= acc.length - 1) {
        log.failures.push(`draw that does not fit the catalog: ${line}`);
        return;
      }
      acc[idx === -1 ? acc.length - 1 : idx]!++;
      acknowledge(log, a!, id, 1);
      return;
    }
    case 'ureq':
      log.updateInFlight = { key: `${a}/${parts[2]}`, weight: Number(parts[3]) };
      return;
    case 'uack':
      log.ackedWeights.set(`${a}/${parts[2]}`, Number(parts[3]));
      log.updateInFlight = undefined;
      return;
    case 'm':
      log.snapshots = Number(parts[1]);
      log.rotations = Number(parts[2]);
      log.restarts = Number(parts[3]);
      return;
    case 'closing':
      log.closing = true;
      return;
    case 'closed':
      log.closed = true;
      return;
    default:
      // `fail` lines and anything unexpected.
      log.failures.push(line);
  }
}

/** A directory's history as of the end of the previous round on it. */
export interface DirModel {
  dir: string;
  /** Rounds (kills) this directory went through. */
  runs: number;
  /** State after the soak's previous reopen (and its draws); {} for a fresh directory. */
  baseline: Record<string, PoolState>;
  /** Highest request id acknowledged (or seen) over every run on this directory. */
  maxAckedId: number;
}

export interface Verdict {
  problems: string[];
  /** Acknowledged successful draws missing from the recovered state (0 = nothing lost). */
  lost: number;
}

/** The recovered state against the baseline and what the child acknowledged. */
export function checkRecovered(model: DirModel, log: RunLog, states: Record<string, PoolState>, segmentBytes: number): Verdict {
  const problems: string[] = [];
  let lost = 0;
  if (log.openMaxRequestId !== undefined && log.openMaxRequestId < model.maxAckedId) {
    problems.push(`the child's own recovery found maxRequestId ${log.openMaxRequestId}, below ${model.maxAckedId} acknowledged before`);
  }
  if (log.minAckId <= model.maxAckedId) problems.push(`the child acknowledged request id ${log.minAckId}, not above ${model.maxAckedId} acknowledged before: an id was reused`);
  for (const id of Object.keys(model.baseline)) if (!(id in states)) problems.push(`pool ${id} (recovered before) is missing`);
  for (const id of log.created) if (!(id in states)) problems.push(`pool ${id} was acknowledged as created and is missing`);
  for (const [id, bytes] of log.refused) {
    // Refused only when its record cannot fit in a segment (less the 64-byte header).
    if (bytes <= segmentBytes - 64) problems.push(`createPool(${id}) refused as not fitting, but its ${bytes}-byte record fits in a segment of ${segmentBytes} bytes`);
    if (id in states) problems.push(`pool ${id} is there although its creation was refused`);
  }
  for (const [id, state] of Object.entries(states)) {
    const catalog = catalogOf(id);
    const base = model.baseline[id];
    if (catalog === undefined || (base === undefined && !log.createRequested.has(id)) || log.refused.has(id)) {
      problems.push(`pool ${id} was never requested`);
      continue;
    }
    const ids = state.items.map((i) => i.id).join(',');
    if (ids !== catalog.map((i) => i.id).join(',')) {
      problems.push(`pool ${id}: items ${ids}, expected ${catalog.map((i) => i.id).join(',')}`);
      continue;
    }
    const counts = log.ackCounts.get(id) ?? new Array<number>(catalog.length + 1).fill(0);
    let extra = 0;
    state.items.forEach((item, i) => {
      const where = `${id}/${item.id}`;
      const expected = (base?.items[i]!.drawn ?? 0) + counts[i]!;
      // Every acknowledged successful draw is there.
      if (item.drawn < expected) {
        problems.push(`${where}: drawn ${item.drawn}, but ${expected} were acknowledged (before this round and in it)`);
        lost += expected - item.drawn;
      }
      extra += item.drawn - expected;
      const initial = catalog[i]!.quantity;
      if (initial === -1) {
        if (item.quantity !== -1) problems.push(`${where}: unlimited item has quantity ${item.quantity}`);
      } else if (item.quantity < 0 || item.quantity + item.drawn !== initial) {
        problems.push(`${where}: quantity ${item.quantity} + drawn ${item.drawn} != initial ${initial}`);
      }
      const key = `${id}/${i}`;
      const allowed = [log.ackedWeights.get(key) ?? base?.items[i]!.weight ?? catalog[i]!.weight];
      if (log.updateInFlight?.key === key) allowed.push(log.updateInFlight.weight);
      if (!allowed.includes(item.weight)) problems.push(`${where}: weight ${item.weight}, expected ${allowed.join(' or ')}`);
    });
    // On top of what was acknowledged: at most what was still in flight.
    const inFlight = (log.requested.get(id) ?? 0) - (log.acked.get(id) ?? 0);
    if (extra > inFlight) problems.push(`${id}: ${extra} successful draws beyond the acknowledged ones, but only ${inFlight} were in flight`);
    const lastAcked = Math.max(log.maxAckId.get(id) ?? 0, base?.lastRequestId ?? 0);
    if (state.lastRequestId < lastAcked) problems.push(`${id}: lastRequestId ${state.lastRequestId} below acknowledged id ${lastAcked}`);
  }
  return { problems, lost };
}

/** Highest id acknowledged in the run or known before it. */
export function maxAcked(model: DirModel, log: RunLog): number {
  return Math.max(model.maxAckedId, ...log.maxAckId.values());
}
