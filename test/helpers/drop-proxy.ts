/**
 * A tiny TCP proxy on loopback that forwards to a server and, for its first `drops`
 * connections, cuts the connection at the moment the server's response starts arriving: the
 * server has received and run the request, the client never sees the answer. This is the
 * failure a retry with an idempotency key exists for. It also records every request's bytes,
 * so tests can read the headers each attempt carried.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface DropProxy {
  url: string;
  /** Raw request bytes seen, per connection, as latin1 text. */
  requests: string[];
  /** Connections cut so far. */
  dropped: number;
  /** Cut the next n connections too. */
  dropNext(n: number): void;
  close(): Promise<void>;
}

export async function startDropProxy(target: { host: string; port: number }, drops: number): Promise<DropProxy> {
  const sockets = new Set<Socket>();
  let toDrop = drops;
  const proxy: DropProxy = {
    url: '',
    requests: [],
    dropped: 0,
    dropNext(n) {
      toDrop += n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((client) => {
    const cut = toDrop > 0;
    if (cut) toDrop--;
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const index = proxy.requests.push('') - 1;
    client.on('data', (d: Buffer) => {
      proxy.requests[index] += d.toString('latin1');
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (cut) {
        // The server answered: the request ran. Drop both sides before a byte reaches the client.
        proxy.dropped++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address() as { port: number };
  proxy.url = `http://127.0.0.1:${addr.port}`;
  return proxy;
}

/** The value of `name` in each recorded request that has it (header names are case-insensitive). */
export function headerValues(requests: string[], name: string): string[] {
  const re = new RegExp(`^${name}: *(.*)$`, 'gim');
  return requests.flatMap((r) => [...r.matchAll(re)].map((m) => m[1]!.trim()));
}
