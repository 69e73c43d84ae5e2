import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { getJson, type RunningMaster, startMaster } from '../helpers/master.js';
import { alive, cmdline, killAll, runPrefork, waitFor } from '../helpers/processes.js';

let root: AppRoot;
let master: RunningMaster;

// Each test gets a master of its own: none depends on what another one did to it.
beforeEach(async () => {
  root = makeAppRoot();
  master = await startMaster(root.dir, ['--timeout', '4', 'releases/v1']);
});

afterEach(() => {
  killAll();
  root.remove();
});

/** Pids the master logged as booted workers. */
function bootedWorkers(): Set<number> {
  return new Set(
    master.proc
      .logs()
      .filter((l) => /^booting worker with pid/.test(l.msg))
      .map((l) => Number(l.worker)),
  );
}

/** Sum of the requests each worker reported, from the control socket. */
async function requestsSeen(): Promise<number> {
  const { stdout } = await runPrefork(['status', '--json', '--root', root.dir]);
  const status = JSON.parse(stdout) as {
    pidfiles: { master?: { workers: { requests: number }[] } }[];
  };
  return (status.pidfiles[0]?.master?.workers ?? []).reduce((sum, w) => sum + w.requests, 0);
}

describe('the master under a keep-alive load', () => {
  it('titles its processes as the seed shows', () => {
    expect(cmdline(master.pid)).toBe('prefork: master [v1]');
    for (const worker of master.workers()) expect(cmdline(worker)).toBe('prefork: worker [v1]');
  });

  it('runs TTIN, TTOU and HUP with 0 failed requests, every response from a worker', async () => {
    const load = startLoad(master.url, { connections: 8, durationSec: 90 });
    await waitFor('traffic', () => load.count() > 300);

    process.kill(master.pid, 'SIGTTIN');
    await waitFor('3 workers', () => master.workers().length === 3);
    await master.proc.waitForLog(/^handling signal: ttin/);

    process.kill(master.pid, 'SIGTTOU');
    await master.proc.waitForLog(/^draining worker \d+ \(TTOU\)/);
    await waitFor('2 workers', () => master.workers().length === 2);

    // Three reloads in a row: each drains a full generation while the load keeps coming.
    for (let round = 0; round < 3; round += 1) {
      const before = master.workers();
      const seen = load.count();
      const reloads = master.proc.countLogs(/^reload complete/);
      process.kill(master.pid, 'SIGHUP');
      await waitFor('reload complete', () => master.proc.countLogs(/^reload complete/) > reloads);
      await waitFor('old workers gone', () => before.every((pid) => !alive(pid)));
      await waitFor('2 new workers', () => {
        const now = master.workers();
        return now.length === 2 && now.every((pid) => !before.includes(pid));
      });
      await waitFor('traffic after HUP', () => load.count() > seen + 200);
    }

    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(result.responses).toBeGreaterThan(600);
    const booted = bootedWorkers();
    expect(result.pids.has(master.pid)).toBe(false);
    for (const pid of result.pids) expect(booted.has(pid)).toBe(true);
    expect(master.proc.countLogs(/^worker exiting|^worker exited/)).toBeGreaterThan(0);
  });

  it('QUIT finishes slow in-flight requests on kept-alive connections, then exits cleanly', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    // Warm up kept-alive connections, then put a slow request on each.
    await Promise.all([1, 2, 3, 4].map(() => getJson(master.port, '/', agent)));
    const base = await requestsSeen();
    const slow = [1, 2, 3].map(() => getJson(master.port, '/slow?ms=2000', agent));
    await waitFor(
      'the slow requests to reach the workers',
      async () => (await requestsSeen()) >= base + 3,
      15_000,
    );
    const workers = master.workers();

    process.kill(master.pid, 'SIGQUIT');
    const answers = await Promise.all(slow);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.headers.connection).toBe('close');
    }
    const exit = await master.proc.exited;
    expect(exit.code).toBe(0);
    for (const pid of workers) expect(alive(pid)).toBe(false);
    expect(master.proc.countLogs(/^handling signal: quit/)).toBe(1);
    agent.destroy();
  });
});
