import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot, switchCurrent } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import {
  getJsonUnix,
  type RunningMaster,
  sample,
  startMaster,
  upgrade,
} from '../helpers/master.js';
import { alive, childrenOf, cmdline, killAll, readPid, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

async function expectSettledOn(master: RunningMaster, release: string): Promise<void> {
  expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
  expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
  // The master puts the pidfile back, then retitles itself: two steps, which a look in between
  // sees half done (once on Node 26 in CI), so the title is waited for.
  await waitFor(
    'the master titled for its release',
    () => (cmdline(master.pid) === `prefork: master [${release}]` ? true : undefined),
    5_000,
  ).catch(() => expect(cmdline(master.pid)).toBe(`prefork: master [${release}]`));
  for (const worker of master.workers())
    expect(cmdline(worker)).toBe(`prefork: worker [${release}]`);
}

describe('binary upgrade by hand (the seed procedure)', () => {
  it('USR2, WINCH old, QUIT old under keep-alive load: 0 failed requests', async () => {
    root = makeAppRoot();
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 90 });
    await waitFor('traffic', () => load.count() > 200);

    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    // Both generations run: pidfiles and titles as in the seed's `top` view.
    expect(readPid(root.path('prefork.pid'))).toBe(next.pid);
    expect(readPid(root.path('prefork.pid.oldbin'))).toBe(old.pid);
    expect(cmdline(old.pid)).toBe('prefork: master (old) [v1]');
    expect(cmdline(next.pid)).toBe('prefork: master [v2]');
    await waitFor('2 new workers', () => next.workers().length === 2);
    for (const worker of next.workers()) expect(cmdline(worker)).toBe('prefork: worker [v2]');
    for (const worker of old.workers()) expect(cmdline(worker)).toBe('prefork: worker [v1]');
    // Both accept new connections during the overlap.
    const overlap = await sample(old.port, (seen) => seen.has('v1') && seen.has('v2'));
    expect([...overlap.keys()].sort()).toEqual(['v1', 'v2']);

    process.kill(old.pid, 'SIGWINCH');
    await waitFor('old workers drained', () => old.workers().length === 0);
    expect(alive(old.pid)).toBe(true);
    const after = await sample(old.port, (seen) => (seen.get('v2') ?? 0) >= 30);
    expect([...after.keys()]).toEqual(['v2']);

    process.kill(old.pid, 'SIGQUIT');
    expect((await old.proc.exited).code).toBe(0);
    await expectSettledOn(next, 'v2');
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(result.byRelease.v1).toBeGreaterThan(0);
    expect(result.byRelease.v2).toBeGreaterThan(0);
  });

  it('the revert path: USR2, WINCH old, HUP old, QUIT new, TERM new: 0 failed requests', async () => {
    root = makeAppRoot();
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 90 });
    await waitFor('traffic', () => load.count() > 200);
    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    process.kill(old.pid, 'SIGWINCH');
    await waitFor('old workers drained', () => old.workers().length === 0);

    process.kill(old.pid, 'SIGHUP');
    await waitFor('old workers back', () => old.workers().length === 2);
    for (const worker of old.workers()) expect(cmdline(worker)).toBe('prefork: worker [v1]');
    process.kill(next.pid, 'SIGQUIT');
    await waitFor('the new master to leave', () => !alive(next.pid), 30_000);
    if (alive(next.pid)) process.kill(next.pid, 'SIGTERM');
    await old.proc.waitForLog(
      new RegExp(`^new master ${next.pid} exited .*this master serves again`),
    );
    await waitFor('the pidfile back', () => readPid(root.path('prefork.pid')) === old.pid);
    await expectSettledOn(old, 'v1');
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    const back = await sample(old.port, (s) => (s.get('v1') ?? 0) >= 20);
    expect([...back.keys()]).toEqual(['v1']);
  });
});

