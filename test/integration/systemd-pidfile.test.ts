import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { alive, cmdline, killAll, readPid, runPrefork, track } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/**
 * What systemd does for `Type=forking` + `PIDFile=` (docs/systemd.md): after `ExecStart` exits,
 * read the PID file; whenever the main PID exits, read the PID file again and adopt the new
 * pid ("forking services may occasionally move to a new PID, as long as they update the PID
 * file before exiting the old PID"); if it names no live process, the service is dead.
 */
class PidfileSupervisor {
  mainPid: number | undefined;
  readonly history: number[] = [];
  died = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pidfile: string) {}

  start(): void {
    this.adopt();
    this.timer = setInterval(() => {
      if (this.mainPid !== undefined && !alive(this.mainPid)) this.adopt();
    }, 5);
  }

  private adopt(): void {
    const pid = readPid(this.pidfile);
    if (pid === undefined || !alive(pid)) {
      this.died = true;
      this.mainPid = undefined;
      return;
    }
    this.mainPid = pid;
    this.history.push(pid);
    track(pid);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

describe('systemd Type=forking + PIDFile= (a stand-in supervisor)', () => {
  it('start --daemon, deploy, rollback: the supervisor follows the serving master and never sees the service die', async () => {
    root = makeAppRoot();
    const started = await runPrefork([
      'start',
      '--daemon',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      '-w',
      '2',
      '--log-file',
      root.path('app.log'),
      'releases/v1',
    ]);
    expect(started.code).toBe(0);
    // ExecStart has exited: the PID file must be there now.
    const supervisor = new PidfileSupervisor(root.path('prefork.pid'));
    supervisor.start();
    expect(supervisor.mainPid).toBeDefined();
    try {
      expect(
        (await runPrefork(['deploy', 'releases/v2', '--root', root.dir, '--verify-window', '0.5']))
          .code,
      ).toBe(0);
      expect(
        (await runPrefork(['rollback', '--root', root.dir, '--verify-window', '0.5'])).code,
      ).toBe(0);
    } finally {
      supervisor.stop();
    }
    expect(supervisor.died).toBe(false);
    expect(supervisor.history).toHaveLength(3);
    expect(cmdline(supervisor.mainPid as number)).toBe('prefork: master [v1]');
    expect((await runPrefork(['stop', '--root', root.dir])).code).toBe(0);
  });
});
