/**
 * What replication relies on, checked against a real three-server JetStream cluster (Debian's
 * nats-server 2.9.10) through the `nats` 2.29 client. Each test states one behaviour as
 * assertions; where a figure matters (election gap, time to writable) it is measured and printed
 * with the assertion bounding it generously. Streams are R3 on file storage unless said.
 *
 * Findings that shape the design (details in each test):
 * - A conditional publish on a stale expectation is refused: NatsError code '400', api_error
 *   err_code 10071, message 'wrong last sequence: <actual last>'.
 * - R3 checks Nats-Expected-Last-Subject-Sequence against what the leader has APPLIED, before the
 *   Nats-Msg-Id dedupe: a retried publish (same msgID, same now-stale expectation) is refused
 *   'wrong last sequence: <seq of the stored original>', not acknowledged as a duplicate; and
 *   publishes chained on the subject sequence cannot be pipelined (only the first of a burst is
 *   stored). Nats-Expected-Last-Sequence (stream level) counts proposals in flight: chained on
 *   it, 50 pipelined publishes are stored in order, and a retry is acknowledged as a duplicate.
 * - One server of three down: writes go on, but when it led the stream, publishes get 503 (no
 *   responders) until a new stream leader is elected, 4-7 s later here. Two down: a publish
 *   whose leader survives times out ('TIMEOUT' after the `timeout`); its outcome is unknown: it
 *   was in the leader's log and was stored once the quorum returned in every run here.
 * - max_payload bounds payload PLUS headers (a msgID or an expectation adds a header).
 */
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type NatsError,
  type PubAck,
  StorageType,
  type StoredMsg,
} from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsServerVersion, startCluster, type NatsCluster } from '../helpers/nats-cluster.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

interface DirectApi {
  getMessage(stream: string, query: { seq: number; next_by_subj: string } | { last_by_subj: string }): Promise<StoredMsg>;
}

interface Refusal {
  code: string | undefined;
  message: string;
  errCode: number | undefined;
  ms: number;
}

/** The error a promise rejects with, timed from `since`; fails the test if it resolves. */
/** `fn` until it succeeds, for at most `ms`; then the last error, with every code seen. */
async function retrying<T>(what: string, fn: () => Promise<T>, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  const codes: string[] = [];
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      codes.push(String((err as NatsError).code ?? (err as Error).message));
      if (Date.now() - t0 > ms) throw new Error(`${what}: no success within ${ms} ms (errors: ${codes.join(', ')})`, { cause: err });
      await sleep(200);
    }
  }
}

async function refusal(p: Promise<unknown>, since = Date.now()): Promise<Refusal> {
  try {
    const v = await p;
    throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
  } catch (err) {
    const e = err as NatsError;
    if (e.message?.startsWith('expected a refusal')) throw err;
    return { code: e.code, message: e.message, errCode: e.api_error?.err_code, ms: Date.now() - since };
  }
}

/** Outcome per publish: the stored sequence, or the refusal's message. */
function outcomes(results: PromiseSettledResult<PubAck>[]): (number | string)[] {
  return results.map((r) => (r.status === 'fulfilled' ? r.value.seq : (r.reason as Error).message));
}

const note = (what: string): void => {
  console.log(`[nats-probes] ${what}`);
};

