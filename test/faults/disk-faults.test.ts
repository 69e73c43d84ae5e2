import { mkdirSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { getJson, startMaster } from '../helpers/master.js';
import {
  alive,
  killAll,
  readPid,
  runPrefork,
  runStart,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

describe('faults: a disk that refuses writes', () => {
  it('a log file on a full disk (/dev/full): the master and workers keep serving, HUP and deploy work', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['--log-file', '/dev/full', 'releases/v1']);
    expect(master.proc.stderr).toMatch(
      /cannot write \/dev\/full \(ENOSPC\): log lines are dropped/,
    );
    const load = startLoad(master.url, { connections: 8, durationSec: 120 });
    await waitFor('traffic', () => load.count() > 100);
    const before = master.workers();
    process.kill(master.pid, 'SIGHUP');
    await waitFor(
      'reloaded',
      () => master.workers().length === 2 && master.workers().every((p) => !before.includes(p)),
    );
    const deployed = await runPrefork([
      'deploy',
      'releases/v2',
      '--root',
      root.dir,
      '--verify-window',
      '0.5',
    ]);
    expect(deployed.code, deployed.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect((await getJson(master.port)).body.release).toBe('v2');
    const stopped = await runPrefork(['stop', '--root', root.dir]);
    expect(stopped.code).toBe(0);
  });

  it('a deploy journal that cannot be written: exit 2, nothing changed, the service untouched', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    // Something is in the way of .prefork/deploy.json (EISDIR), as a read-only or full disk would be.
    mkdirSync(root.path('.prefork', 'deploy.json'));
    const result = await runPrefork(['deploy', 'releases/v2', '--root', root.dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /cannot write the deploy journal in .*\.prefork \(.*EISDIR.*\): free some space or fix its permissions; nothing was changed/,
    );
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    expect(master.proc.countLogs(/^handling signal/)).toBe(0);
    expect(alive(master.pid)).toBe(true);
    expect((await getJson(master.port)).body.release).toBe('v1');
  });

  it('a .prefork that belongs to another user is refused', async () => {
    root = makeAppRoot();
    mkdirSync(root.path('.prefork'), { mode: 0o700 });
    const { chownSync } = await import('node:fs');
    chownSync(root.path('.prefork'), 65534, 65534);
    const result = await runStart(root.dir, ['releases/v1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /\.prefork belongs to uid 65534, not to you: prefork will not use it/,
    );
  });
});
