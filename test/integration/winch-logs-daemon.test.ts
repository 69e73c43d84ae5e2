import { existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { getJson, startMaster, waitForPidfile } from '../helpers/master.js';
import { alive, killAll, runPrefork, track, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

describe('WINCH, USR1, daemon mode', () => {
  it('WINCH drains every worker but keeps the master and its socket; HUP brings workers back', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    process.kill(master.pid, 'SIGWINCH');
    await waitFor('no workers', () => master.workers().length === 0);
    expect(alive(master.pid)).toBe(true);
    // The socket still listens: this request waits in the backlog for the next workers.
    const pending = getJson(master.port);
    process.kill(master.pid, 'SIGHUP');
    const answer = await pending;
    expect(answer.status).toBe(200);
    await waitFor('2 workers', () => master.workers().length === 2);
  });

  it('USR1 reopens the log file in the master and in every worker (logrotate)', async () => {
    root = makeAppRoot();
    const logFile = root.path('prefork.log');
    const master = await startMaster(root.dir, ['--log-file', logFile, 'releases/v1']);
    expect(existsSync(logFile)).toBe(true);
    renameSync(logFile, `${logFile}.1`);
    process.kill(master.pid, 'SIGUSR1');
    await waitFor('the new log file to get lines from the master and both workers', () => {
      if (!existsSync(logFile)) return false;
      // Whole lines only: the reopen creates the file before its first line is written, and a
      // line may be read while it is being written.
      const lines = readFileSync(logFile, 'utf8')
        .split('\n')
        .slice(0, -1)
        .map((l) => JSON.parse(l));
      const reopened = lines.filter((l) => l.msg === 'reopened log file');
      return (
        reopened.some((l) => l.role === 'master') &&
        reopened.filter((l) => l.role === 'worker').length === 2
      );
    });
    expect(readFileSync(`${logFile}.1`, 'utf8')).toMatch(/booting worker with pid/);
    expect(statSync(logFile).mode & 0o777).toBeLessThanOrEqual(0o644);
    // SIGUSR1 did not open Node's inspector.
    expect(master.proc.stderr).not.toMatch(/Debugger listening/);
    expect(alive(master.pid)).toBe(true);
  });

  it('start --daemon returns once the master is ready; stop drains it', async () => {
    root = makeAppRoot();
    const started = await runPrefork([
      'start',
      '--daemon',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      '--workers',
      '2',
      '--log-file',
      root.path('daemon.log'),
      'releases/v1',
    ]);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    const pid = await waitForPidfile(root.path('prefork.pid'));
    track(pid);
    expect(started.stdout).toContain(`master ${pid} is ready`);
    const status = await runPrefork(['status', '--json', '--root', root.dir]);
    const report = JSON.parse(status.stdout);
    expect(report.pidfiles[0].master.workers).toHaveLength(2);
    const port = Number(/:(\d+)$/.exec(report.pidfiles[0].master.binds[0])?.[1]);
    expect((await getJson(port)).body.release).toBe('v1');
    const stopped = await runPrefork(['stop', '--root', root.dir]);
    expect(stopped.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(root.path('prefork.pid'))).toBe(false);
  });
});
