/**
 * A real JetStream cluster of `nats-server` processes on loopback for the replication tests.
 *
 * Every server gets free ports picked at runtime (client, cluster route, HTTP monitoring), its
 * own directory under `_tmp` (from ./tmp.ts) holding its config file, its JetStream storage and
 * its log, and routes to all the others. Servers print nothing to the test output: their stdout
 * and stderr go to `<dir>/server.log`, whose tail is printed when a test of the file fails and
 * is quoted in every error the harness throws.
 *
 * Every cluster started through `startCluster` is SIGKILLed after the file's tests (an
 * `afterAll` registered here, also when tests fail) and when the test process exits; servers
 * are started through util-linux `setpriv --pdeathsig KILL` when it exists, so they die with the
 * test process even when that is SIGKILLed.
 *
 *   const cluster = await startCluster();          // resolves once JetStream is usable (R3)
 *   const nc = await cluster.connect();             // closed by cluster.stop()
 *   await cluster.waitStreamCurrent('S');           // before killing a server under stream S
 *   await cluster.kill(0);                          // SIGKILL server 0
 *   await cluster.restart(0);                       // same ports, same storage
 *   await cluster.stop();                           // idempotent
 *
 * `nats-server` comes from Debian's package (`apt-get install -y nats-server`, 2.9.10 on
 * bookworm); `RPE_NATS_SERVER` may name another binary.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ConnectionOptions, type NatsConnection, RetentionPolicy, StorageType } from 'nats';
import { afterAll, afterEach } from 'vitest';
import { tmpDir } from './tmp.js';

export const natsServerBin = process.env.RPE_NATS_SERVER ?? 'nats-server';

export interface ClusterOptions {
  /** Number of servers [3]. 1 starts a standalone JetStream server (no cluster block). */
  size?: number;
  /** Label of the tmpDir holding the servers' directories ['nats']. */
  label?: string;
  /**
   * The servers' `max_payload` in bytes [8 MiB]; `null` leaves the server's default (1 MiB).
   * The client learns it from the server's INFO and refuses larger messages itself.
   */
  maxPayload?: number | null;
  /** Bound on one server process coming up (monitoring port answering) [20 s]. */
  processStartMs?: number;
  /** Bound on `waitReady()` by default [45 s]. */
  readyTimeoutMs?: number;
  /** Wait for `waitReady()` before `startCluster` resolves [true]. */
  waitReady?: boolean;
  /** Text appended to every server's config file (top level), e.g. 'write_deadline: "5s"'. */
  extraConfig?: string;
}

export interface ServerPorts {
  client: number;
  cluster: number;
  http: number;
}

export interface NatsServer {
  readonly index: number;
  /** `server_name`, `n<index>`: the name JetStream reports as a leader or replica. */
  readonly name: string;
  /** `nats://127.0.0.1:<client port>` */
  readonly url: string;
  readonly ports: ServerPorts;
  /** The server's directory: `nats.conf`, `server.log`, `jetstream/`. */
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
  /** The current process's pid; undefined while it is not running. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /**
   * Sends `signal` [SIGKILL] to the server. For a signal that ends the process (anything but
   * SIGSTOP/SIGCONT/SIGHUP/SIGUSR*) resolves once the process has exited. No-op when not running.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM (a clean shutdown), SIGKILL after 5 s; resolves once exited. No-op when not running. */
  stop(): Promise<void>;
  /**
   * Starts the server again with the same ports, config and storage (stopping it first with
   * SIGKILL if it runs). Resolves once it answers on its monitoring port, not once JetStream
   * has caught up: use `waitHealthy()` or the cluster's `waitReady()` for that.
   */
  restart(): Promise<void>;
  /** Resolves once `/healthz` answers 200 (JetStream current on this server); bounded. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** GET of a monitoring endpoint (`varz`, `jsz`, `healthz`, `routez`...) as JSON. */
  monitor<T = any>(path: string): Promise<T>;
  /** The last `lines` lines of its log. */
  logTail(lines?: number): string;
}

export interface ReadyInfo {
  /** How long `waitReady` took. */
  ms: number;
  /** Server name of the JetStream meta leader. */
  metaLeader: string;
}