describe('JetStream behaviours replication relies on (nats-server 2.9, nats 2.29, R3 on loopback)', () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;

  async function reconnectMain(): Promise<void> {
    await nc?.close();
    nc = await cluster.connect();
    jsm = await nc.jetstreamManager();
    js = nc.jetstream({ timeout: 5000 });
  }

  beforeAll(async () => {
    const t = Date.now();
    // Idle, this takes ~1 s; the bounds leave room for a machine busy with other test files.
    cluster = await startCluster({ label: 'nats-probes', processStartMs: 10_000, readyTimeoutMs: 25_000 });
    await reconnectMain();
    note(`cluster of 3 up and JetStream writable in ${Date.now() - t} ms`);
  }, 40_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  async function addStream(name: string, extra: Record<string, unknown> = {}): Promise<void> {
    await jsm.streams.add({ name, subjects: [`${name}.s.>`], num_replicas: 3, storage: StorageType.File, ...extra });
  }

  it('runs the packaged nats-server 2.9 and the nats 2.29 client, clustered with R3 streams', async () => {
    const version = natsServerVersion();
    note(`nats-server ${version}`);
    expect(version).toMatch(/^v2\.9\.\d+$/);
    expect(nc.info?.version).toBe(version.slice(1));
    expect(nc.info?.jetstream).toBe(true);
    expect(nc.info?.max_payload).toBe(8 * 1024 * 1024);
    const client = JSON.parse(readFileSync(new URL('../../node_modules/nats/package.json', import.meta.url), 'utf8'));
    expect(client.version).toMatch(/^2\.29\./);
    const jsz = await cluster.servers[0]!.monitor('jsz');
    expect(jsz.meta_cluster.cluster_size).toBe(3);
    expect(jsz.config.store_dir).toBe(`${cluster.servers[0]!.dir}/jetstream`);
  });

  it('a: a publish conditional on the last sequence of its subject is stored when current, refused when stale', async () => {
    await addStream('PA');
    const info = await jsm.streams.info('PA');
    expect(info.config.num_replicas).toBe(3);
    expect(info.config.storage).toBe(StorageType.File);
    expect(info.config.duplicate_window).toBe(120_000_000_000); // 2 min in ns, the default
    expect(info.cluster?.replicas).toHaveLength(2);

    // 0 means "no message on this subject yet".
    const a1 = await js.publish('PA.s.0', enc.encode('r1'), { expect: { lastSubjectSequence: 0 } });
    expect(a1).toMatchObject({ stream: 'PA', seq: 1, duplicate: false });
    // Another subject of the same stream does not move this subject's last sequence.
    const other = await js.publish('PA.s.1', enc.encode('x'), { expect: { lastSubjectSequence: 0 } });
    expect(other.seq).toBe(2);
    const a2 = await js.publish('PA.s.0', enc.encode('r2'), { expect: { lastSubjectSequence: 1 } });
    expect(a2.seq).toBe(3);

    for (const stale of [0, 1, 2, 99]) {
      const r = await refusal(js.publish('PA.s.0', enc.encode('stale'), { expect: { lastSubjectSequence: stale } }));
      expect(r).toMatchObject({ code: '400', errCode: 10071, message: 'wrong last sequence: 3' });
    }
    // Stream-level expectation: same error, with the stream's last sequence.
    const r = await refusal(js.publish('PA.s.0', enc.encode('stale'), { expect: { lastSequence: 2 } }));
    expect(r).toMatchObject({ code: '400', errCode: 10071, message: 'wrong last sequence: 3' });
    expect((await jsm.streams.info('PA')).state.messages).toBe(3);
  });

  it('b: a retried publish (same msgID, same stale expectation) is refused on the subject sequence in R3, a duplicate otherwise', async () => {
    await addStream('PB');
    const first = await js.publish('PB.s.0', enc.encode('a'), { expect: { lastSubjectSequence: 0 } });
    const expected = first.seq;
    const stored = await js.publish('PB.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSubjectSequence: expected } });
    expect(stored).toMatchObject({ seq: 2, duplicate: false });

    // The retry of a publish whose ack was lost: refused, naming the original's sequence.
    const retry = await refusal(
      js.publish('PB.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSubjectSequence: expected } }),
    );
    expect(retry).toMatchObject({ code: '400', errCode: 10071, message: `wrong last sequence: ${stored.seq}` });
    // ...so a retrying leader can recognise its own record: the subject's last message carries its msgID.
    const last = await jsm.streams.getMessage('PB', { last_by_subj: 'PB.s.0' });
    expect(last.seq).toBe(stored.seq);
    expect(last.header.get('Nats-Msg-Id')).toBe('rec-7');

    // The dedupe itself works: with the current expectation, or none, it is a duplicate.
    const dupCurrent = await js.publish('PB.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSubjectSequence: stored.seq } });
    expect(dupCurrent).toMatchObject({ seq: stored.seq, duplicate: true });
    const dupBare = await js.publish('PB.s.0', enc.encode('rec-7'), { msgID: 'rec-7' });
    expect(dupBare).toMatchObject({ seq: stored.seq, duplicate: true });
    // With a stale STREAM-level expectation (Nats-Expected-Last-Sequence) the dedupe wins.
    const dupStream = await js.publish('PB.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSequence: expected } });
    expect(dupStream).toMatchObject({ seq: stored.seq, duplicate: true });
    expect((await jsm.streams.info('PB')).state.messages).toBe(2);

    // An R1 stream (no Raft proposal path) checks the dedupe first: a duplicate. R1 would mislead.
    await jsm.streams.add({ name: 'PB1', subjects: ['PB1.s.>'], num_replicas: 1, storage: StorageType.File });
    const r1 = await js.publish('PB1.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSubjectSequence: 0 } });
    const r1retry = await js.publish('PB1.s.0', enc.encode('rec-7'), { msgID: 'rec-7', expect: { lastSubjectSequence: 0 } });
    expect(r1retry).toMatchObject({ seq: r1.seq, duplicate: true });
  });

  it('c: pipelined publishes chain on the stream sequence (all stored in order, a refusal refuses the rest), not on the subject sequence', async () => {
    await addStream('PC');
    await addStream('PD');
    const n = 50;

    // Chained on the subject's last sequence, all sent at once: R3 checks against the applied
    // state only, so the first is stored and the rest refused with the applied last sequence.
    const base = (await js.publish('PC.s.0', enc.encode('base'))).seq;
    const bySubject = outcomes(
      await Promise.allSettled(
        Array.from({ length: n }, (_, i) => js.publish('PC.s.0', enc.encode(`m${i}`), { expect: { lastSubjectSequence: base + i } })),
      ),
    );
    const storedPrefix = bySubject.findIndex((o) => typeof o === 'string');
    note(`c: ${n} pipelined publishes chained on the SUBJECT sequence: ${storedPrefix} stored, then refused (${bySubject[storedPrefix]})`);
    expect(storedPrefix).toBeGreaterThanOrEqual(1);
    expect(storedPrefix).toBeLessThan(n);
    expect(bySubject.slice(0, storedPrefix)).toEqual(Array.from({ length: storedPrefix }, (_, i) => base + 1 + i));
    for (const o of bySubject.slice(storedPrefix)) expect(o).toMatch(/^wrong last sequence: \d+$/);

    // Chained on the stream's last sequence (one writer for the whole stream), across two
    // subjects: all 50 in flight are stored, in order.
    const start = (await jsm.streams.info('PD')).state.last_seq;
    const subjectOf = (i: number): string => `PD.s.${i % 2}`;
    const byStream = outcomes(
      await Promise.allSettled(
        Array.from({ length: n }, (_, i) => js.publish(subjectOf(i), enc.encode(`m${i}`), { expect: { lastSequence: start + i } })),
      ),
    );
    expect(byStream).toEqual(Array.from({ length: n }, (_, i) => start + 1 + i));
    for (let i = 0; i < n; i++) {
      const m = await jsm.streams.getMessage('PD', { seq: start + 1 + i });
      expect([m.subject, dec.decode(m.data)]).toEqual([subjectOf(i), `m${i}`]);
    }

    // One in the middle carries a wrong expectation: those before it are stored, it and every
    // later one are refused, naming the last stored sequence. No gap, no reordering.
    const start2 = start + n;
    const bad = 25;
    const withBad = outcomes(
      await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          js.publish(subjectOf(i), enc.encode(`n${i}`), { expect: { lastSequence: i === bad ? 9999 : start2 + i } }),
        ),
      ),
    );
    expect(withBad.slice(0, bad)).toEqual(Array.from({ length: bad }, (_, i) => start2 + 1 + i));
    expect(withBad.slice(bad)).toEqual(Array.from({ length: n - bad }, () => `wrong last sequence: ${start2 + bad}`));
    expect((await jsm.streams.info('PD')).state.last_seq).toBe(start2 + bad);
  });

  it('d: KV bucket R3: create, compare-and-set update, watch, history; max_age (ttl) expires a key silently', async () => {
    const kv = await js.views.kv('PLEASE', { replicas: 3, history: 5 });
    const status = await kv.status();
    expect(status).toMatchObject({ replicas: 3, history: 5, ttl: 0 });
    expect(status.streamInfo.config.num_replicas).toBe(3);

    const r1 = await kv.create('leader', enc.encode('node-a'));
    const again = await refusal(kv.create('leader', enc.encode('node-b')));
    expect(again).toMatchObject({ code: '400', errCode: 10071, message: `wrong last sequence: ${r1}` });

    const updates: { value: string; revision: number }[] = [];
    const watcher = await kv.watch({ key: 'leader' });
    const watching = (async () => {
      for await (const e of watcher) {
        updates.push({ value: dec.decode(e.value), revision: e.revision });
        if (updates.length === 3) break;
      }
    })();

    const r2 = await kv.update('leader', enc.encode('node-a:renew'), r1);
    expect(r2).toBeGreaterThan(r1);
    const stale = await refusal(kv.update('leader', enc.encode('node-b'), r1));
    expect(stale).toMatchObject({ code: '400', errCode: 10071, message: `wrong last sequence: ${r2}` });
    const r3 = await kv.update('leader', enc.encode('node-b'), r2);

    await Promise.race([watching, sleep(5000).then(() => watcher.stop())]);
    expect(updates).toEqual([
      { value: 'node-a', revision: r1 },
      { value: 'node-a:renew', revision: r2 },
      { value: 'node-b', revision: r3 },
    ]);
    const history: number[] = [];
    for await (const e of await kv.history({ key: 'leader' })) history.push(e.revision);
    expect(history).toEqual([r1, r2, r3]);
    expect((await kv.get('leader'))?.revision).toBe(r3);

    // A bucket-wide max_age (ttl): a key not renewed disappears, with no event to a watcher.
    const ttlMs = 1000;
    const short = await js.views.kv('PTTL', { replicas: 3, ttl: ttlMs });
    expect((await short.status()).ttl).toBe(ttlMs);
    const seen: string[] = [];
    const w2 = await short.watch({ key: 'lease' });
    void (async () => {
      for await (const e of w2) seen.push(`${e.operation}:${e.revision}`);
    })();
    const rev = await short.create('lease', enc.encode('holder'));
    const put = Date.now();
    while ((await short.get('lease')) !== null) {
      expect(Date.now() - put, 'key expired within 3 x ttl').toBeLessThan(3 * ttlMs + 2000);
      await sleep(100);
    }
    const expiredAfter = Date.now() - put;
    note(`d: KV key with bucket ttl ${ttlMs} ms gone after ${expiredAfter} ms`);
    expect(expiredAfter).toBeGreaterThanOrEqual(ttlMs - 50);
    await sleep(300);
    w2.stop();
    expect(seen).toEqual([`PUT:${rev}`]);
    // Once expired, the old revision no longer matches and create works again.
    expect((await refusal(short.update('lease', enc.encode('late renew'), rev))).errCode).toBe(10071);
    expect(await short.create('lease', enc.encode('next holder'))).toBeGreaterThan(rev);
  });

  it('e: object store R3: put/get of 1 MiB and 8 MiB objects, list, delete', async () => {
    const os = await js.views.os('PSNAP', { replicas: 3 });
    expect((await os.status()).replicas).toBe(3);
    const small = randomBytes(1024 * 1024);
    const big = randomBytes(8 * 1024 * 1024);
    let t = Date.now();
    const i1 = await os.putBlob({ name: 'snap-1' }, small);
    const putSmall = Date.now() - t;
    t = Date.now();
    const i8 = await os.putBlob({ name: 'snap-8' }, big);
    const putBig = Date.now() - t;
    expect([i1.size, i8.size]).toEqual([small.length, big.length]);
    expect(i8.chunks).toBe(64); // 128 KiB chunks: max_payload does not bound an object
    t = Date.now();
    const got = await os.getBlob('snap-8');
    const getBig = Date.now() - t;
    expect(Buffer.from(got!).equals(big)).toBe(true);
    expect(Buffer.from((await os.getBlob('snap-1'))!).equals(small)).toBe(true);
    note(`e: object store R3: put 1 MiB ${putSmall} ms, put 8 MiB ${putBig} ms, get 8 MiB ${getBig} ms`);
    expect((await os.list()).map((o) => o.name).sort()).toEqual(['snap-1', 'snap-8']);
    await os.delete('snap-1');
    expect((await os.list()).map((o) => o.name)).toEqual(['snap-8']);
    expect(await os.getBlob('snap-1')).toBeNull();
    expect((await os.info('snap-1'))?.deleted ?? true).toBe(true);
  });

  it('f: purging one subject up to a sequence keeps its later messages and the other subjects', async () => {
    await addStream('PF');
    const seqs: Record<string, number[]> = { 'PF.s.0': [], 'PF.s.1': [] };
    for (let i = 0; i < 6; i++) {
      for (const subj of Object.keys(seqs)) seqs[subj]!.push((await js.publish(subj, enc.encode(`${subj}#${i}`))).seq);
    }
    const cut = seqs['PF.s.0']![3]!; // purge PF.s.0 below its 4th message
    const res = await jsm.streams.purge('PF', { filter: 'PF.s.0', seq: cut });
    expect(res).toMatchObject({ success: true, purged: 3 });
    const info = await jsm.streams.info('PF');
    expect(info.state.messages).toBe(9);
    expect(info.state.first_seq).toBe(seqs['PF.s.1']![0]);
    expect((await refusal(jsm.streams.getMessage('PF', { seq: seqs['PF.s.0']![2]! }))).errCode).toBe(10037); // no message found
    expect(dec.decode((await jsm.streams.getMessage('PF', { seq: cut })).data)).toBe('PF.s.0#3');
    expect(dec.decode((await jsm.streams.getMessage('PF', { seq: seqs['PF.s.1']![0]! })).data)).toBe('PF.s.1#0');
    // A purge never removes the subject's last message unless told (keep: 1 keeps it).
    expect(await jsm.streams.purge('PF', { filter: 'PF.s.1', keep: 1 })).toMatchObject({ purged: 5 });
    expect((await jsm.streams.getMessage('PF', { last_by_subj: 'PF.s.1' })).seq).toBe(seqs['PF.s.1']![5]);
  });

  it('g: a subject read in order from a stream sequence: ordered consumer, by_start_sequence consumer, direct get, last by subject', async () => {
    await addStream('PG', { allow_direct: true });
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) {
      await js.publish('PG.s.1', enc.encode(`other${i}`));
      seqs.push((await js.publish('PG.s.0', enc.encode(`rec${i}`))).seq);
    }
    const from = seqs[8]!;
    const want = Array.from({ length: 12 }, (_, i) => `rec${8 + i}`);

    // Ordered consumer (ephemeral, client-side flow; single filter subject works on 2.9).
    const oc = await js.consumers.get('PG', {
      filterSubjects: 'PG.s.0',
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    const viaOrdered: string[] = [];
    const seqsOrdered: number[] = [];
    for await (const m of await oc.fetch({ max_messages: want.length, expires: 5000 })) {
      viaOrdered.push(dec.decode(m.data));
      seqsOrdered.push(m.seq);
      if (viaOrdered.length === want.length) break;
    }
    expect(viaOrdered).toEqual(want);
    expect(seqsOrdered).toEqual(seqs.slice(8));

    // A consumer made through the manager: by_start_sequence + filter_subject, no acks, R1
    // consumer on an R3 stream (the server's default for ephemerals), pending count known.
    const ci = await jsm.consumers.add('PG', {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      filter_subject: 'PG.s.0',
      ack_policy: AckPolicy.None,
      inactive_threshold: 30_000_000_000,
    });
    expect(ci.num_pending).toBe(want.length);
    const c = await js.consumers.get('PG', ci.name);
    const viaConsumer: string[] = [];
    for await (const m of await c.fetch({ max_messages: want.length, expires: 5000 })) {
      viaConsumer.push(dec.decode(m.data));
      if (viaConsumer.length === want.length) break;
    }
    expect(viaConsumer).toEqual(want);
    expect((await c.info()).num_pending).toBe(0);

    // Message by message without a consumer: direct get of the next message on the subject
    // (`allow_direct` streams; any replica answers, so a follower may be behind). The 2.29
    // client has it on the manager's implementation, not in the JetStreamManager type.
    const direct = (jsm as unknown as { direct: DirectApi }).direct;
    const viaDirect: string[] = [];
    for (let seq = from; ; ) {
      let m;
      try {
        m = await direct.getMessage('PG', { seq, next_by_subj: 'PG.s.0' });
      } catch (err) {
        expect((err as NatsError).code).toBe('404'); // past the end
        break;
      }
      viaDirect.push(dec.decode(m.data));
      seq = m.seq + 1;
    }
    expect(viaDirect).toEqual(want);

    // The last message of a subject, through the API (leader) and through direct get.
    const last = await jsm.streams.getMessage('PG', { last_by_subj: 'PG.s.0' });
    expect([last.seq, dec.decode(last.data)]).toEqual([seqs[19], 'rec19']);
    expect((await direct.getMessage('PG', { last_by_subj: 'PG.s.0' })).seq).toBe(seqs[19]);
    expect((await refusal(jsm.streams.getMessage('PG', { last_by_subj: 'PG.s.9' }))).errCode).toBe(10037);
  });

  it('h: one server down keeps writes going (a gap while the stream leader is re-elected), two down time out, restarted they resume', async () => {
    await addStream('PH');
    // Publishes go through a client pinned to a server that stays up: a publish written to the
    // socket of a server that has just died is lost before JetStream sees it (a TIMEOUT that
    // says nothing about the stream), which is the client's failover, not the stream's.
    let pinned = js;
    const pin = async (index: number): Promise<void> => {
      pinned = (await cluster.connect({ servers: [cluster.urls[index]!] })).jetstream();
    };
    // Every publish carries a msgID (its tag), so a retry after a lost ack cannot store twice.
    const pub = (tag: string, timeout = 2000) => pinned.publish('PH.s.0', enc.encode(tag), { timeout, msgID: tag });
    try {
      await js.publish('PH.s.0', enc.encode('warm'), { msgID: 'warm', timeout: 10_000 });
      // A stream just created may still lack a replica: killing a server before all are
      // current can leave it without quorum although two servers run.
      await cluster.waitStreamCurrent('PH');
      const leader = (await cluster.streamLeader('PH'))!;
      expect(leader).toBeGreaterThanOrEqual(0);
      const [f1, f2] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
      await pin(leader);

      // One follower killed: no interruption.
      await cluster.kill(f1);
      let t = Date.now();
      expect((await pub('one-down', 10_000)).seq).toBeGreaterThan(1);
      note(`h: follower ${f1} SIGKILLed: next publish acknowledged in ${Date.now() - t} ms`);

      // Both followers killed: the leader alone cannot commit; the publish times out (and the
      // leader does not step down meanwhile, so no 503 either).
      await cluster.kill(f2);
      const noQuorum = await refusal(pub('no-quorum-1'));
      const noQuorum2 = await refusal(pub('no-quorum-2'));
      note(`h: two of three down: ${JSON.stringify(noQuorum)}, again ${JSON.stringify(noQuorum2)}`);
      for (const r of [noQuorum, noQuorum2]) {
        expect(r).toMatchObject({ code: 'TIMEOUT', message: 'TIMEOUT' });
        expect(r.ms).toBeGreaterThanOrEqual(1950);
        expect(r.ms).toBeLessThan(4000);
      }

      // Restarted: writable again. The timed-out publishes were appended to the leader's log
      // but not committed: once the quorum is back each may be committed (stored, though never
      // acknowledged) or dropped: their outcome is unknown to the publisher.
      t = Date.now();
      await cluster.restart(f1);
      await cluster.restart(f2);
      const restartMs = Date.now() - t;
      const errors: string[] = [];
      for (;;) {
        try {
          await pub('back');
          break;
        } catch (err) {
          errors.push(`${(err as NatsError).code}`);
          expect(Date.now() - t, `writable again (errors: ${errors.join(',')})`).toBeLessThan(20_000);
          await sleep(100);
        }
      }
      note(`h: both restarted in ${restartMs} ms; stream writable ${Date.now() - t} ms after the restarts began (errors meanwhile: ${errors.join(',') || 'none'})`);
      await cluster.waitStreamCurrent('PH');
      // Read back with retries: right after the restarts an API request can still time out
      // (seen once in CI on a loaded machine), which is not what this probe is about.
      const stored = await retrying('reading the stream back', async () => {
        const got: string[] = [];
        const oc = await pinned.consumers.get('PH', { filterSubjects: 'PH.s.0' });
        const total = (await (await pinned.jetstreamManager()).streams.info('PH')).state.messages;
        for await (const m of await oc.fetch({ max_messages: total, expires: 5000 })) {
          got.push(dec.decode(m.data));
          if (got.length === total) break;
        }
        return got;
      });
      note(`h: stored after the restarts: ${JSON.stringify(stored)}`);
      expect(stored.slice(0, 2)).toEqual(['warm', 'one-down']);
      expect(stored.at(-1)).toBe('back');
      expect([[], ['no-quorum-1'], ['no-quorum-2'], ['no-quorum-1', 'no-quorum-2']]).toContainEqual(stored.slice(2, -1));

      // The stream leader killed (all three up and current before): publishes fail fast with
      // 503 (no responders: only a stream leader listens) until a new leader is elected.
      await cluster.waitStreamCurrent('PH');
      const victim = (await cluster.streamLeader('PH'))!;
      await pin([0, 1, 2].find((i) => i !== victim)!);
      await cluster.kill(victim);
      t = Date.now();
      const gapErrors = new Map<string, number>();
      for (;;) {
        try {
          await pub('after-leader-kill');
          break;
        } catch (err) {
          const code = `${(err as NatsError).code}`;
          gapErrors.set(code, (gapErrors.get(code) ?? 0) + 1);
          expect(Date.now() - t, 'a new stream leader within 20 s').toBeLessThan(20_000);
          await sleep(50);
        }
      }
      const gap = Date.now() - t;
      const newLeader = await cluster.streamLeader('PH');
      note(`h: stream leader ${victim} SIGKILLed: writable again after ${gap} ms (new leader ${newLeader}; errors meanwhile: ${JSON.stringify([...gapErrors])})`);
      expect(newLeader).not.toBe(victim);
      for (const code of gapErrors.keys()) expect(['503', 'TIMEOUT']).toContain(code);
    } finally {
      // Whatever happened, the next tests get three servers back, and a fresh client: once
      // (in about 15 runs) the long-lived client, whose server had been killed and restarted,
      // saw every JetStream API request time out for 10+ s while new connections worked.
      for (const s of cluster.servers) if (!s.running) await s.restart();
      await cluster.waitReady();
      await reconnectMain();
    }
  }, 60_000);

  it('i: max_payload bounds payload plus headers: 1 MiB by default, raised to 8 MiB in the harness config', async () => {
    // The harness' servers: max_payload 8 MiB (8388608, the most nats-server recommends).
    await addStream('PI');
    const max = nc.info!.max_payload;
    expect(max).toBe(8 * 1024 * 1024);
    const nearly = randomBytes(max - 1024);
    const ack = await js.publish('PI.s.0', nearly, { expect: { lastSubjectSequence: 0 }, msgID: 'big', timeout: 10_000 });
    expect(Buffer.from((await jsm.streams.getMessage('PI', { seq: ack.seq })).data).equals(nearly)).toBe(true);
    // Exactly max_payload: stored when the publish has no header at all...
    const exact = randomBytes(max);
    const exactAck = await js.publish('PI.s.1', exact, { timeout: 10_000 });
    expect(Buffer.from((await jsm.streams.getMessage('PI', { seq: exactAck.seq })).data).equals(exact)).toBe(true);
    // ...refused by the client (nothing sent) when a header (msgID, expectation) is added.
    const withHeader = await refusal(js.publish('PI.s.0', exact, { expect: { lastSubjectSequence: ack.seq } }));
    expect(withHeader).toMatchObject({ code: 'MAX_PAYLOAD_EXCEEDED', message: 'MAX_PAYLOAD_EXCEEDED' });
    expect(readFileSync(cluster.servers[0]!.configFile, 'utf8')).toContain(`max_payload: ${8 * 1024 * 1024}`);

    // A server with the default configuration: 1 MiB, refused by the client before sending.
    const single = await startCluster({ size: 1, maxPayload: null, label: 'nats-default' });
    try {
      const nc1 = await single.connect();
      expect(nc1.info!.max_payload).toBe(1024 * 1024);
      const js1 = nc1.jetstream();
      await (await nc1.jetstreamManager()).streams.add({ name: 'PI1', subjects: ['PI1.>'] });
      expect((await js1.publish('PI1.a', randomBytes(1024 * 1024))).seq).toBe(1);
      expect((await js1.publish('PI1.a', randomBytes(1024 * 1024 - 1024), { msgID: 'x' })).seq).toBe(2);
      const over = await refusal(js1.publish('PI1.a', randomBytes(1024 * 1024), { msgID: 'y' }));
      expect(over).toMatchObject({ code: 'MAX_PAYLOAD_EXCEEDED' });
      expect(await refusal(js1.publish('PI1.a', randomBytes(1024 * 1024 + 1)))).toMatchObject({ code: 'MAX_PAYLOAD_EXCEEDED' });
      expect(() => nc1.publish('PI1.a', randomBytes(1024 * 1024 + 1))).toThrow(/MAX_PAYLOAD_EXCEEDED/);

      // A client that does not check: the server answers -ERR and closes the connection.
      const reply = await new Promise<string>((resolve, reject) => {
        const sock = netConnect(single.servers[0]!.ports.client, '127.0.0.1');
        let text = '';
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          text += d;
          if (text.includes('INFO') && !text.includes('PUB sent')) {
            text += 'PUB sent\n';
            sock.write(`CONNECT {"verbose":false}\r\nPUB PI1.a ${1024 * 1024 + 1}\r\n`);
          }
        });
        sock.on('close', () => resolve(text));
        sock.on('error', reject);
        setTimeout(() => {
          sock.destroy();
          reject(new Error(`no close: ${text}`));
        }, 5000).unref();
      });
      expect(reply).toMatch(/-ERR 'Maximum Payload Violation'/);
    } finally {
      await single.stop();
    }
  });

  it('j: the client refuses server-2.10 features on 2.9 instead of sending them', async () => {
    await addStream('PJ');
    const multi = await refusal(jsm.consumers.add('PJ', { filter_subjects: ['PJ.s.0', 'PJ.s.1'] }));
    expect(multi.message).toBe("consumer 'filter_subjects' requires server 2.10.0");
    const meta = await refusal(jsm.streams.add({ name: 'PJ2', subjects: ['PJ2.>'], metadata: { a: 'b' } }));
    expect(meta.message).toBe("stream 'metadata' requires server 2.10.0");
    const comp = await refusal(jsm.streams.add({ name: 'PJ3', subjects: ['PJ3.>'], compression: 's2' as never }));
    expect(comp.message).toMatch(/requires server 2\.10\.0/);
    const first = await refusal(jsm.streams.add({ name: 'PJ4', subjects: ['PJ4.>'], first_seq: 100 }));
    expect(first.message).toMatch(/requires server 2\.10\.0/);
  });
});
