import { readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { addExecRelease } from '../helpers/exec-servers.js';
import { type LoadResult, startClientLoad, startTraffic } from '../helpers/load.js';
import { portOf, type RunningMaster, startMaster, waitForPidfile } from '../helpers/master.js';
import {
  killAll,
  mastersIn,
  PreforkProcess,
  readPid,
  runPrefork,
  sessionOf,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});

/** The old master's workers: 4, so the default steps `1,50%` are two steps, of 1 and 2. */
const WORKERS = 4;
const canary = ['--canary', '--canary-window', '2', '--verify-window', '1'];

/** No request failed on the way (socket errors, timeouts): statuses are the app's own. */
function expectNoDrops(results: LoadResult[]): void {
  for (const r of results) {
    expect(r.errors + r.timeouts, JSON.stringify({ ...r, pids: undefined })).toBe(0);
  }
}

/** JSON events of a `--json` run. */
function eventsOf(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface CanaryEvent {
  step: number;
  of: number;
  verdict: string;
  reasons: string[];
  new: { release: string; workers: number; requests: number; errorRate: number; p99Ms: number };
  old: { release: string; workers: number; requests: number; errorRate: number; p99Ms: number };
}

/** The old release serves alone again, with every one of its workers, out of canary mode. */
async function expectReverted(master: RunningMaster, release: string): Promise<void> {
  expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
  expect(readlinkSync(root.path('current'))).toBe(`releases/${release}`);
  expect(mastersIn(root.dir)).toEqual([master.pid]);
  const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout)
    .pidfiles[0].master;
  expect(status.release).toBe(release);
  expect(status.desiredWorkers).toBe(WORKERS);
  expect(status.canary).toBe(false);
  await waitFor('all old workers ready', () => master.workers().length === WORKERS);
}

/** A release answering `{ release, pid }` after `ms` milliseconds (0: at once). */
function timedRelease(name: string, ms: number, extra = ''): Record<string, string | object> {
  return listenerRelease(
    name,
    'let n = 0;',
    `n += 1; ${extra}
  if (${ms} > 0 && req.url !== '/health') {
    setTimeout(() => res.end(JSON.stringify({ release: ${JSON.stringify(name)}, pid: process.pid })), ${ms});
    return;
  }`,
  );
}

