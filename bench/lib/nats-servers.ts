/**
 * A JetStream cluster of `nats-server` processes on loopback for the replication bench (the
 * tests have their own, test/helpers/nats-cluster.ts, which needs vitest). Each server has free
 * ports picked now (client, route, monitoring) and its own directory holding `nats.conf`, its
 * JetStream store and `server.log`. `startNatsServers()` resolves once every server answers
 * `/healthz` and an R3 stream can be created, published to and deleted; `stop()` SIGKILLs them
 * all (also done when this process exits) and removes the directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'nats';
import { packageRoot } from './paths.js';

const kBin = process.env.RPE_NATS_SERVER ?? 'nats-server';
const kReadyMs = 45_000;
// util-linux setpriv execs the server with a parent-death signal: it dies with this process
// even when that is SIGKILLed and no exit hook runs.
const kSetpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface NatsServers {
  /** Client URLs, `nats://127.0.0.1:<port>`, in server order. */
  readonly urls: string[];
  readonly dir: string;
  /** SIGKILL server i; resolves once it has exited. */
  kill(i: number): Promise<void>;
  /** SIGKILL every server, wait for them, remove the directory. Idempotent. */
  stop(): Promise<void>;
}

/** `nats-server --version`, e.g. 'v2.9.10'. */
export function natsServerVersion(): string {
  const r = spawnSync(kBin, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`cannot run ${kBin} --version: ${r.error?.message ?? r.stderr} (apt-get install -y nats-server)`);
  return /v\d+\.\d+\.\d+\S*/.exec(r.stdout)?.[0] ?? r.stdout.trim();
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** The last lines of every server's log, for an error message (the caller may remove the directory). */
function logTails(dir: string, size: number): string {
  const tail = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8').trimEnd().split('\n').slice(-8).join('\n') : '(no log)');
  return Array.from({ length: size }, (_, i) => `== n${i}\n${tail(join(dir, `n${i}`, 'server.log'))}`).join('\n');
}

export async function startNatsServers(opts: { size?: number; dir?: string } = {}): Promise<NatsServers> {
  const size = opts.size ?? 3;
  const dir = opts.dir ?? join(packageRoot(), '_tmp', `nats-${process.pid}-${Date.now()}`);
  const cluster = `rpe-bench-${process.pid}-${Date.now().toString(36)}`;
  const ports: { client: number; route: number; http: number }[] = [];
  const taken = new Set<number>();
  const pick = async (): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (taken.has(p)) continue;
      taken.add(p);
      return p;
    }
  };
  for (let i = 0; i < size; i++) ports.push({ client: await pick(), route: await pick(), http: await pick() });

  const children: (ChildProcess | undefined)[] = [];
  const exited: Promise<void>[] = [];
  for (const [i, p] of ports.entries()) {
    const home = join(dir, `n${i}`);
    mkdirSync(home, { recursive: true });
    const routes = ports.filter((_, j) => j !== i).map((o) => `"nats-route://127.0.0.1:${o.route}"`);
    const conf = [
      `server_name: "n${i}"`,
      `listen: "127.0.0.1:${p.client}"`,
      `http: "127.0.0.1:${p.http}"`,
      `max_payload: 8388608`,
      `jetstream { store_dir: "${home}", max_memory_store: 268435456, max_file_store: 4294967296 }`,
      size > 1 ? `cluster { name: "${cluster}", listen: "127.0.0.1:${p.route}", routes: [${routes.join(', ')}] }` : '',
    ].join('\n');
    writeFileSync(join(home, 'nats.conf'), `${conf}\n`);
    const log = openSync(join(home, 'server.log'), 'a');
    const argv = ['-c', join(home, 'nats.conf')];
    const child = kSetpriv ? spawn(kSetpriv, ['--pdeathsig', 'KILL', '--', kBin, ...argv], { stdio: ['ignore', log, log] }) : spawn(kBin, argv, { stdio: ['ignore', log, log] });
    closeSync(log);
    live.add(child);
    children[i] = child;
    exited[i] = new Promise<void>((resolve) => {
      child.once('error', () => resolve());
      child.once('exit', () => resolve());
    }).then(() => {
      live.delete(child);
      children[i] = undefined;
    });
  }

  let stopped = false;
  const servers: NatsServers = {
    urls: ports.map((p) => `nats://127.0.0.1:${p.client}`),
    dir,
    async kill(i) {
      children[i]?.kill('SIGKILL');
      await exited[i];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of children) c?.kill('SIGKILL');
      await Promise.all(exited);
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    },
  };

  // Ready: every /healthz answers 200, then an R3 stream takes a message (a meta leader exists
  // and stream placement works). Every step is retried until the one deadline.
  const deadline = Date.now() + kReadyMs;
  let last = 'no answer yet';
  const probe = `rpe_bench_ready_${process.pid}`;
  try {
    for (;;) {
      if (children.some((c) => c === undefined)) throw new Error(`a server exited during startup\n${logTails(dir, size)}`);
      try {
        const codes = await Promise.all(
          ports.map(async (p) => {
            const res = await fetch(`http://127.0.0.1:${p.http}/healthz`, { signal: AbortSignal.timeout(2000) });
            await res.arrayBuffer();
            return res.status;
          }),
        );
        last = `healthz ${codes.join(',')}`;
        if (codes.every((c) => c === 200)) {
          const nc = await connect({ servers: servers.urls, timeout: 2000 });
          try {
            const jsm = await nc.jetstreamManager({ timeout: 2000 });
            await jsm.streams.add({ name: probe, subjects: [`${probe}.>`], num_replicas: Math.min(3, size) });
            await nc.jetstream({ timeout: 2000 }).publish(`${probe}.x`, new Uint8Array([1]));
            await jsm.streams.delete(probe);
            return servers;
          } finally {
            await nc.close().catch(() => {});
          }
        }
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`NATS cluster not ready within ${kReadyMs} ms (last: ${last})\n${logTails(dir, size)}`);
      await sleep(200);
    }
  } catch (err) {
    for (const c of children) c?.kill('SIGKILL');
    stopped = true;
    throw err;
  }
}
