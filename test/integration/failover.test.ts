/**
 * Failover with real processes and a real three-server JetStream cluster: leaders are child
 * processes drawing under load with sync 'replicated' and recording every acknowledgement
 * (test/fixtures/replica-node.mjs); they are SIGKILLed or SIGSTOPped, and what they
 * acknowledged is checked against the next leader's state.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { expectContains, readAcks, ReplicaNode, tally, until, kAckFields, type NodeConfig } from '../helpers/replica-node.js';
import { tmpDir } from '../helpers/tmp.js';

let cluster: NatsCluster;
let groups = 0;
const nodes: ReplicaNode[] = [];

beforeAll(async () => {
  cluster = await startCluster({ label: 'nats-failover' });
}, 90_000);

afterAll(async () => {
  await Promise.allSettled(nodes.map((n) => n.kill()));
  await cluster?.stop();
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function groupName(label: string): string {
  return `${label}${process.pid}x${groups++}`;
}

async function start(cfg: NodeConfig): Promise<ReplicaNode> {
  const node = await ReplicaNode.start(cfg);
  nodes.push(node);
  return node;
}

const ackCount = (file: string): number => readAcks(file).length / kAckFields;

describe('failover under load (sync: replicated)', () => {
  it('leader SIGKILLed ten times, the follower takes over by promote() and by autoPromote in turn: every acknowledged draw survives, request ids keep increasing; a lost disk comes back as a follower and converges', async () => {
    const stream = groupName('fo');
    const dirs = [tmpDir('node0'), tmpDir('node1')];
    const ackDir = tmpDir('acks');
    const ackFiles: string[] = [];
    const leaseMs = 1000;
    const make = (slot: number, role: 'leader' | 'follower', autoPromote: boolean): Promise<ReplicaNode> => {
      const ackFile = join(ackDir, `acks-${ackFiles.length}.bin`);
      ackFiles.push(ackFile);
      return start({ dir: dirs[slot]!, stream, servers: cluster.urls, role, autoPromote, node: `node${slot}`, advertise: `http://node${slot}.test:8080`, ackFile, leaseMs, timeoutMs: 4000, inflight: 2000, load: true, snapshotEveryRecords: 3000 });
    };
    const autoRound = (r: number): boolean => r % 2 === 1;
    let leaderSlot = 0;
    let leader = await make(0, 'leader', false);
    let follower = await make(1, 'follower', autoRound(0));
    const failoverMs: number[] = [];
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const auto = autoRound(round);
      const leaderFile = leader.cfg.ackFile;
      const floor = ackCount(leaderFile);
      await until(`round ${round}: the leader's acknowledgements`, () => (ackCount(leaderFile) >= floor + 3000 ? true : undefined), 60_000);
      await leader.kill();
      const killedAt = Date.now();
      const before = tally(ackFiles.map(readAcks));
      if (!auto) await follower.request('promote');
      await follower.waitRole('leader', 30_000);
      const first = await follower.waitEvent((e) => e.type === 'firstAck', 30_000, 'first acknowledgement');
      failoverMs.push((first.at as number) - killedAt);
      await until(`round ${round}: the new leader's acknowledgements`, () => (ackCount(follower.cfg.ackFile) >= 1000 ? true : undefined), 30_000);

      // Acknowledgements counted before the state is read: the state holds at least those.
      const acked = tally(ackFiles.map(readAcks));
      const { states } = await follower.states();
      expectContains(states, acked, `round ${round} (${auto ? 'autoPromote' : 'promote()'})`);
      const mine = tally([readAcks(follower.cfg.ackFile)]);
      expect(mine.minRequestId, `round ${round}: the new leader's ids start above every acknowledged one`).toBeGreaterThan(before.maxRequestId);

      // The dead node comes back as a follower; every third round its disk is lost.
      const lostDisk = round % 3 === 2;
      if (lostDisk) rmSync(dirs[leaderSlot]!, { recursive: true, force: true });
      const revived = await make(leaderSlot, 'follower', autoRound(round + 1));
      if (lostDisk) {
        const { recovery } = await revived.states();
        expect(recovery.pools, 'an empty directory starts from the uploaded snapshots').toBeGreaterThan(0);
        expect(recovery.snapshotsLoaded).toBeGreaterThan(0);
      }
      [leader, follower] = [follower, revived];
      leaderSlot = 1 - leaderSlot;
    }
    await leader.request('load', { on: false });
    const all = tally(ackFiles.map(readAcks));
    const final = await leader.states();
    expectContains(final.states, all, 'final');
    await until('the last follower to converge', async () => (JSON.stringify((await follower.states()).states) === JSON.stringify(final.states) ? true : undefined), 60_000, 200);
    const m = final.metrics.replication;
    console.log(
      `[failover] ${rounds} failovers, ${all.draws} acknowledged draws in ${all.records} records; leader killed -> first acknowledgement of the next: ` +
        `median ${median(failoverMs)} ms (promote(): ${failoverMs.filter((_, r) => !autoRound(r)).join(', ')}; autoPromote with leaseMs ${leaseMs}: ${failoverMs.filter((_, r) => autoRound(r)).join(', ')}); ` +
        `last leader: term ${m.term}, ${m.messages} messages`,
    );
    await Promise.all([leader.request('close'), follower.request('close')]);
  }, 300_000);

  it('split brain: the leader frozen with SIGSTOP past its lease, the follower promotes; resumed with SIGCONT, the old leader is refused by the stream and every draw it acknowledged is in the new leader\'s state', async () => {
    const stream = groupName('sb');
    const leaseMs = 1000;
    const cfg = (slot: number, role: 'leader' | 'follower'): NodeConfig => ({
      dir: tmpDir(`sb${slot}`),
      stream,
      servers: cluster.urls,
      role,
      autoPromote: role === 'follower',
      node: `sb${slot}`,
      ackFile: join(tmpDir(`sb-acks${slot}`), 'acks.bin'),
      leaseMs,
      timeoutMs: 4000,
      inflight: 2000,
      load: true,
    });
    const old = await start(cfg(0, 'leader'));
    const next = await start(cfg(1, 'follower'));
    await until("the leader's acknowledgements", () => (ackCount(old.cfg.ackFile) >= 3000 ? true : undefined), 60_000);
    old.signal('SIGSTOP');
    await new Promise((r) => setTimeout(r, 200)); // a write(2) under way when it stopped has landed
    const atStop = ackCount(old.cfg.ackFile);
    await next.waitRole('leader', 30_000);
    await until("the new leader's acknowledgements", () => (ackCount(next.cfg.ackFile) >= 2000 ? true : undefined), 30_000);
    const frozenMs = 2.5 * leaseMs;
    await new Promise((r) => setTimeout(r, frozenMs));
    old.signal('SIGCONT');
    await old.waitRole('deposed', 30_000);
    // Its calls in flight when it froze failed: ERR_NOT_LEADER once the stream refused them, or
    // ERR_REPLICATION_UNAVAILABLE when their timer (overdue after SIGCONT) fired first. Never acknowledged.
    const oldErrors = old.events.filter((e) => e.type === 'error').map((e) => e.code);
    for (const code of oldErrors) expect(['ERR_NOT_LEADER', 'ERR_REPLICATION_UNAVAILABLE']).toContain(code);
    // Every call from now on is refused.
    await expect(old.request('draw')).rejects.toMatchObject({ code: 'ERR_NOT_LEADER' });
    await next.request('load', { on: false });
    await old.request('load', { on: false });

    const oldAcks = readAcks(old.cfg.ackFile);
    const late = tally([oldAcks], atStop);
    const newAcks = tally([readAcks(next.cfg.ackFile)]);
    const acked = tally([oldAcks, readAcks(next.cfg.ackFile)]);
    const { states, metrics } = await next.states();
    expectContains(states, acked, 'split brain');
    // What the old leader acknowledged after it resumed was stored before the fence: below every id of the new leader.
    if (late.records > 0) expect(late.maxRequestId).toBeLessThan(newAcks.minRequestId);
    expect(late.draws, 'at most the groups in flight when it froze').toBeLessThanOrEqual(2000 * 100);
    // A deposed leader serves no reads either: its memory may hold draws the stream refused.
    await expect(old.states()).rejects.toMatchObject({ code: 'ERR_NOT_LEADER' });
    console.log(
      `[split-brain] frozen ${frozenMs} ms (leaseMs ${leaseMs}); old leader: ${atStop} acknowledgements before SIGSTOP, ${late.records} after SIGCONT (all stored before the fence), then ERR_NOT_LEADER; ` +
        `new leader term ${metrics.replication.term}: ${newAcks.draws} draws, ids from ${newAcks.minRequestId} (old leader's highest ${tally([oldAcks]).maxRequestId})`,
    );
    await Promise.all([old.request('close'), next.request('close')]);
  }, 180_000);
});

