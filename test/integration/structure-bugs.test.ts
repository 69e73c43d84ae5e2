import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { rollback } from '../../src/deploy/rollback.js';
import { PreforkError } from '../../src/errors/index.js';
import { takeDeployLock } from '../../src/journal/lock.js';
import type { Reporter } from '../../src/report/reporter.js';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { getJson, getJsonUnix, startMaster, upgrade } from '../helpers/master.js';
import {
  killAll,
  PreforkProcess,
  readPid,
  runPrefork,
  track,
  waitFor,
} from '../helpers/processes.js';

// Bugs found while giving the code its structure (issue 23), each driven as a user meets it.

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

describe('rollback holds the deploy lock from its decision to the end of its redeploy', () => {
  it('a deploy trying to start while rollback redeploys the previous release is refused (exit 4); the rollback completes', async () => {
    root = makeAppRoot();
    await startMaster(root.dir, ['releases/v1']);
    const deployed = await runPrefork([
      'deploy',
      'releases/v2',
      '--root',
      root.dir,
      '--verify-window',
      '0',
    ]);
    expect(deployed.code, deployed.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    // Another deploy tries to start at the moment the rollback's redeploy begins (its
    // preflight): the window where the lock used to be free.
    const intruder: { outcome?: string } = {};
    const lines: string[] = [];
    const reporter: Reporter = {
      live: true,
      async step(id, title, run) {
        lines.push(title);
        if (id === 'preflight' && intruder.outcome === undefined) {
          try {
            const lock = await takeDeployLock(root.dir);
            intruder.outcome = 'took the lock';
            await lock.release();
          } catch (error) {
            intruder.outcome =
              error instanceof PreforkError ? `exit ${error.exitCode}` : String(error);
          }
        }
        const value = await run();
        if (id === 'quit-old') track(readPid(root.path('prefork.pid')));
        return value;
      },
      info: (message) => lines.push(message),
    };
    const config = loadConfig({ root: root.dir, cli: { verifyWindow: 0 } });
    await rollback(config, reporter);
    expect(intruder.outcome, lines.join('\n')).toBe('exit 4');
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    const pid = readPid(root.path('prefork.pid'));
    track(pid);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    expect(status.pidfiles[0].master).toMatchObject({ pid, release: 'v1' });
    // The lock is free again once the rollback is over.
    const after = await takeDeployLock(root.dir);
    await after.release();
  });
});

describe('a bind whose path holds a comma', () => {
  it('is handed over on USR2 intact: the new master serves on the same Unix socket file', async () => {
    root = makeAppRoot();
    const socketPath = root.path('app,v1.sock');
    const master = await startMaster(root.dir, ['releases/v1', '--bind', `unix:${socketPath}`]);
    expect((await getJsonUnix(socketPath)).release).toBe('v1');
    readlinkSync(root.path('current'));
    const next = await upgrade(master);
    process.kill(master.pid, 'SIGQUIT');
    await waitFor(
      'the old master to exit',
      () => readPid(root.path('prefork.pid.oldbin')) === undefined,
    );
    expect(readPid(root.path('prefork.pid'))).toBe(next.pid);
    // Both binds survived: the Unix socket (a comma in its path) and the TCP one.
    expect((await getJsonUnix(socketPath)).release).toBe('v1');
    expect((await getJson(next.port)).status).toBe(200);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    expect(status.pidfiles[0].master.binds).toContain(`unix:${socketPath}`);
  });
});

describe('exit codes that say what happened', () => {
  it('start --daemon whose master never becomes ready exits 5 (failed, nothing rolled back), not 1', async () => {
    root = makeAppRoot();
    root.addRelease('broken', {
      'package.json': { name: 'broken', version: '1.0.0', main: 'index.js' },
      'index.js': 'throw new Error("cannot start");',
    });
    const started = await runPrefork([
      'start',
      'releases/broken',
      '--daemon',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      '--workers',
      '1',
    ]);
    expect(started.code, started.stderr).toBe(5);
    expect(started.stderr).toMatch(/the master did not start: .*cannot start/);
  });

  it('stop that times out exits 5: a master stuck past its own graceful timeout', async () => {
    root = makeAppRoot();
    // A request that never ends keeps a worker draining for the master's graceful timeout (3 s):
    // time to stop the master once it has taken the QUIT, as a master stuck on a hung disk is.
    // The stop waits the master's own timeout (3 s + its 10 s margin), not the root's
    // configuration's (0.1 s).
    const reached = root.path('hang-reached');
    root.addRelease(
      'slow',
      listenerRelease(
        'slow',
        '',
        `if (req.url === '/hang') { require('fs').writeFileSync(${JSON.stringify(reached)}, ''); return; }`,
      ),
    );
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ gracefulTimeout: 0.1 }));
    const master = await startMaster(root.dir, ['releases/slow', '--graceful-timeout', '3']);
    const hanging = http.get({ host: '127.0.0.1', port: master.port, path: '/hang' });
    hanging.on('error', () => {});
    await waitFor('the request to reach the app', () => existsSync(reached));
    const stop = new PreforkProcess(['stop', '--root', root.dir]);
    await master.proc.waitForLog(/^handling signal: quit/);
    process.kill(master.pid, 'SIGSTOP');
    const exit = await stop.exited;
    process.kill(master.pid, 'SIGCONT');
    hanging.destroy();
    expect(exit.code, stop.stderr).toBe(5);
    expect(stop.stderr).toMatch(/is still running 13 s after QUIT/);
  });
});