export interface NatsCluster {
  /** Cluster name (unique per cluster: no two harness clusters ever route to each other). */
  readonly name: string;
  /** The parent directory of the servers' directories. */
  readonly dir: string;
  /** Client URLs of all servers, in index order (whether running or not). */
  readonly urls: string[];
  readonly servers: NatsServer[];
  /**
   * Resolves when every running server answers, a JetStream meta leader is known to all of
   * them, and a stream with `num_replicas` = min(3, size) can be created, published to and
   * deleted. Rejects after `timeoutMs` with the step that did not happen, the last error and
   * the servers' log tails.
   */
  waitReady(opts?: { timeoutMs?: number }): Promise<ReadyInfo>;
  kill(index: number, signal?: NodeJS.Signals): Promise<void>;
  restart(index: number): Promise<void>;
  /**
   * A client connected to every server's URL (`servers` may be overridden, e.g. to pin one);
   * reconnects forever by default; closed by `stop()`.
   */
  connect(opts?: ConnectionOptions): Promise<NatsConnection>;
  /** Server name of the current meta leader as the running servers see it, if any. */
  metaLeader(): Promise<string | undefined>;
  /** Index of the server leading `stream`'s Raft group, if known (from `/jsz`). */
  streamLeader(stream: string): Promise<number | undefined>;
  /**
   * Resolves once `stream` has a leader and every replica is current (caught up). A stream
   * just created, or a server just restarted, is not: killing a server before that may leave
   * the stream without a quorum although two of three servers run. Bounded [30 s].
   */
  waitStreamCurrent(stream: string, opts?: { timeoutMs?: number }): Promise<void>;
  /** Log tails of all servers, one block per server. */
  logs(lines?: number): string;
  /** Closes the clients from `connect()` and SIGKILLs every server; safe to call twice. */
  stop(): Promise<void>;
}

const live = new Set<NatsCluster>();

afterEach((ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const cluster of live) {
    console.error(`nats-server logs of cluster ${cluster.name} (test "${ctx.task.name}" failed):\n${cluster.logs(40)}`);
  }
});

afterAll(async () => {
  await Promise.allSettled([...live].map((c) => c.stop()));
});

