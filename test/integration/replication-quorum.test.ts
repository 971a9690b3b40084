/**
 * A replicating leader (a child process drawing under load, sync 'replicated') while the NATS
 * cluster under it loses one server, then a second one (no quorum), then gets both back.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { expectContains, kAckFields, readAcks, ReplicaNode, tally, until } from '../helpers/replica-node.js';
import { tmpDir } from '../helpers/tmp.js';

let cluster: NatsCluster;
let node: ReplicaNode | undefined;

beforeAll(async () => {
  cluster = await startCluster({ label: 'nats-quorum' });
}, 90_000);

afterAll(async () => {
  await node?.kill();
  await cluster?.stop();
});

const ackCount = (file: string): number => readAcks(file).length / kAckFields;

/** Ack records (their times) in [from, to). */
function acksBetween(file: string, from: number, to: number): number {
  const a = readAcks(file);
  let n = 0;
  for (let i = 0; i < a.length; i += kAckFields) if (a[i + 4]! >= from && a[i + 4]! < to) n++;
  return n;
}

describe('the replicated log losing servers', () => {
  it('one NATS server killed: draws go on; two killed: calls fail with ERR_REPLICATION_UNAVAILABLE after the bounded wait and nothing is acknowledged; restarted: service resumes with nothing lost', async () => {
    const stream = `quorum${process.pid}`;
    const timeoutMs = 3000;
    const ackFile = join(tmpDir('quorum-acks'), 'acks.bin');
    node = await ReplicaNode.start({ dir: tmpDir('quorum-leader'), stream, servers: cluster.urls, role: 'leader', node: 'q0', ackFile, leaseMs: 1000, timeoutMs, inflight: 1000, load: true });
    await until('acknowledgements', () => (ackCount(ackFile) >= 2000 ? true : undefined), 60_000);
    await cluster.waitStreamCurrent(stream);
    // The stream's own Raft leader stays up (killing it costs an election of several seconds,
    // longer than timeoutMs: calls would fail, as with no quorum).
    const streamLeader = await until('the stream leader', () => cluster.streamLeader(stream));
    const others = [0, 1, 2].filter((i) => i !== streamLeader);

    await cluster.kill(others[0]!);
    const oneDown = ackCount(ackFile);
    await until('draws after one server died', () => (ackCount(ackFile) >= oneDown + 2000 ? true : undefined), 30_000);
    expect(node.events.filter((e) => e.type === 'error')).toEqual([]);

    await cluster.kill(others[1]!);
    const twoDownAt = Date.now();
    const failed = await node.waitEvent((e) => e.type === 'error' && e.code === 'ERR_REPLICATION_UNAVAILABLE', timeoutMs + 10_000, 'ERR_REPLICATION_UNAVAILABLE');
    const waitedMs = (failed.at as number) - twoDownAt;
    expect(waitedMs, 'failed after the bounded wait, not before').toBeGreaterThanOrEqual(timeoutMs - 1000);
    expect(waitedMs).toBeLessThan(timeoutMs + 5000);
    await new Promise((r) => setTimeout(r, 2000)); // calls keep failing meanwhile
    const restartAt = Date.now();
    expect(acksBetween(ackFile, failed.at as number, restartAt), 'acknowledged without a quorum').toBe(0);

    await Promise.all(others.map((i) => cluster.restart(i)));
    const back = ackCount(ackFile);
    await until('draws after the servers came back', () => (ackCount(ackFile) >= back + 2000 ? true : undefined), 60_000, 100);
    const resumedMs = Date.now() - restartAt;

    await node.request('load', { on: false });
    const acked = tally([readAcks(ackFile)]);
    const { states, metrics } = await node.states();
    expect(metrics.replication.role).toBe('leader');
    expectContains(states, acked, 'after the outage');
    console.log(
      `[quorum] one server down: no errors; two down: ERR_REPLICATION_UNAVAILABLE after ${waitedMs} ms (timeoutMs ${timeoutMs}), 0 acknowledged for ${restartAt - (failed.at as number)} ms; ` +
        `both back: acknowledging again within ${resumedMs} ms; ${acked.draws} draws acknowledged in all, every one in the state`,
    );
    await node.request('close');
  }, 240_000);
});