describe('upgrade faults', () => {
  it('new master SIGKILLed before it is ready: the old one takes the pidfile back, no orphans', async () => {
    root = makeAppRoot();
    root.addRelease('slowboot', {
      'package.json': { version: '3.0.0' },
      'index.js': `module.exports = async () => { await new Promise((r) => setTimeout(r, 5000)); return (req, res) => res.end('{"release":"slowboot"}'); };`,
    });
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 90 });
    switchCurrent(root, 'slowboot');
    process.kill(old.pid, 'SIGUSR2');
    const line = await old.proc.waitForLog(/^upgrade: started new master/);
    const next = Number(line.newMaster);
    await waitFor('the new master’s workers', () => childrenOf(next).length === 2);
    const orphans = childrenOf(next);
    process.kill(next, 'SIGKILL');
    await old.proc.waitForLog(new RegExp(`^new master ${next} exited \\(signal SIGKILL\\)`));
    await waitFor('the pidfile back', () => readPid(root.path('prefork.pid')) === old.pid);
    await expectSettledOn(old, 'v1');
    await waitFor('no orphan workers', () => orphans.every((pid) => !alive(pid)));
    await waitFor('traffic', () => load.count() > 300);
    const result = await load.stop();
    expect(result.failed).toBe(0);
  });

  it('new master SIGKILLed after WINCH stopped the old workers: the old master restarts them', async () => {
    root = makeAppRoot();
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 90 });
    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    process.kill(old.pid, 'SIGWINCH');
    await waitFor('old workers drained', () => old.workers().length === 0);
    const newWorkers = next.workers();
    process.kill(next.pid, 'SIGKILL');
    await old.proc.waitForLog(/^restarting the workers WINCH stopped/);
    await waitFor('old workers back', () => old.workers().length === 2);
    await expectSettledOn(old, 'v1');
    await waitFor('the new workers gone', () => newWorkers.every((pid) => !alive(pid)));
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
  });

  it('a new release that throws at load: the new master exits non-zero, the old keeps serving', async () => {
    root = makeAppRoot();
    root.addRelease(
      'broken',
      listenerRelease('broken', "throw new Error('missing DATABASE_URL');"),
    );
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 90 });
    switchCurrent(root, 'broken');
    process.kill(old.pid, 'SIGUSR2');
    await old.proc.waitForLog(/^new master \d+ failed to start: .*missing DATABASE_URL/);
    await old.proc.waitForLog(/^new master \d+ exited \(code 1\)/);
    await waitFor('the pidfile back', () => readPid(root.path('prefork.pid')) === old.pid);
    await expectSettledOn(old, 'v1');
    await waitFor('traffic', () => load.count() > 300);
    const result = await load.stop();
    expect(result.failed).toBe(0);
    expect(result.byRelease.broken).toBeUndefined();
  });

  it('refuses USR2 while an upgrade is in flight, and in a new master whose old master lives', async () => {
    root = makeAppRoot();
    const old = await startMaster(root.dir, ['releases/v1']);
    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    process.kill(old.pid, 'SIGUSR2');
    await old.proc.waitForLog(
      new RegExp(`^USR2 refused: an upgrade is already in flight \\(new master pid ${next.pid}\\)`),
    );
    process.kill(next.pid, 'SIGUSR2');
    await old.proc.waitForLog(
      new RegExp(
        `^USR2 refused: this master is itself the new master of an upgrade; its old master \\(pid ${old.pid}\\) still runs`,
      ),
    );
    expect(
      childrenOf(next.pid).filter((pid) => cmdline(pid).startsWith('prefork: master')),
    ).toEqual([]);
    expect(readPid(root.path('prefork.pid'))).toBe(next.pid);
    expect(readPid(root.path('prefork.pid.oldbin'))).toBe(old.pid);
  });
});

describe('sockets across upgrades', () => {
  it('three upgrades in a row keep the same listen socket, the unix socket file, and a flat fd count', async () => {
    root = makeAppRoot();
    const unixPath = root.path('app.sock');
    let master = await startMaster(root.dir, ['--bind', `unix:${unixPath}`, 'releases/v1']);
    const load = startLoad(master.url, { connections: 8, durationSec: 120 });
    const inode = listenInode(master.port);
    const fdCounts: number[] = [];
    for (const release of ['v2', 'v1', 'v2']) {
      switchCurrent(root, release);
      const next = await upgrade(master);
      process.kill(master.pid, 'SIGWINCH');
      await waitFor('old workers drained', () => master.workers().length === 0);
      process.kill(master.pid, 'SIGQUIT');
      await waitFor('old master gone', () => !alive(master.pid));
      master = next;
      await expectSettledOn(master, release);
      expect(listenInode(master.port)).toBe(inode);
      expect(existsSync(unixPath)).toBe(true);
      const overUnix = await getJsonUnix(unixPath);
      expect(overUnix.release).toBe(release);
      fdCounts.push(fdCount(master.pid));
    }
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(fdCounts[2]).toBeLessThanOrEqual(fdCounts[0] as number);
    process.kill(master.pid, 'SIGQUIT');
    await waitFor('last master gone', () => !alive(master.pid));
    expect(existsSync(unixPath)).toBe(false);
  });
});

/** Inode of the TCP socket listening on `port`, from /proc/net/tcp. */
function listenInode(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') return cols[9] as string;
    }
  }
  throw new Error(`nothing listens on port ${port}`);
}

function fdCount(pid: number): number {
  return readdirSyncSafe(`/proc/${pid}/fd`).length;
}

function readdirSyncSafe(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

describe('a release the new master refuses', () => {
  it('USR2 onto a release without package.json: the new master says why, the old one serves on', async () => {
    root = makeAppRoot();
    root.addRelease('empty', { 'index.js': 'module.exports = (req, res) => res.end()' });
    const old = await startMaster(root.dir, ['releases/v1']);
    switchCurrent(root, 'empty');
    process.kill(old.pid, 'SIGUSR2');
    await old.proc.waitForLog(
      /^new master \d+ failed to start: release .*current has no package\.json/,
    );
    await old.proc.waitForLog(/^new master \d+ exited \(code 2\)/);
    await waitFor('the pidfile back', () => readPid(root.path('prefork.pid')) === old.pid);
    await expectSettledOn(old, 'v1');
  });
});
