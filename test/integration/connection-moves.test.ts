import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { MoveCounts } from '../../src/protocol/moves.js';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { startIdleClients } from '../helpers/idle-clients.js';
import { createRunningMaster, startMaster } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import {
  alive,
  killAll,
  PreforkProcess,
  readPid,
  runPrefork,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/**
 * Mostly idle kept-alive clients. 2,000 in every run; at 10,000 one clean-clone CI run saw 3
 * resets and 150 reconnects (docs/connection-moves.md, "Where it stands"):
 * `PREFORK_MOVE_CLIENTS=10000` reruns it at 10,000.
 */
const CLIENTS = Number(process.env.PREFORK_MOVE_CLIENTS ?? 2000);

describe('idle kept-alive connections move to the next generation (SPEC §16)', () => {
  it(`${CLIENTS} idle clients through a deploy, a rollback and a HUP: 0 failed, no reconnect`, async () => {
    root = makeAppRoot();
    const metricsPort = await freePort();
    // Moving is on by default (SPEC §16): no option.
    const master = await startMaster(root.dir, [
      'releases/v1',
      '--metrics-bind',
      `127.0.0.1:${metricsPort}`,
    ]);
    const drainedOf = async (release: string, outcome: string) => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const line = `prefork_connections_drained_total{release="${release}",outcome="${outcome}"} `;
      const at = text.indexOf(line);
      return at < 0 ? undefined : Number.parseInt(text.slice(at + line.length), 10);
    };
    const clients = await startIdleClients(master.url, CLIENTS);
    const options = ['--root', root.dir, '--health-path', '/health', '--verify-window', '1'];
    const answeredBy = async (release: string) => (await clients.report()).byRelease[release] ?? 0;

    const deployed = await runPrefork(['deploy', 'releases/v2', ...options]);
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    // The deploy says what the old master's drains did: every connection moved, none closed.
    expect(deployed.stdout).toMatch(
      new RegExp(`old master \\d+: its connections: ${CLIENTS} moved\\n`),
    );
    track(readPid(root.path('prefork.pid')));
    const onV2 = await answeredBy('v2');
    await waitFor('v2 answering', async () => (await answeredBy('v2')) > onV2 + CLIENTS, 60_000);

    const rolled = await runPrefork(['rollback', ...options]);
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
    expect(rolled.stdout).toMatch(
      new RegExp(`old master \\d+: its connections: ${CLIENTS} moved\\n`),
    );
    const pid = readPid(root.path('prefork.pid'));
    track(pid);
    const onV1 = await answeredBy('v1');
    await waitFor(
      'v1 answering again',
      async () => (await answeredBy('v1')) > onV1 + CLIENTS,
      60_000,
    );

    // A HUP within one master: the old generation's connections go to the new one.
    const before = (await clients.report()).requests;
    const rolledBack = createRunningMaster(master.proc, pid as number, master.port, master.pidfile);
    const oldWorkers = rolledBack.workers();
    process.kill(pid as number, 'SIGHUP');
    await waitFor(
      'the old workers to be replaced',
      () => rolledBack.workers().length === 2 && oldWorkers.every((w) => !alive(w)),
      60_000,
    );
    await waitFor(
      'traffic after the HUP',
      async () => (await clients.report()).requests > before + CLIENTS,
      60_000,
    );
    // This master's metrics count its old workers' drains: every connection moved.
    expect(await drainedOf('v1', 'moved')).toBe(CLIENTS);
    for (const outcome of ['refused', 'lost', 'closed', 'reset']) {
      expect(await drainedOf('v1', outcome), outcome).toBe(0);
    }

    const result = await clients.stop();
    // A client that lagged (its own event loop) into the server's keep-alive timeout (5 s) has
    // its connection closed by the server, not by a drain: this run proves nothing then.
    expect(result.late, `clients too slow to test a drain: ${JSON.stringify(result)}`).toBe(0);
    expect(result.failures, JSON.stringify(result)).toEqual([]);
    expect(result.failed).toBe(0);
    // No client had to reconnect: each kept the one connection it opened, across 3 switches.
    expect(result.opened, JSON.stringify(result)).toBe(CLIENTS);
    expect(result.carriedOver).toBeGreaterThan(CLIENTS / 2);
  }, 300_000);

  it('4 HUPs in a row under 2,000 idle clients: each moves every connection once, the master holds no fd more; a new worker SIGKILLed mid-move, and an old one as it starts to move, lose only their own connections', async () => {
    const count = 2000;
    // 3 HUPs after the baseline: a leak of one fd per HUP shows as 3, past the 2 allowed (the
    // soak runs 50 cycles).
    const rounds = 4;
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const clients = await startIdleClients(master.url, count);
    const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
    const drained = async () => {
      const status = JSON.parse(
        (await runPrefork(['status', '--json', '--root', root.dir])).stdout,
      );
      return status.pidfiles[0].master.drained as MoveCounts;
    };
    const hup = async () => {
      const old = master.workers();
      process.kill(master.pid, 'SIGHUP');
      await waitFor(
        'the old workers replaced',
        () => master.workers().length === 2 && old.every((w) => !alive(w)),
        60_000,
      );
      return old;
    };
    await hup();
    // The master's fds once it has moved connections (its router's channels are all open).
    const baseline = fds(master.pid);
    for (let i = 1; i < rounds; i += 1) await hup();
    expect(fds(master.pid)).toBeLessThanOrEqual(baseline + 2);
    const moved = await drained();
    expect(moved).toEqual({ moved: rounds * count, refused: 0, lost: 0, closed: 0, reset: 0 });
    const before = await clients.report();
    expect(before.failures).toEqual([]);
    expect(before.opened).toBe(count);

    // A fault: one of the new workers killed while connections move to it. Whatever it had
    // taken dies with it (its clients reconnect, a request in flight on one fails); the master
    // counts what it sent there as lost, replaces it, and holds no fd of it.
    const old = master.workers();
    process.kill(master.pid, 'SIGHUP');
    const victim = await waitFor(
      'a new worker taking connections',
      async () => {
        const now = await drained();
        const fresh = master.workers().filter((w) => !old.includes(w));
        return now.moved > moved.moved && fresh[0];
      },
      60_000,
    );
    process.kill(victim, 'SIGKILL');
    await waitFor(
      'the workers replaced',
      () =>
        master.workers().length === 2 &&
        old.every((w) => !alive(w)) &&
        !master.workers().includes(victim),
      60_000,
    );
    const after = await drained();
    expect(after.moved + after.lost + after.refused + after.closed + after.reset).toBe(
      (rounds + 1) * count,
    );
    await waitFor('the master back to its fds', () => fds(master.pid) <= baseline + 2, 30_000);
    // Every client is answered again, on the connection it kept or on a new one.
    const served = (await clients.report()).requests;
    await waitFor(
      'traffic after the fault',
      async () => (await clients.report()).requests > served + count,
      60_000,
    );
    const afterFirst = await clients.report();
    // Only connections the killed worker held can have failed: fewer than it took.
    expect(afterFirst.failed).toBeLessThan(count);

    // The other side: an old worker SIGKILLed as its drain starts to move its connections.
    // The ones it still held die with it (their clients see a close and reconnect; a request
    // in flight on one fails); the ones it had offered are in the master's hands and move on.
    const older = master.workers();
    process.kill(master.pid, 'SIGHUP');
    const drainingLine = await waitFor(
      'an old worker draining',
      () =>
        master.proc
          .logs()
          .find((line) => line.msg === 'draining' && older.includes(line.pid as number)),
      60_000,
    );
    const dying = drainingLine.pid as number;
    process.kill(dying, 'SIGKILL');
    await waitFor(
      'the old workers gone, two new ones serving',
      () => master.workers().length === 2 && older.every((w) => !alive(w)),
      60_000,
    );
    await waitFor('the master back to its fds', () => fds(master.pid) <= baseline + 2, 30_000);
    const servedAgain = (await clients.report()).requests;
    await waitFor(
      'traffic after the old worker was killed',
      async () => (await clients.report()).requests > servedAgain + count,
      60_000,
    );
    const result = await clients.stop();
    // Only the killed worker's connections were lost (in one run: 512 reconnected, 9 requests
    // reset); the other old worker's all moved.
    expect(result.opened - afterFirst.opened).toBeLessThan(count);
    expect(result.failed - afterFirst.failed).toBeLessThan(count / 2);
  }, 300_000);

  it('the old master SIGKILLed while its connections move to the new one: the deploy completes, the new master serves every client again and holds no fd more', async () => {
    const count = 2000;
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const clients = await startIdleClients(master.url, count);
    const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
    const oldWorkers = master.workers();
    const deploy = new PreforkProcess([
      'deploy',
      'releases/v2',
      '--root',
      root.dir,
      '--json',
      '--verify-window',
      '1',
    ]);
    // The old workers' connections move as they stop: one by TTOU (retire-old), the other by
    // WINCH.
    await waitFor(
      'the deploy to retire the old workers',
      () => deploy.stdout.includes('"step":"retire-old","status":"start"'),
      60_000,
    );
    const newPid = readPid(root.path('prefork.pid')) as number;
    track(newPid);
    const newBaseline = fds(newPid);
    const oldBaseline = fds(master.pid);
    // Connections on their way hold an fd in the old master until the new one answers.
    await waitFor(
      'connections crossing the old master',
      () => fds(master.pid) > oldBaseline + 3,
      30_000,
    );
    const served = (await clients.report()).requests;
    process.kill(master.pid, 'SIGKILL');
    // The kill lands while the retired worker's connections move or, on a loaded machine, once
    // the second one's move at WINCH; the deploy says the master is gone when WINCH finds it so.
    const winchSent = deploy.stdout.includes('"step":"winch","status":"start"');
    const exit = await deploy.exited;
    expect(exit.code, deploy.stdout + deploy.stderr).toBe(0);
    if (!winchSent) {
      expect(deploy.stdout, deploy.stdout).toContain(
        `old master ${master.pid} is gone (killed?): only v2 accepts`,
      );
    }
    await waitFor('the old workers gone', () => oldWorkers.every((w) => !alive(w)), 60_000);
    expect(readPid(root.path('prefork.pid'))).toBe(newPid);
    await waitFor('no .oldbin', () => !existsSync(root.path('prefork.pid.oldbin')));
    // What crossed the dead master was settled: the new master holds no fd of it.
    await waitFor('the new master back to its fds', () => fds(newPid) <= newBaseline + 2, 30_000);
    await waitFor(
      'every client served again',
      async () => (await clients.report()).requests > served + count,
      60_000,
    );
    const result = await clients.stop();
    // The orphaned old workers close what they hold the safe way (Connection: close, or once
    // quiet 5 s) and their offers in flight at once: only a connection on its way whose client
    // had sent meanwhile can fail. Before the worker learned of its master's death (Node emits
    // no 'disconnect' while a sent handle awaits its ACK), 126-255 failed here, about every
    // offer in flight; since, 4 and 41.
    expect(result.failed, JSON.stringify(result)).toBeLessThan(100);
    expect(result.opened - count, JSON.stringify(result)).toBeLessThan(count);
    console.log(
      `old master killed mid-move: ${result.opened - count} of ${count} clients reconnected, ${result.failed} requests failed; first failures: ${result.failures.slice(0, 5).join('; ')}`,
    );
  }, 300_000);

  it('the new master SIGKILLed while connections move to it: the deploy rolls back, the old master serves every client again at full count and holds no fd more', async () => {
    const count = 2000;
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const clients = await startIdleClients(master.url, count);
    const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
    const oldBaseline = fds(master.pid);
    const deploy = new PreforkProcess([
      'deploy',
      'releases/v2',
      '--root',
      root.dir,
      '--json',
      '--verify-window',
      '1',
    ]);
    // The new master and its workers are ready before any connection moves: the deploy checks
    // its health before it tells an old worker to go.
    await waitFor(
      'the new master ready',
      () => deploy.stdout.includes('"step":"wait-ready","status":"done"'),
      60_000,
    );
    const newPid = readPid(root.path('prefork.pid')) as number;
    track(newPid);
    expect(newPid).not.toBe(master.pid);
    const newWorkers = createRunningMaster(
      deploy,
      newPid,
      master.port,
      root.path('prefork.pid'),
    ).workers();
    for (const w of newWorkers) track(w);
    // Connections cross the new master as the old workers are retired (retire-old moved the
    // first one's) and WINCHed (the second's move from here on, through the 1 s verify-window):
    // killed as WINCH starts, before the old master is told to quit (that kill is the next
    // test's). Earlier triggers (fds in transit in the new master, v2's answers) came only in
    // quit-old in some runs.
    await waitFor(
      'WINCH of the old master',
      () => deploy.stdout.includes('"step":"winch","status":"start"'),
      30_000,
    );
    const served = (await clients.report()).requests;
    process.kill(newPid, 'SIGKILL');
    expect(deploy.child.exitCode, 'the deploy ended before the kill').toBeNull();
    const exit = await deploy.exited;
    // Rolled back: v1 serves, as before the deploy.
    expect(exit.code, deploy.stdout + deploy.stderr).toBe(1);
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
    await waitFor('no .oldbin', () => !existsSync(root.path('prefork.pid.oldbin')));
    await waitFor('the new workers gone', () => newWorkers.every((w) => !alive(w)), 60_000);
    await waitFor(
      'the old master back at its full count',
      () => master.workers().length === 2,
      60_000,
    );
    // What was on its way to the dead master was settled: the old master holds no fd of it.
    await waitFor(
      'the old master back to its fds',
      () => fds(master.pid) <= oldBaseline + 2,
      30_000,
    );
    await waitFor(
      'every client served again',
      async () => (await clients.report()).requests > served + count,
      60_000,
    );
    const result = await clients.stop();
    // Only connections the dead master, its orphaned workers or the way to them held could
    // fail or reconnect; those that had not moved yet stayed with v1. The orphaned new workers
    // close what they hold the safe way: 97-593 failed here while a drain closed idle
    // connections after 250 ms of quiet, 0 since it waits 5 s.
    expect(result.failed, JSON.stringify(result)).toBeLessThan(40);
    expect(result.opened - count, JSON.stringify(result)).toBeLessThan(count);
    const steps = deploy.stdout.match(/"step":"[a-z0-9-]+","status":"start"/g) ?? [];
    console.log(
      `new master killed mid-move: ${result.opened - count} of ${count} clients reconnected, ${result.failed} requests failed; deploy steps: ${steps.map((x) => x.split('"')[3]).join(' ')}; first failures: ${result.failures.slice(0, 5).join('; ')}`,
    );
  }, 300_000);

  it('the new master SIGKILLed while the old one quits: the deploy exits 3 saying no master serves and how to start one', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const clients = await startIdleClients(master.url, 200);
    const deploy = new PreforkProcess(
      ['deploy', 'releases/v2', '--root', root.dir, '--json', '--verify-window', '1'],
      { cwd: root.dir },
    );
    await waitFor(
      'quit-old',
      () => deploy.stdout.includes('"step":"quit-old","status":"start"'),
      60_000,
    );
    const newPid = readPid(root.path('prefork.pid')) as number;
    expect(newPid).not.toBe(master.pid);
    process.kill(newPid, 'SIGKILL');
    const exit = await deploy.exited;
    // Before: "deployed v2: master N serves" and exit 0, with no master left.
    expect(exit.code, deploy.stdout + deploy.stderr).toBe(3);
    expect(deploy.stderr).toMatch(
      new RegExp(
        `the new master ${newPid} died \\(killed\\?\\) while the old master ${master.pid} quit, so no master serves now`,
      ),
    );
    expect(deploy.stderr).toContain('"prefork start releases/v1" the previous release');
    expect(deploy.stdout).not.toMatch(/deployed v2/);
    await waitFor('the old master gone', () => !alive(master.pid), 60_000);
    await clients.stop();
    // The journal says so: a status or the next deploy sees a deploy that did not complete.
    const journal = JSON.parse(readFileSync(root.path('.prefork', 'deploy.json'), 'utf8'));
    expect(journal).toMatchObject({ outcome: 'rollback-incomplete', release: 'v2' });
  }, 300_000);

  it.each([
    ['by the moves protocol’s drain message (HUP, connections move)', []],
    ['by SIGQUIT (--no-move-connections)', ['--no-move-connections']],
  ])('a worker drained %s runs the app’s own SIGQUIT listeners once', async (_how, args) => {
    root = makeAppRoot();
    root.addRelease(
      'listens',
      listenerRelease(
        'listens',
        `process.on('SIGQUIT', () => require('fs').appendFileSync(${JSON.stringify(root.path('quits'))}, process.pid + '\\n'));`,
      ),
    );
    const master = await startMaster(root.dir, ['releases/listens', ...args]);
    const clients = await startIdleClients(master.url, 50);
    const old = master.workers();
    process.kill(master.pid, 'SIGHUP');
    await waitFor(
      'the old workers replaced',
      () => master.workers().length === 2 && old.every((w) => !alive(w)),
      60_000,
    );
    const heard = readFileSync(root.path('quits'), 'utf8').trim().split('\n').map(Number);
    expect(heard.sort()).toEqual([...old].sort());
    // Without moves, each idle connection is closed the old way: its client, sending every
    // 0–3 s, sends within the minimum quiet time (5 s) and is answered `Connection: close`.
    // With a quiet time of 250 ms (the default until 2026-12-07), 2 of the 50 were reset in one
    // CI run: their request left as the connection closed.
    const result = await clients.stop();
    expect(result.failed, result.failures.join('\n')).toBe(0);
  });

  it('with --no-move-connections a drain closes them, and clients reconnect', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1', '--no-move-connections']);
    const clients = await startIdleClients(master.url, 200);
    process.kill(master.pid, 'SIGHUP');
    await waitFor(
      'clients to reconnect',
      async () => (await clients.report()).opened > 200,
      60_000,
    );
    const result = await clients.stop();
    expect(result.carriedOver).toBe(0);
  }, 120_000);
});