describe('prefork deploy --canary under load', () => {
  it('moves a good release in through every step, judged against the old one, 0 failed requests', async () => {
    root = makeAppRoot();
    root.addRelease('v3', listenerRelease('v3'));
    // Warmed up, as docs/canary.md advises: a cold worker's p99 over a 2 s step is its JIT
    // compiling (5.26 ms against the old workers' 1.59 ms, once in a full run), not the release.
    const master = await startMaster(root.dir, ['releases/v1', '--warmup', '500'], {
      workers: WORKERS,
    });
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    // prefork top watches the deploy (docs/live-view.md): plain looks, its output not a terminal.
    const top = new PreforkProcess(['top', '--root', root.dir, '--interval', '0.5']);
    const run = await runPrefork([
      'deploy',
      'v3',
      '--root',
      root.dir,
      '--health-path',
      '/health',
      '--json',
      ...canary,
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const events = eventsOf(run.stdout);
    const steps = events.filter((e) => e.event === 'canary') as unknown as CanaryEvent[];
    expect(steps.map((s) => [s.step, s.of, s.verdict, s.new.workers])).toEqual([
      [1, 2, 'pass', 1],
      [2, 2, 'pass', 2],
    ]);
    top.child.kill('SIGTERM');
    expect((await top.exited).code, top.stderr).toBe(0);
    // Each step's figures as they formed, both releases counted, then each verdict once judged.
    const forming = (step: number) =>
      new RegExp(
        `canary step ${step}(/2)? forming: (v1|v3) [1-9]\\d* responses.*; (v1|v3) [1-9]\\d* responses`,
      );
    expect(top.stdout).toMatch(forming(1));
    expect(top.stdout).toMatch(forming(2));
    expect(top.stdout).toMatch(/canary step 1\/2: pass \(v3 p99 [\d.]+ ms/);
    expect(top.stdout).toMatch(/canary step 2\/2: pass/);
    for (const s of steps) {
      expect(s.new.release).toBe('v3');
      expect(s.old.release).toBe('v1');
      expect(s.new.requests).toBeGreaterThanOrEqual(100);
      expect(s.old.requests).toBeGreaterThanOrEqual(100);
      expect(s.new.errorRate).toBe(0);
    }
    expect(steps[1]?.old.workers).toBe(2);
    expect(
      events.filter((e) => e.event === 'step' && e.status === 'done').map((e) => e.step),
    ).toEqual([
      'preflight',
      'activate',
      'usr2',
      'wait-ready',
      'verify',
      'canary',
      'canary',
      'canary',
      'full-count',
      'retire-old',
      'winch',
      'verify-window',
      'quit-old',
    ]);
    const newPid = readPid(root.path('prefork.pid')) as number;
    track(newPid);
    expect(mastersIn(root.dir)).toEqual([newPid]);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout)
      .pidfiles[0].master;
    expect(status.release).toBe('v3');
    expect(status.desiredWorkers).toBe(WORKERS);
    expect(status.canary).toBe(false);
    const journal = JSON.parse(readFileSync(root.path('.prefork/deploy.json'), 'utf8'));
    expect(journal.canary.map((s: CanaryEvent) => s.verdict)).toEqual(['pass', 'pass']);
    const results = await traffic.stop();
    expectNoDrops(results);
    for (const r of results) expect(r.non2xx).toBe(0);
    expect(results[0]?.byRelease.v3).toBeGreaterThan(0);
  });

  it('stops a release answering 5% of requests with 500 at the first step, and reverts', async () => {
    root = makeAppRoot();
    root.addRelease(
      'errors',
      listenerRelease(
        'errors',
        'let n = 0;',
        `if (req.url !== '/health' && ++n % 20 === 0) { res.statusCode = 500; res.end('{}'); return; }`,
      ),
    );
    const master = await startMaster(root.dir, ['releases/v1'], { workers: WORKERS });
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    const started = Date.now();
    const run = await runPrefork([
      'deploy',
      'errors',
      '--root',
      root.dir,
      '--health-path',
      '/health',
      '--json',
      '--canary',
      '--canary-window',
      '60',
    ]);
    // Stopped as soon as the 5xx share was worse beyond doubt, not at the end of the window.
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    // The 5xx share is what fails it. Judged over the second or two before the early stop, the
    // fresh worker's p99 may also pass the 5 ms floor on a loaded machine, and is then listed too.
    expect(run.stderr).toMatch(
      /errors failed at canary: canary step 1\/2 failed: 5xx [\d.]+% vs 0%: \+[\d.]+ points, more than --canary-max-error-rate 1(; p99 .*)?\. Rolled back: v1 serves again/,
    );
    const steps = eventsOf(run.stdout).filter(
      (e) => e.event === 'canary',
    ) as unknown as CanaryEvent[];
    expect(steps).toHaveLength(1);
    expect(steps[0]?.verdict).toBe('fail');
    expect(steps[0]?.new.errorRate).toBeGreaterThan(3);
    const afterDeploy = traffic.loads.map((l) => l.byRelease.errors ?? 0);
    await expectReverted(master, 'v1');
    const results = await traffic.stop();
    expectNoDrops(results);
    // Exposure: the canary answered only in its first step, about what that step judged (the
    // rest is the heartbeat's lag and its drain), and nothing once the deploy had returned.
    const judged = steps[0]?.new.requests ?? 0;
    const served = results.reduce((n, r) => n + r.non2xx + (r.byRelease.errors ?? 0), 0);
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThan(judged * 3 + 500);
    expect(results.map((r) => r.byRelease.errors ?? 0)).toEqual(afterDeploy);
  });

  it('stops a release 3× slower at p99, and reverts', async () => {
    root = makeAppRoot();
    root.addRelease('base', timedRelease('base', 6));
    root.addRelease('slow', timedRelease('slow', 18));
    const master = await startMaster(root.dir, ['releases/base'], { workers: WORKERS });
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    const run = await runPrefork(['deploy', 'slow', '--root', root.dir, ...canary]);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toMatch(/canary step 1\/2 fail: slow \(1 worker\): \d+ req, 0% 5xx, p99/);
    expect(run.stderr).toMatch(
      /slow failed at canary: canary step 1\/2 failed: p99 [\d.]+ ms vs [\d.]+ ms: [\d.]+×, more than --canary-max-p99-ratio 1\.5/,
    );
    await expectReverted(master, 'base');
    expectNoDrops(await traffic.stop());
  });

  it('stops a release that crashes a worker under traffic, at once', async () => {
    root = makeAppRoot();
    // The 300th request of each worker is answered, then the worker throws outside any request.
    root.addRelease(
      'crashy',
      timedRelease('crashy', 0, `if (n === 300) setImmediate(() => { throw new Error('boom'); });`),
    );
    const master = await startMaster(root.dir, ['releases/v1'], { workers: WORKERS });
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    const started = Date.now();
    const run = await runPrefork([
      'deploy',
      'crashy',
      '--root',
      root.dir,
      '--canary',
      '--canary-window',
      '60',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stderr).toMatch(
      /crashy failed at canary: canary step 1\/2 failed: 1 worker\(s\) of crashy crashed/,
    );
    // Judged as the crash happened, not at the end of the 60 s window.
    expect(Date.now() - started).toBeLessThan(45_000);
    await expectReverted(master, 'v1');
    const results = await traffic.stop();
    expectNoDrops(results);
    for (const r of results) expect(r.non2xx).toBe(0);
  });

  it('fails as "no data" when too few requests come, after extending the window once', async () => {
    root = makeAppRoot();
    root.addRelease('v3', listenerRelease('v3'));
    const master = await startMaster(root.dir, ['releases/v1'], { workers: WORKERS });
    const run = await runPrefork([
      'deploy',
      'v3',
      '--root',
      root.dir,
      '--canary',
      '--canary-window',
      '1',
      '--json',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    const events = eventsOf(run.stdout);
    expect(events.filter((e) => e.event === 'canary-extend')).toHaveLength(1);
    const steps = events.filter((e) => e.event === 'canary') as unknown as CanaryEvent[];
    expect(steps.map((s) => s.verdict)).toEqual(['no-data']);
    expect(run.stderr).toMatch(
      /v3 failed at canary: canary step 1\/2: no data: v3 answered \d+ requests, fewer than --canary-min-requests 100/,
    );
    await expectReverted(master, 'v1');
  });

  it('judges an exec release on crashes and health checks only, and says so', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'py1', 'python');
    addExecRelease(root, 'py2', 'python');
    const start = new PreforkProcess(
      ['start', 'releases/py1', '--root', root.dir, '--bind', '127.0.0.1:0', '--workers', '2'],
      { cwd: root.dir },
    );
    const oldPid = await waitForPidfile(root.path('prefork.pid'), start.pid);
    const port = await portOf(root.dir, oldPid);
    // Node's own client: it honours `Connection: close` as real clients do (see load.ts).
    const load = startClientLoad(`http://127.0.0.1:${port}/`, { connections: 4 });
    await waitFor('traffic', () => load.count() > 50);
    const run = await runPrefork([
      'deploy',
      'py2',
      '--root',
      root.dir,
      '--json',
      '--canary',
      '--canary-window',
      '1',
      '--verify-window',
      '1',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const steps = eventsOf(run.stdout).filter(
      (e) => e.event === 'canary',
    ) as unknown as (CanaryEvent & { judgedOn: string })[];
    // Two workers: `1,50%` is one step of 1 worker.
    expect(steps.map((s) => [s.step, s.of, s.verdict, s.judgedOn, s.new.requests])).toEqual([
      [1, 1, 'pass', 'crashes-and-health', null],
    ]);
    expect(steps[0]?.reasons).toEqual(['exec release: judged on crashes and health checks only']);
    const newPid = readPid(root.path('prefork.pid')) as number;
    track(newPid);
    expect(mastersIn(root.dir)).toEqual([newPid]);
    const result = await load.stop();
    expectNoDrops([result]);
    expect(result.non2xx).toBe(0);
    expect(result.byRelease.py2).toBeGreaterThan(0);
  });

  it('a canary deploy killed mid-step is undone by prefork rollback, the old master back to full count', async () => {
    root = makeAppRoot();
    root.addRelease('v3', listenerRelease('v3'));
    const master = await startMaster(root.dir, ['releases/v1'], { workers: WORKERS });
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    const deploy = new PreforkProcess([
      'deploy',
      'v3',
      '--root',
      root.dir,
      '--canary',
      '--canary-window',
      '4',
    ]);
    // In the second step's window: the old master is down to 2 workers.
    await waitFor(
      'the second canary step',
      () => /canary step 2\/2: judge/.test(deploy.stdout),
      60_000,
    );
    // Both generations share one session (one CPU-sharing group under autogroup scheduling).
    const newPid = readPid(root.path('prefork.pid')) as number;
    expect(newPid).not.toBe(master.pid);
    expect(sessionOf(newPid)).toBe(sessionOf(master.pid));
    deploy.child.kill('SIGKILL');
    await deploy.exited;
    const rolled = await runPrefork(['rollback', '--root', root.dir]);
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
    await expectReverted(master, 'v1');
    const results = await traffic.stop();
    expectNoDrops(results);
    for (const r of results) expect(r.non2xx).toBe(0);
  });
});
