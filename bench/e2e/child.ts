/**
 * Scenarios that need other V8 flags (a larger young generation) run each sample in a child
 * Node process: the same entry script, told by an environment variable to take one sample and
 * print it as JSON. The child has its own scratch directory and removes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ScratchDir } from '../lib/paths.js';
import type { Profile } from './config.js';
import { runEngineSample, type LiveStatus, type Sample, type Scenario } from './scenarios.js';

export const kChildEnv = 'RPE_BENCH_CHILD_SAMPLE';

interface ChildRequest {
  scenario: Scenario;
  profile: Profile;
}

type SampleOut = { sample: Sample; options: Record<string, unknown> };

const running = new Set<ChildProcess>();

/** On Ctrl-C: stop the child samples too (each removes its scratch directory on SIGTERM). */
export function killChildSamples(): void {
  for (const c of running) c.kill('SIGTERM');
}

export function runChildSample(sc: Scenario, p: Profile, live: LiveStatus): Promise<SampleOut> {
  const entry = fileURLToPath(new URL('./engine-throughput.js', import.meta.url));
  const request: ChildRequest = { scenario: sc, profile: p };
  const flags = sc.nodeFlags ?? [];
  live(() => `in a child process: node ${flags.join(' ')}`);
  const child = spawn(process.execPath, [...flags, entry], {
    env: { ...process.env, [kChildEnv]: JSON.stringify(request) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`child sample of ${sc.id} (node ${flags.join(' ')}) exited with ${signal ?? code}: ${stderr.trim()}`));
        return;
      }
      try {
        const out = JSON.parse(stdout) as SampleOut;
        // JSON has no NaN: the child wrote null for figures it could not measure.
        for (const [k, v] of Object.entries(out.sample)) if (v === null) (out.sample as unknown as Record<string, number>)[k] = Number.NaN;
        resolve(out);
      } catch (err) {
        reject(new Error(`child sample of ${sc.id}: unreadable output ${JSON.stringify(stdout.slice(0, 200))}`, { cause: err }));
      }
    });
  });
}

/** The child's side: one sample of the requested scenario, printed as JSON on stdout. */
export async function childMain(json: string): Promise<number> {
  const { scenario, profile } = JSON.parse(json) as ChildRequest;
  const scratch = new ScratchDir();
  const onSignal = (): void => {
    scratch.remove();
    process.exit(143);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    const out = await runEngineSample(scenario, profile, scratch, () => {});
    process.stdout.write(JSON.stringify(out));
    return 0;
  } finally {
    scratch.remove();
  }
}
