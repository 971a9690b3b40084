import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { asEngineError, EngineError, show } from '../errors.js';

/** Replication of every shard's log to a NATS JetStream stream, and the role of this node. */
export interface ReplicationOptions {
  /** NATS server URLs (e.g. `nats://10.0.0.1:4222`). */
  servers: string[];
  /** The replication group's name: its stream, lease bucket and snapshot store are named after it ([A-Za-z0-9_-], 1-64). */
  stream: string;
  /** Replicas of the stream, lease and snapshots. Default: `3`. */
  replicas?: number;
  /** `'leader'` (takes the lease when it is free) or `'follower'`. Default: `'leader'`. */
  role?: 'leader' | 'follower';
  /** A leader renews its lease within this; a follower may take over once it has not. Default: `3000`. */
  leaseMs?: number;
  /** A follower promotes itself when the lease expires. Default: `false`. */
  autoPromote?: boolean;
  /** This node's name in the lease. Default: `<hostname>:<absolute dir>` (so a restarted leader knows its own lease). */
  node?: string;
  /** The address clients reach this node's service at, published with the lease. Default: none. */
  advertise?: string;
  /** How long a call under `sync: 'replicated'` waits for the stream before ERR_REPLICATION_UNAVAILABLE. Default: `5000`. */
  timeoutMs?: number;
  /** Largest stream message, its publish headers included (NATS max_payload must allow it). Default: `1_048_576`. */
  maxMessageBytes?: number;
}

export type FilledReplication = Required<Omit<ReplicationOptions, 'advertise'>> & { advertise: string | undefined };

const kKnown = ['servers', 'stream', 'replicas', 'role', 'leaseMs', 'autoPromote', 'node', 'advertise', 'timeoutMs', 'maxMessageBytes'] as const;

function bad(key: string, rule: string, value: unknown): never {
  throw new EngineError('ERR_INVALID_CONFIG', `options.replication${key ? `.${key}` : ''} ${rule}, got ${show(value)}`, { details: { option: `replication${key ? `.${key}` : ''}`, value } });
}

function int(o: Record<string, unknown>, key: string, min: number, max: number, fallback: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(key, `must be an integer from ${min} to ${max}`, v);
  return v;
}

/** Validate the replication option (each field read once) and fill its defaults. */
export function fillReplication(value: unknown, dir: string | undefined): FilledReplication {
  if (typeof value !== 'object' || value === null) bad('', 'must be an object', value);
  const o: Record<string, unknown> = Object.create(null);
  let key = '';
  try {
    for (key of Object.keys(value)) if (!(kKnown as readonly string[]).includes(key)) bad(key, `is not a known option (known: ${kKnown.join(', ')})`, (value as Record<string, unknown>)[key]);
    for (key of kKnown) o[key] = (value as Record<string, unknown>)[key];
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw asEngineError(err, 'ERR_INVALID_CONFIG', `options.replication${key ? `.${key}` : ''} could not be read`);
  }
  // A copy, read once: a hole becomes undefined (every() would skip it), a throwing element is a config error.
  let servers: unknown[] | undefined;
  try {
    if (Array.isArray(o.servers) && o.servers.length > 0 && o.servers.length <= 64) servers = Array.from(o.servers as unknown[]);
  } catch (err) {
    throw asEngineError(err, 'ERR_INVALID_CONFIG', 'options.replication.servers could not be read', { option: 'replication.servers' });
  }
  if (servers === undefined || !servers.every((s) => typeof s === 'string' && s.length > 0 && s.length < 512)) {
    bad('servers', 'must be a non-empty array of NATS URLs', o.servers);
  }
  if (typeof o.stream !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(o.stream)) bad('stream', 'must be 1-64 characters of A-Z a-z 0-9 _ -', o.stream);
  const role = o.role === undefined ? 'leader' : o.role;
  if (role !== 'leader' && role !== 'follower') bad('role', "must be 'leader' or 'follower'", role);
  if (o.autoPromote !== undefined && typeof o.autoPromote !== 'boolean') bad('autoPromote', 'must be a boolean', o.autoPromote);
  if (o.node !== undefined && (typeof o.node !== 'string' || o.node.length === 0 || o.node.length > 128)) bad('node', 'must be a string of 1-128 characters', o.node);
  if (o.advertise !== undefined && (typeof o.advertise !== 'string' || o.advertise.length === 0 || o.advertise.length > 2048)) bad('advertise', 'must be a URL string', o.advertise);
  return {
    servers: servers as string[],
    stream: o.stream,
    replicas: int(o, 'replicas', 1, 5, 3),
    role,
    leaseMs: int(o, 'leaseMs', 200, 600_000, 3000),
    autoPromote: (o.autoPromote as boolean | undefined) ?? false,
    node: (o.node as string | undefined) ?? `${hostname()}:${resolve(dir ?? '.')}`.slice(-128),
    advertise: o.advertise as string | undefined,
    timeoutMs: int(o, 'timeoutMs', 100, 600_000, 5000),
    maxMessageBytes: int(o, 'maxMessageBytes', 64 * 1024, 64 * 1024 * 1024, 1 << 20),
  };
}
