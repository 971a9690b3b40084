/**
 * How busy the machine was with other work during a window: CPU time of the whole machine
 * (/proc/stat, Linux) minus this process's own (process.cpuUsage, every thread), as a
 * percentage of all cores. On a shared machine this says whether a slow sample was the engine
 * or a neighbour. Elsewhere than Linux the figures are NaN.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

interface Mark {
  wallMs: number;
  ownUs: number;
  busyTicks: number;
  stealTicks: number;
}

export interface CpuLoad {
  /** CPU used by other processes, % of all cores. */
  foreignPct: number;
  /** CPU taken by the hypervisor (steal), % of all cores. */
  stealPct: number;
  /** CPU used by this process (all threads), % of all cores. */
  ownPct: number;
}

// USER_HZ: the unit of /proc/stat. 100 on every mainstream Linux build.
const kTicksPerSecond = 100;

function readStat(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: f[0]! + f[1]! + f[2]! + f[5]! + f[6]!, steal: f[7] ?? 0 };
  } catch {
    return undefined;
  }
}

export class CpuMeter {
  #start: Mark | undefined;

  start(): void {
    const s = readStat();
    const u = process.cpuUsage();
    this.#start = { wallMs: performance.now(), ownUs: u.user + u.system, busyTicks: s?.busy ?? Number.NaN, stealTicks: s?.steal ?? Number.NaN };
  }

  stop(): CpuLoad {
    const a = this.#start;
    if (a === undefined) throw new Error('CpuMeter.stop() without start()');
    const s = readStat();
    const u = process.cpuUsage();
    const capacityMs = (performance.now() - a.wallMs) * availableParallelism();
    const ownMs = (u.user + u.system - a.ownUs) / 1000;
    const busyMs = (((s?.busy ?? Number.NaN) - a.busyTicks) * 1000) / kTicksPerSecond;
    const stealMs = (((s?.steal ?? Number.NaN) - a.stealTicks) * 1000) / kTicksPerSecond;
    return {
      foreignPct: Math.max(0, ((busyMs - ownMs) / capacityMs) * 100),
      stealPct: (stealMs / capacityMs) * 100,
      ownPct: (ownMs / capacityMs) * 100,
    };
  }
}
