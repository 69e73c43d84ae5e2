import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, switchCurrent } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import {
  alive,
  childrenOf,
  cmdline,
  killAll,
  mastersIn,
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

describe('faults: a new master that hangs', () => {
  it('is killed by its old master after bootTimeout + 10 s: the old master serves alone, prefork.pid restored, 0 failed', async () => {
    root = makeAppRoot();
    // Workers on this release never become ready, so the new master cannot get ready before
    // it is stopped below: no race with the SIGSTOP.
    root.addRelease('hangs', {
      'package.json': { version: '9.0.0' },
      'index.js': 'module.exports = () => new Promise(() => {});',
    });
    const master = await startMaster(root.dir, ['--boot-timeout', '5', 'releases/v1']);
    const keepAlive = startLoad(master.url, { connections: 8, durationSec: 90 });
    const close = startLoad(master.url, { connections: 4, durationSec: 90, close: true });
    await waitFor('traffic', () => keepAlive.count() > 100);

    // A hand-run upgrade whose new master hangs (here: SIGSTOP once its loop runs).
    switchCurrent(root, 'hangs');
    process.kill(master.pid, 'SIGUSR2');
    const started = await master.proc.waitForLog(/^upgrade: started new master with pid/);
    const newPid = Number(started.newMaster);
    track(newPid);
    await waitFor('the new master to run its loop', () =>
      master.proc.logs().some((l) => l.pid === newPid && /^starting master with pid/.test(l.msg)),
    );
    process.kill(newPid, 'SIGSTOP');
    const stoppedAt = Date.now();
    const itsWorkers = childrenOf(newPid);
    for (const pid of itsWorkers) track(pid);
    expect(readPid(root.path('prefork.pid.oldbin'))).toBe(master.pid);
    expect(cmdline(master.pid)).toBe('prefork: master (old) [v1]');

    const killed = await master.proc.waitForLog(
      /^new master \d+ was not ready within bootTimeout \(5 s\) \+ 10 s: killing it$/,
      40_000,
    );
    expect(killed.pid).toBe(master.pid);
    // The deadline counts from USR2, not from the SIGSTOP a moment later.
    expect(Date.now() - stoppedAt).toBeLessThan(15_000 + 5000);
    await waitFor('the new master to be gone', () => !alive(newPid));
    await waitFor(
      'prefork.pid back to the old master',
      () => readPid(root.path('prefork.pid')) === master.pid,
    );
    expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
    expect(cmdline(master.pid)).toBe('prefork: master [v1]');
    // Its workers saw their master go and left; nothing of the failed upgrade is left.
    await waitFor('the new master’s workers to be gone', () =>
      itsWorkers.every((pid) => !alive(pid)),
    );
    expect(mastersIn(root.dir)).toEqual([master.pid]);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    const old = status.pidfiles[0].master;
    expect(old.pid).toBe(master.pid);
    expect(old.state).toBe('running');
    expect(old.newMasterPid).toBeNull();
    expect(old.upgradeError).toMatch(/not ready within 5 s \(bootTimeout\) \+ 10 s: killed it/);
    expect(old.workers.filter((w: { state: string }) => w.state === 'ready')).toHaveLength(2);

    const seen = keepAlive.count();
    await waitFor('traffic after', () => keepAlive.count() > seen + 100);
    for (const result of [await keepAlive.stop(), await close.stop()]) {
      expect(result.failed, JSON.stringify(result)).toBe(0);
      expect(Object.keys(result.byRelease)).toEqual(['v1']);
    }
  });
});
