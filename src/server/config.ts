/**
 * The configuration of `reward-pool-engine serve`: a JSON file (`--config`) and flags that
 * override it, merged and validated here into one ServeConfig, or an ERR_INVALID_CONFIG that
 * names the file, the field or the flag. Paths in the file (dir, tls.cert, tls.key) are relative
 * to the file's directory; paths given as flags are relative to the working directory.
 *
 * File: { "engine": { DrawEngine options }, "listen": { "host", "port" },
 *         "auth": { "keys": [ { "id", "token" | "sha256", "scopes": [...] } ] },
 *         "tls": { "cert", "key" }, "limits": { "bodyBytes", "maxDrawCount", "maxItems" },
 *         "server": { "retryAfterSeconds", "shutdownTimeoutMs", "logLevel" },
 *         "grpc": { "host", "port", "defaultPool" } }
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EngineError, messageOf, show } from '../errors.js';
import { fillOptions, type DrawEngineOptions } from '../options.js';
import { compileKeys, type ApiKeyConfig } from './auth.js';
import type { Limits } from './context.js';
import { checkInt, checkObject, fillLimits, invalid, isLoopback } from './options.js';

export interface ServeConfig {
  engine: DrawEngineOptions;
  listen: { host: string; port: number };
  auth: { keys: ApiKeyConfig[] };
  /** PEM file paths (absolute once loaded). */
  tls: { cert: string; key: string } | undefined;
  limits: Limits;
  retryAfterSeconds: number;
  shutdownTimeoutMs: number;
  logLevel: string;
  /** The Go-compatible gRPC endpoint, when a port is configured. */
  grpc: { host: string; port: number; defaultPool: string | undefined } | undefined;
}

type Kind = 'string' | 'int' | 'boolean' | 'list';

/** Every flag of `serve`: [name, kind, where it goes, help]. The help text is built from this. */
export const kServeFlags: [string, Kind, string, string][] = [
  ['config', 'string', '', 'JSON config file (see README "Service"); flags override it'],
  ['dir', 'string', 'engine.dir', 'data directory (required unless --wal none)'],
  ['host', 'string', 'listen.host', 'address to listen on [127.0.0.1]; anything but loopback needs auth.keys'],
  ['port', 'int', 'listen.port', 'TCP port [8080]; 0 picks a free one'],
  ['shards', 'int', 'engine.shards', 'shard worker threads [available parallelism]'],
  ['wal', 'string', 'engine.wal', "WAL: mmap | file | none ['mmap']"],
  ['sync', 'string', 'engine.sync', "when a draw is acknowledged: always | interval | never ['always']"],
  ['sync-interval-ms', 'int', 'engine.syncIntervalMs', 'background sync period for --sync interval [10]'],
  ['segment-bytes', 'int', 'engine.segmentBytes', 'WAL segment size [64 MiB]'],
  ['snapshot-every-records', 'int', 'engine.snapshotEveryRecords', 'records per shard between snapshots; 0 = never [1000000]'],
  ['replay-threads', 'int', 'engine.replayThreads', 'threads decoding segments on open [available parallelism]'],
  ['max-pending', 'int', 'engine.maxPending', 'draws queued per shard before callers wait [1048576]'],
  ['seed', 'int', 'engine.seed', 'PRNG seed (reproducible outcomes with --shards 1) [random]'],
  ['archive', 'boolean', 'engine.archive', 'keep retired segments and snapshots in dir/archive/'],
  ['tls-cert', 'string', 'tls.cert', 'PEM certificate chain file: serve HTTPS (with --tls-key)'],
  ['tls-key', 'string', 'tls.key', 'PEM private key file'],
  ['body-limit', 'int', 'limits.bodyBytes', 'largest request body in bytes [8388608]'],
  ['max-draw-count', 'int', 'limits.maxDrawCount', 'largest count of one draws request [16777216]'],
  ['max-items', 'int', 'limits.maxItems', 'largest catalog of one created pool [65534]'],
  ['retry-after', 'int', 'server.retryAfterSeconds', 'seconds in Retry-After of 503 responses [1]'],
  ['shutdown-timeout-ms', 'int', 'server.shutdownTimeoutMs', 'longest wait for in-flight requests on SIGTERM [30000]'],
  ['log-level', 'string', 'server.logLevel', 'fatal | error | warn | info | debug | trace | silent; logs go to stderr [warn]'],
  ['grpc-port', 'int', 'grpc.port', 'also serve the Go service\'s gRPC RewardPoolService on this port [off]'],
  ['grpc-host', 'string', 'grpc.host', 'address of the gRPC endpoint [the HTTP host]'],
  ['grpc-default-pool', 'string', 'grpc.defaultPool', 'pool of gRPC requests that name none (Go clients never do) [none]'],
  ['nats', 'list', 'replication.servers', 'replicate to NATS JetStream at these comma-separated URLs (sync becomes replicated) [off]'],
  ['stream', 'string', 'replication.stream', 'the replication group: its stream, lease and snapshot store'],
  ['role', 'string', 'replication.role', "leader | follower ['leader']"],
  ['auto-promote', 'boolean', 'replication.autoPromote', 'a follower takes over when the lease expires'],
  ['lease-ms', 'int', 'replication.leaseMs', 'lease a leader renews and a follower waits out [3000]'],
  ['advertise', 'string', 'replication.advertise', "this node's URL for clients, published with the lease [this server's URL when its host and port are fixed]"],
  ['node', 'string', 'replication.node', "this node's name in the group [<hostname>:<dir>]"],
  ['replication-timeout-ms', 'int', 'replication.timeoutMs', 'longest wait for the stream before ERR_REPLICATION_UNAVAILABLE [5000]'],
];

const kLogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new EngineError('ERR_INVALID_CONFIG', `config file ${show(file)} cannot be read: ${messageOf(err)}`, { cause: err, details: { file } });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new EngineError('ERR_INVALID_CONFIG', `config file ${show(file)} is not valid JSON: ${messageOf(err)}`, { cause: err, details: { file } });
  }
}

/** A flag's string value as the kind the table says. */
function flagValue(name: string, kind: Kind, raw: string | boolean): unknown {
  if (kind === 'boolean') return raw === true;
  if (kind === 'string') return raw;
  if (kind === 'list') return String(raw).split(',').map((v) => v.trim()).filter((v) => v.length > 0);
  const n = Number(raw);
  if (raw === '' || !Number.isSafeInteger(n)) invalid(`--${name}`, 'must be an integer', raw);
  return n;
}

/** Merge the file (if any) with the flags, validate everything, resolve paths. */
export function loadServeConfig(flags: Record<string, string | boolean | undefined>, cwd = process.cwd()): ServeConfig {
  const file = typeof flags.config === 'string' ? resolve(cwd, flags.config) : undefined;
  const raw = file === undefined ? {} : readJson(file);
  const base = file === undefined ? cwd : dirname(file);
  const top = checkObject('config', raw, ['engine', 'listen', 'auth', 'tls', 'limits', 'server', 'grpc']);
  const section = (name: string, known: readonly string[] | null): Record<string, unknown> => {
    const v = top[name] ?? {};
    if (known === null) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) invalid(`config.${name}`, 'must be an object', v);
      return { ...(v as Record<string, unknown>) };
    }
    return { ...checkObject(`config.${name}`, v, known) };
  };
  const parts: Record<string, Record<string, unknown>> = {
    engine: section('engine', null),
    listen: section('listen', ['host', 'port']),
    tls: section('tls', ['cert', 'key']),
    limits: section('limits', ['bodyBytes', 'maxDrawCount', 'maxItems']),
    server: section('server', ['retryAfterSeconds', 'shutdownTimeoutMs', 'logLevel']),
    grpc: section('grpc', ['host', 'port', 'defaultPool']),
    // Flags only; the file sets these as config.engine.replication.
    replication: {},
  };
  // Paths from the file are relative to the file.
  for (const [part, key] of [['engine', 'dir'], ['tls', 'cert'], ['tls', 'key']] as const) {
    const v = parts[part]![key];
    if (typeof v === 'string' && v.length > 0) parts[part]![key] = resolve(base, v);
  }
  for (const [name, kind, target] of kServeFlags) {
    const v = flags[name];
    if (target === '' || v === undefined || (kind === 'boolean' && v !== true)) continue;
    const [part, key] = target.split('.') as [string, string];
    const value = flagValue(name, kind, v);
    parts[part]![key] = kind === 'string' && (target === 'engine.dir' || target.startsWith('tls.')) ? resolve(cwd, value as string) : value;
  }

  const engine = parts.engine as DrawEngineOptions;
  if (Object.keys(parts.replication!).length > 0) {
    const fromFile = engine.replication;
    if (fromFile !== undefined && (typeof fromFile !== 'object' || fromFile === null)) invalid('config.engine.replication', 'must be an object', fromFile);
    engine.replication = { ...(fromFile ?? {}), ...parts.replication } as DrawEngineOptions['replication'];
  }
  if (engine.dir === undefined && engine.wal !== 'none') invalid('a data directory', 'is required: --dir or config.engine.dir (or --wal none for an in-memory engine)', engine.dir);
  try {
    fillOptions(engine);
  } catch (err) {
    if (err instanceof EngineError) throw new EngineError(err.code, `config engine: ${err.message}`, { cause: err, details: err.details });
    throw err;
  }
  const listen = parts.listen!;
  const host = listen.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host.length === 0) invalid('config.listen.host', 'must be a non-empty string', host);
  const port = listen.port === undefined ? 8080 : checkInt('config.listen.port', listen.port, 0, 65_535);
  const auth = top.auth === undefined ? {} : checkObject('config.auth', top.auth, ['keys']);
  const keys = (auth.keys ?? []) as ApiKeyConfig[];
  compileKeys(keys, 'config.auth.keys');
  if (keys.length === 0 && !isLoopback(host)) {
    invalid('the listen host (--host, config.listen.host)', 'must be a loopback address (127.0.0.1, ::1, localhost) when config.auth.keys is empty: without API keys every route would be open to the network', host);
  }
  const t = parts.tls!;
  if ((t.cert === undefined) !== (t.key === undefined)) invalid('config.tls', 'needs both cert and key (or neither)', Object.keys(t));
  for (const k of ['cert', 'key'] as const) if (t[k] !== undefined && (typeof t[k] !== 'string' || t[k] === '')) invalid(`config.tls.${k}`, 'must be a file path', t[k]);
  const s = parts.server!;
  const logLevel = s.logLevel ?? 'warn';
  if (typeof logLevel !== 'string' || !kLogLevels.includes(logLevel)) invalid('config.server.logLevel', `must be one of ${kLogLevels.join(', ')}`, logLevel);
  const g = parts.grpc!;
  let grpc: ServeConfig['grpc'];
  if (g.port !== undefined) {
    const gHost = g.host ?? host;
    if (typeof gHost !== 'string' || gHost.length === 0) invalid('config.grpc.host', 'must be a non-empty string', gHost);
    if (keys.length === 0 && !isLoopback(gHost)) invalid('the gRPC host (--grpc-host, config.grpc.host)', 'must be a loopback address when config.auth.keys is empty', gHost);
    if (g.defaultPool !== undefined && (typeof g.defaultPool !== 'string' || g.defaultPool.length === 0 || g.defaultPool.length > 128)) invalid('config.grpc.defaultPool', 'must be a pool id (1-128 characters)', g.defaultPool);
    grpc = { host: gHost, port: checkInt('config.grpc.port', g.port, 0, 65_535), defaultPool: g.defaultPool as string | undefined };
  } else if (g.host !== undefined || g.defaultPool !== undefined) {
    invalid('config.grpc.port', 'is required to serve gRPC (host and defaultPool alone do nothing)', g.port);
  }
  const r = engine.replication;
  if (r !== undefined && r.advertise === undefined && port !== 0 && host !== '0.0.0.0' && host !== '::') {
    // Where clients reach this node, for followers to name in ERR_NOT_LEADER.
    engine.replication = { ...r, advertise: `${t.cert === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${port}` };
  }
  return {
    grpc,
    engine,
    listen: { host, port },
    auth: { keys },
    tls: t.cert === undefined ? undefined : { cert: t.cert as string, key: t.key as string },
    limits: fillLimits(parts.limits, 'config.limits'),
    retryAfterSeconds: s.retryAfterSeconds === undefined ? 1 : checkInt('config.server.retryAfterSeconds', s.retryAfterSeconds, 0, 3600),
    shutdownTimeoutMs: s.shutdownTimeoutMs === undefined ? 30_000 : checkInt('config.server.shutdownTimeoutMs', s.shutdownTimeoutMs, 0, 3_600_000),
    logLevel,
  };
}