// Last resort when the test process exits without running afterAll (e.g. process.exit()).
process.once('exit', () => {
  for (const cluster of live) {
    for (const s of cluster.servers) {
      if (s.pid !== undefined) {
        try {
          process.kill(s.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  }
});

let clusterCount = 0;

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** `nats-server --version`, e.g. 'v2.9.10'; throws a clear error when the binary is missing. */
export function natsServerVersion(): string {
  const r = spawnSync(natsServerBin, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `cannot run ${natsServerBin} --version (${r.error?.message ?? r.stderr}); install it with apt-get install -y nats-server`,
    );
  }
  const m = /v\d+\.\d+\.\d+\S*/.exec(r.stdout);
  return m ? m[0] : r.stdout.trim();
}

/** Listens on 127.0.0.1:0 `count` times at once (so no two are equal) and returns the ports. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => {
      const a = s.address();
      if (a === null || typeof a === 'string') throw new Error('no port');
      return a.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '(no log)';
  const text = readFileSync(file, 'utf8').trimEnd();
  return text.split('\n').slice(-lines).join('\n');
}

function configText(o: {
  name: string;
  clusterName: string;
  ports: ServerPorts;
  routes: number[];
  storeDir: string;
  maxPayload: number | null;
  extra: string;
  clustered: boolean;
}): string {
  const lines = [
    `# written by test/helpers/nats-cluster.ts`,
    `server_name: "${o.name}"`,
    `listen: "127.0.0.1:${o.ports.client}"`,
    `http: "127.0.0.1:${o.ports.http}"`,
  ];
  if (o.maxPayload !== null) lines.push(`max_payload: ${o.maxPayload}`);
  lines.push(
    `jetstream {`,
    `  store_dir: "${o.storeDir}"`,
    `  max_memory_store: 268435456`,
    `  max_file_store: 4294967296`,
    `}`,
  );
  if (o.clustered) {
    lines.push(
      `cluster {`,
      `  name: "${o.clusterName}"`,
      `  listen: "127.0.0.1:${o.ports.cluster}"`,
      `  routes: [`,
      ...o.routes.map((p) => `    "nats-route://127.0.0.1:${p}"`),
      `  ]`,
      `}`,
    );
  }
  if (o.extra) lines.push(o.extra);
  return lines.join('\n') + '\n';
}

class ServerProcess implements NatsServer {
  readonly name: string;
  readonly url: string;
  readonly configFile: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly index: number,
    readonly dir: string,
    readonly ports: ServerPorts,
    private readonly processStartMs: number,
  ) {
    this.name = `n${index}`;
    this.url = `nats://127.0.0.1:${ports.client}`;
    this.configFile = join(dir, 'nats.conf');
    this.logFile = join(dir, 'server.log');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Spawns the process and waits until its monitoring port answers (or it exits). */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running (pid ${this.child.pid})`);
    const fd = openSync(this.logFile, 'a');
    writeFileSync(fd, `--- ${new Date().toISOString()} starting ${natsServerBin} -c ${this.configFile}\n`);
    let child: ChildProcess;
    try {
      // setpriv (util-linux) execs the server with a parent-death signal: it dies with the test
      // process even when that is SIGKILLed and no hook runs. Same pid as the server.
      const [cmd, args] = setpriv
        ? [setpriv, ['--pdeathsig', 'KILL', '--', natsServerBin, '-c', this.configFile]]
        : [natsServerBin, ['-c', this.configFile]];
      child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    let exitInfo: string | undefined;
    let spawnError: Error | undefined;
    this.child = child;
    this.exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        spawnError = err;
        exitInfo = `spawn failed: ${err.message}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once('exit', (code, signal) => {
        exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + this.processStartMs;
    for (;;) {
      if (exitInfo !== undefined) {
        const hint = spawnError ? ' (is nats-server installed? apt-get install -y nats-server)' : '';
        throw new Error(`${this.name} (${this.url}) did not start: ${exitInfo}${hint}\n${this.logTail(30)}`);
      }
      try {
        const res = await fetch(`http://127.0.0.1:${this.ports.http}/varz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.ok) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        const pid = child.pid;
        await this.kill('SIGKILL');
        throw new Error(
          `${this.name} (pid ${pid}, ${this.url}) did not answer on its monitoring port within ${this.processStartMs} ms\n${this.logTail(30)}`,
        );
      }
      await sleep(50);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return;
    try {
      child.kill(signal);
    } catch {
      /* gone meanwhile */
    }
    if (['SIGSTOP', 'SIGCONT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTSTP'].includes(signal)) return;
    await this.exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGCONT'); // a stopped process would not act on SIGTERM
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.kill('SIGKILL');
    await this.start();
  }

  async monitor<T = any>(path: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.ports.http}/${path.replace(/^\//, '')}`, {
      signal: AbortSignal.timeout(2000),
    });
    const body = await res.text();
    try {
      return JSON.parse(body) as T;
    } catch {
      throw new Error(`${this.name} /${path}: HTTP ${res.status}: ${body.slice(0, 200)}`);
    }
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    for (;;) {
      if (!this.child) throw new Error(`${this.name} is not running\n${this.logTail(20)}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.ports.http}/healthz`, { signal: AbortSignal.timeout(2000) });
        last = `HTTP ${res.status} ${(await res.text()).trim()}`;
        if (res.ok) return;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name} not healthy within ${timeoutMs} ms (last /healthz: ${last})\n${this.logTail(20)}`);
      }
      await sleep(100);
    }
  }

  logTail(lines = 30): string {
    return tail(this.logFile, lines);
  }
}

/** Starts a cluster (see the file's comment); resolves after `waitReady()` unless told not to. */
export async function startCluster(opts: ClusterOptions = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`size must be a positive integer, got ${size}`);
  const maxPayload = opts.maxPayload === undefined ? 8 * 1024 * 1024 : opts.maxPayload;
  const processStartMs = opts.processStartMs ?? 20_000;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 45_000;
  const clusterName = `rpe-${process.pid}-${clusterCount++}`;
  const root = tmpDir(opts.label ?? 'nats');
  const clients: NatsConnection[] = [];
  let servers: ServerProcess[] = [];
  let stopped = false;
  let admin: NatsConnection | undefined; // for waitStreamCurrent; in `clients`, closed by stop()

  const cluster: NatsCluster = {
    name: clusterName,
    dir: root,
    get urls() {
      return servers.map((s) => s.url);
    },
    get servers() {
      return servers;
    },
    async waitReady(o = {}) {
      return waitReady(cluster, size, o.timeoutMs ?? readyTimeoutMs);
    },
    kill: (i, signal) => server(i).kill(signal),
    restart: (i) => server(i).restart(),
    async connect(o = {}) {
      const nc = await connect({
        servers: cluster.urls,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        name: `${clusterName}-client`,
        ...o,
      });
      clients.push(nc);
      return nc;
    },
    async metaLeader() {
      for (const s of servers) {
        if (!s.running) continue;
        try {
          const jsz = await s.monitor<{ meta_cluster?: { leader?: string } }>('jsz');
          if (jsz.meta_cluster?.leader) return jsz.meta_cluster.leader;
        } catch {
          /* try the next */
        }
      }
      return undefined;
    },
    async streamLeader(stream) {
      for (const s of servers) {
        if (!s.running) continue;
        try {
          const jsz = await s.monitor<JszStreams>('jsz?streams=true');
          for (const acc of jsz.account_details ?? []) {
            for (const st of acc.stream_detail ?? []) {
              if (st.name === stream && st.cluster?.leader) {
                const i = servers.findIndex((x) => x.name === st.cluster!.leader);
                if (i >= 0) return i;
              }
            }
          }
        } catch {
          /* try the next */
        }
      }
      return undefined;
    },
    async waitStreamCurrent(stream, o = {}) {
      const timeoutMs = o.timeoutMs ?? 30_000;
      const deadline = Date.now() + timeoutMs;
      let last = 'no answer';
      admin ??= await cluster.connect({ name: `${clusterName}-admin` });
      const jsm = await admin.jetstreamManager({ checkAPI: false, timeout: 2000 });
      for (;;) {
        try {
          const info = await jsm.streams.info(stream);
          const replicas = info.cluster?.replicas ?? [];
          last = `leader ${info.cluster?.leader ?? 'none'}, replicas ${JSON.stringify(replicas.map((r) => [r.name, r.current, r.offline ?? false, r.lag ?? 0]))}`;
          if (info.cluster?.leader && replicas.length === info.config.num_replicas - 1 && replicas.every((r) => r.current && !r.offline)) {
            // The leader's view can be optimistic right after creation: also ask every member
            // whether it hosts the stream up to the leader's last sequence.
            const members = [info.cluster.leader, ...replicas.map((r) => r.name)];
            const local = await Promise.all(
              members.map(async (name) => {
                const s = servers.find((x) => x.name === name);
                if (!s?.running) return `${name}: not running`;
                const jsz = await s.monitor<JszStreams>('jsz?streams=true');
                const st = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream);
                return st?.state?.last_seq === info.state.last_seq ? '' : `${name}: ${st ? `last_seq ${st.state?.last_seq}` : 'no stream'}`;
              }),
            );
            if (local.every((x) => x === '')) return;
            last = `leader at last_seq ${info.state.last_seq}; ${local.filter(Boolean).join(', ')}`;
          }
        } catch (err) {
          last = String(err);
        }
        if (Date.now() > deadline) {
          throw new Error(`stream ${stream} not current on all replicas within ${timeoutMs} ms (last: ${last})\n${cluster.logs(20)}`);
        }
        await sleep(100);
      }
    },
    logs(lines = 30) {
      return servers.map((s) => `== ${s.name} (${s.url}, ${s.running ? `pid ${s.pid}` : "not running"}, ${s.logFile})\n${s.logTail(lines)}`).join('\n');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled(clients.splice(0).map((nc) => nc.close()));
      await Promise.allSettled(servers.map((s) => s.kill('SIGKILL')));
      live.delete(cluster);
    },
  };
  const server = (i: number): ServerProcess => {
    const s = servers[i];
    if (!s) throw new Error(`no server ${i} in a cluster of ${servers.length}`);
    return s;
  };
  live.add(cluster);

  // Ports are free when picked but may be taken before a server binds them (another test file
  // running in parallel): a server that fails to start is retried with new ports, twice.
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(size * 3);
    servers = Array.from({ length: size }, (_, i) => {
      const dir = join(root, `n${i}${attempt > 1 ? `-try${attempt}` : ''}`);
      const p: ServerPorts = { client: ports[3 * i]!, cluster: ports[3 * i + 1]!, http: ports[3 * i + 2]! };
      mkdirSync(dir, { recursive: true });
      return new ServerProcess(i, dir, p, processStartMs);
    });
    for (const s of servers) {
      writeFileSync(
        s.configFile,
        configText({
          name: s.name,
          clusterName,
          ports: s.ports,
          routes: servers.filter((o) => o !== s).map((o) => o.ports.cluster),
          storeDir: s.dir, // the server keeps its streams in <store_dir>/jetstream
          maxPayload,
          extra: opts.extraConfig ?? '',
          clustered: size > 1,
        }),
      );
    }
    const started = await Promise.allSettled(servers.map((s) => s.start()));
    const failed = started.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === 0) break;
    await Promise.allSettled(servers.map((s) => s.kill('SIGKILL')));
    const portClash = failed.some((f) => /address already in use/i.test(String(f.reason?.message)));
    if (!portClash || attempt >= 3) {
      await cluster.stop();
      throw failed[0]!.reason;
    }
  }

  if (opts.waitReady ?? true) {
    try {
      await cluster.waitReady();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }
  return cluster;
}

interface JszStreams {
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string }; state?: { last_seq: number } }[] }[];
}

let readyCount = 0;

async function waitReady(cluster: NatsCluster, size: number, timeoutMs: number): Promise<ReadyInfo> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let step = 'servers answering on their monitoring ports';
  let last = '';
  const fail = (): never => {
    throw new Error(
      `NATS cluster ${cluster.name} not ready within ${timeoutMs} ms: waiting for ${step}; last: ${last}\n${cluster.logs(25)}`,
    );
  };
  const running = () => cluster.servers.filter((s) => s.running);

  // 1. A meta leader that every running server knows.
  let metaLeader = '';
  for (;;) {
    if (running().length === 0) {
      last = 'no server is running';
      fail();
    }
    step = 'a JetStream meta leader known to every running server';
    try {
      const leaders = await Promise.all(
        running().map(async (s) => (await s.monitor<{ meta_cluster?: { leader?: string } }>('jsz')).meta_cluster?.leader ?? ''),
      );
      // A standalone server has no meta group: it is its own leader.
      if (size === 1) leaders.fill(cluster.servers[0]!.name);
      last = `meta leaders seen: ${JSON.stringify(leaders)}`;
      if (leaders.every((l) => l !== '' && l === leaders[0])) {
        metaLeader = leaders[0]!;
        break;
      }
    } catch (err) {
      last = String(err);
    }
    if (Date.now() > deadline) fail();
    await sleep(100);
  }

  // 2. A replicated stream can be created, written and deleted; every request bounded by the
  // time left.
  step = `a test stream with num_replicas ${Math.min(3, size)} created, published to and deleted`;
  const left = (): number => Math.max(500, Math.min(5000, deadline - Date.now()));
  let nc: NatsConnection | undefined;
  const stream = `rpe_ready_${process.pid}_${readyCount++}`;
  try {
    let created = false;
    let published = false;
    for (;;) {
      try {
        nc ??= await connect({
          servers: running().map((s) => s.url),
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          name: `${cluster.name}-ready`,
          timeout: left(),
        });
        const jsm = await nc.jetstreamManager({ checkAPI: false, timeout: left() });
        if (!created) {
          await jsm.streams.add({
            name: stream,
            subjects: [`${stream}.>`],
            num_replicas: Math.min(3, size),
            storage: StorageType.File,
            retention: RetentionPolicy.Limits,
          });
          created = true;
        }
        if (!published) {
          const ack = await nc.jetstream({ timeout: left() }).publish(`${stream}.probe`, new TextEncoder().encode('ready'));
          published = ack.seq >= 1;
        }
        if (published) {
          await jsm.streams.delete(stream);
          break;
        }
      } catch (err) {
        last = `${(err as Error).message} (code ${(err as { code?: string }).code ?? 'none'})`;
        if (published && /not found/i.test(last)) break;
      }
      if (Date.now() > deadline) fail();
      await sleep(200);
    }
  } finally {
    await nc?.close().catch(() => {});
  }
  return { ms: Date.now() - started, metaLeader };
}
