/**
 * The servers a client may talk to (one URL, or the nodes of a replication group) and which one
 * it talks to now: it moves to the leader a follower names in ERR_NOT_LEADER, or to the next
 * URL when a node does not answer or names none.
 */
import { Pool } from 'undici';
import { EngineError, show } from '../errors.js';

export interface Endpoint {
  /** The URL as configured, normalised (origin + path, no trailing slash). */
  url: string;
  pool: Pool;
  basePath: string;
}

export interface EndpointOptions {
  connections: number;
  ca: string | Buffer | undefined;
}

function parse(raw: unknown, i: number | undefined): URL {
  const name = i === undefined ? 'options.url' : `options.url[${i}]`;
  let url: URL;
  try {
    url = new URL(raw as string);
  } catch {
    throw new EngineError('ERR_INVALID_CONFIG', `${name} must be an http(s) URL, got ${show(raw)}`, { details: { option: 'url' } });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EngineError('ERR_INVALID_CONFIG', `${name} must be an http(s) URL, got ${show(raw)}`, { details: { option: 'url' } });
  return url;
}

const normal = (url: URL): string => url.origin + url.pathname.replace(/\/+$/, '');

export class Endpoints {
  readonly #all: Endpoint[];
  #current = 0;

  constructor(urls: unknown, opts: EndpointOptions) {
    const list = Array.isArray(urls) ? urls : [urls];
    if (list.length === 0 || list.length > 64) throw new EngineError('ERR_INVALID_CONFIG', `options.url must be a URL or 1-64 URLs, got ${show(urls)}`, { details: { option: 'url' } });
    const parsed = list.map((u, i) => parse(u, Array.isArray(urls) ? i : undefined));
    this.#all = parsed.map((url) => ({
      url: normal(url),
      basePath: url.pathname.replace(/\/+$/, ''),
      pool: new Pool(url.origin, { connections: opts.connections, pipelining: 1, ...(opts.ca === undefined ? {} : { connect: { ca: opts.ca } }) }),
    }));
  }

  get current(): Endpoint {
    return this.#all[this.#current]!;
  }

  get size(): number {
    return this.#all.length;
  }

  /** A node refused a write and named the leader (or not): talk to that one, or try the next. */
  notLeader(from: Endpoint, leader: string | undefined): void {
    if (this.current !== from) return; // someone moved already
    if (leader !== undefined) {
      let named: string | undefined;
      try {
        named = normal(new URL(leader));
      } catch {
        named = undefined;
      }
      // Only a configured URL: a server's answer never sends the client's token elsewhere.
      const i = this.#all.findIndex((e) => e.url === named);
      if (i >= 0 && i !== this.#current) {
        this.#current = i;
        return;
      }
    }
    this.next(from);
  }

  /** The node did not answer: try the next one. */
  next(from: Endpoint): void {
    if (this.current === from) this.#current = (this.#current + 1) % this.#all.length;
  }

  async close(): Promise<void> {
    await Promise.all(this.#all.map((e) => e.pool.close()));
  }
}
