import { afterEach, describe, expect, it } from 'vitest';
import type { MoveCounts } from '../../src/protocol/moves.js';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { startLoadProcess } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** The steps a `deploy --json` finished, with their durations, for failure messages. */
function stepsOf(stdout: string): string {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === 'step' && e.status === 'done')
    .map((e) => `${e.step} ${e.ms} ms`)
    .join(', ');
}

/** Requests the workers of `root`'s serving master reported so far. */
async function requestsServed(): Promise<number> {
  const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
  const workers: { requests: number }[] = status.pidfiles[0]?.master?.workers ?? [];
  return workers.reduce((sum, w) => sum + w.requests, 0);
}

// Users deploy at peak traffic. A machine this busy makes every worker slow, and a slow worker
// is not a broken release: verify must wait for its answer, not read slowness as failure.
describe('deploy on a saturated machine', () => {
  it('16 workers per master under saturating keep-alive load: deployed, 0 spurious rollbacks, 0 failed', async () => {
    const workers = 16;
    root = makeAppRoot();
    // Each request costs 5 ms of CPU, as a real handler does: the workers' loops turn slowly.
    const handler = 'const until = Date.now() + 5; while (Date.now() < until) {}';
    root.addRelease('a', listenerRelease('a', '', handler));
    root.addRelease('b', listenerRelease('b', '', handler));
    const master = await startMaster(root.dir, ['releases/a'], { workers });
    const load = startLoadProcess(master.url, { connections: 256, durationSec: 180 });
    await waitFor('traffic', async () => (await requestsServed()) > 2000, 30_000);
    const deployed = await runPrefork([
      'deploy',
      'releases/b',
      '--root',
      root.dir,
      '--verify-window',
      '1',
      '--json',
    ]);
    const newPid = readPid(root.path('prefork.pid'));
    track(newPid);
    expect(deployed.code, `${stepsOf(deployed.stdout)}\n${deployed.stderr}`).toBe(0);
    const result = await load.stop();
    // The NDJSON event of what the old master's drains did: its busy connections, each idle for
    // an instant between two requests, moved; none reset.
    const drained = deployed.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { oldMaster?: number; drained?: MoveCounts })
      .find((event) => event.oldMaster === master.pid)?.drained;
    const seen = `${JSON.stringify(result)}; the old master's connections: ${JSON.stringify(drained)}; steps: ${stepsOf(deployed.stdout)}`;
    expect(result.failed, seen).toBe(0);
    expect(result.responses).toBeGreaterThan(1000);
    expect(drained?.moved, deployed.stdout).toBeGreaterThan(0);
    expect(drained?.reset).toBe(0);
  });

  it('a release whose workers are alive but slow (each loop turn takes 1.5 s): verify waits for their answers, deployed', async () => {
    root = makeAppRoot();
    // Heartbeats still flow (a turn every 1.5 s, far inside the 30 s heartbeat timeout), requests are slow:
    // what a worker on a saturated machine looks like from the outside.
    root.addRelease(
      'slow',
      listenerRelease(
        'slow',
        'setInterval(() => { const until = Date.now() + 1500; while (Date.now() < until) {} }, 50).unref();',
      ),
    );
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 2 });
    const deployed = await runPrefork([
      'deploy',
      'releases/slow',
      '--root',
      root.dir,
      '--health-path',
      '/health',
      '--verify-window',
      '1',
      '--json',
    ]);
    track(readPid(root.path('prefork.pid')));
    expect(deployed.code, `${stepsOf(deployed.stdout)}\n${deployed.stderr}`).toBe(0);
    expect(master.pid).not.toBe(readPid(root.path('prefork.pid')));
  });
});
