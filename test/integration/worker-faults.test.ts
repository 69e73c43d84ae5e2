import { symlinkSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { getJson, startMaster } from '../helpers/master.js';
import { alive, killAll, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

function pointCurrent(name: string): void {
  unlinkSync(root.path('current'));
  symlinkSync(`releases/${name}`, root.path('current'));
}

describe('worker faults', () => {
  it('replaces a SIGKILLed worker at once, losing no more than its open connections', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const connections = 8;
    const load = startLoad(master.url, { connections, durationSec: 60 });
    await waitFor('traffic', () => load.count() > 300);
    const [victim] = master.workers();
    process.kill(victim as number, 'SIGKILL');
    await master.proc.waitForLog(new RegExp(`^worker ${victim} died`));
    await waitFor(
      'a replacement',
      () => master.workers().length === 2 && !master.workers().includes(victim as number),
    );
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 300);
    const result = await load.stop();
    expect(result.failed).toBeLessThanOrEqual(connections);
    expect(alive(master.pid)).toBe(true);
  });

  it('kills a worker whose event loop is blocked (heartbeat timeout) and replaces it', async () => {
    root = makeAppRoot();
    root.addRelease(
      'blocking',
      listenerRelease('blocking', '', "if (req.url === '/block') { for (;;) {} }"),
    );
    const master = await startMaster(root.dir, ['--timeout', '1', 'releases/blocking']);
    const blocked = http.get({
      host: '127.0.0.1',
      port: master.port,
      path: '/block',
      agent: false,
    });
    blocked.on('error', () => {});
    const killed = await master.proc.waitForLog(/^killing worker \d+: no heartbeat for 1 s/);
    const victim = Number(killed.worker);
    await waitFor(
      'a replacement',
      () => master.workers().length === 2 && !master.workers().includes(victim),
    );
    expect((await getJson(master.port)).status).toBe(200);
    expect(alive(master.pid)).toBe(true);
  });

  it('an app that uses the IPC channel itself (PM2 style): each stray message ignored, logged once per worker; it serves on', async () => {
    root = makeAppRoot();
    // PM2's readiness signal, and a forged prefork message of the wrong shape, every 50 ms.
    const atLoad = `setInterval(() => {
  process.send('ready');
  process.send({ type: 'heartbeat', requests: 'many' });
}, 50).unref();`;
    root.addRelease('talks', listenerRelease('talks', atLoad));
    const master = await startMaster(root.dir, ['releases/talks']);
    const workers = master.workers();
    await waitFor('a warning for each worker', () =>
      workers.every((pid) =>
        master.proc.logs().some((l) => l.worker === pid && /none of prefork's/.test(l.msg)),
      ),
    );
    const before = master.proc.logs().filter((l) => /none of prefork's/.test(l.msg)).length;
    const load = startLoad(master.url, { connections: 4, durationSec: 30 });
    await waitFor('traffic', () => load.count() > 300);
    const result = await load.stop();
    expect(result.failed).toBe(0);
    // Still the same workers (heartbeats from prefork's own code keep counting), logged once.
    expect(master.workers().sort()).toEqual(workers.sort());
    expect(master.proc.logs().filter((l) => /none of prefork's/.test(l.msg)).length).toBe(before);
    expect(before).toBe(2);
  });

  it('backs off exponentially, and logs it, when workers crash-loop', async () => {
    root = makeAppRoot();
    root.addRelease('crashy', listenerRelease('crashy', 'setTimeout(() => process.exit(3), 300);'));
    const master = await startMaster(root.dir, ['releases/crashy'], { workers: 1 });
    const lines = [];
    for (const delay of [100, 200, 400, 800]) {
      lines.push(
        await master.proc.waitForLog(
          new RegExp(`^workers are crash-looping: next spawn in ${delay} ms`),
        ),
      );
    }
    // Spawns are spaced by the backoff, not a busy loop.
    const times = lines.map((l) => Number(l.time));
    for (let i = 1; i < times.length; i += 1) {
      expect((times[i] as number) - (times[i - 1] as number)).toBeGreaterThanOrEqual(
        [100, 200, 400, 800][i - 1] as number,
      );
    }
    expect(alive(master.pid)).toBe(true);
  });

  it('keeps the old workers serving when a HUP loads a release that fails to boot', async () => {
    root = makeAppRoot();
    root.addRelease(
      'broken',
      listenerRelease('broken', "throw new Error('cannot connect to the database');"),
    );
    const master = await startMaster(root.dir, ['releases/v1']);
    const before = master.workers();
    const load = startLoad(master.url, { connections: 8, durationSec: 60 });
    await waitFor('traffic', () => load.count() > 200);
    pointCurrent('broken');
    process.kill(master.pid, 'SIGHUP');
    const failed = await master.proc.waitForLog(/^reload failed: .*cannot connect to the database/);
    expect(failed.msg).toMatch(/keeping the workers of release v1/);
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    expect(result.failed).toBe(0);
    expect(result.byRelease.broken).toBeUndefined();
    expect(master.workers().sort()).toEqual(before.sort());
  });

  it('loads new code on HUP', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    expect((await getJson(master.port)).body.release).toBe('v1');
    pointCurrent('v2');
    process.kill(master.pid, 'SIGHUP');
    await master.proc.waitForLog(/^reload complete/);
    await waitFor('v2 answers only', async () => {
      const answers = await Promise.all([1, 2, 3, 4, 5, 6].map(() => getJson(master.port)));
      return answers.every((a) => a.body.release === 'v2');
    });
  });

  it('recycles workers after maxRequests without failing a request', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, [
      '--max-requests',
      '200',
      '--max-requests-jitter',
      '50',
      'releases/v1',
    ]);
    const load = startLoad(master.url, { connections: 8, durationSec: 60 });
    await waitFor(
      'several recycles',
      () => master.proc.countLogs(/^worker reached maxRequests/) >= 3,
    );
    const result = await load.stop();
    expect(result.failed).toBe(0);
    expect(result.pids.size).toBeGreaterThanOrEqual(4);
  });

  it('workers drain and exit when their master is SIGKILLed: no orphans', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const workers = master.workers();
    process.kill(master.pid, 'SIGKILL');
    await waitFor('workers gone', () => workers.every((pid) => !alive(pid)), 15_000);
  });
});
