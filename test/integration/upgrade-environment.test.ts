import { spawn } from 'node:child_process';
import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseBind } from '../../src/config/bind.js';
import { closeListenSockets, openListenSockets } from '../../src/handover/listen-sockets.js';
import { INTERNAL_ENV } from '../../src/protocol/env.js';
import { type AppRoot, makeAppRoot, PREFORK_BIN, switchCurrent } from '../helpers/app-root.js';
import {
  createRunningMaster,
  getJson,
  getJsonUnix,
  startMaster,
  upgrade,
} from '../helpers/master.js';
import { alive, killAll, PreforkProcess, readPid, track, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** A release that reports its environment and working directory. */
function envRelease(name: string) {
  return {
    'package.json': { version: '1.0.0' },
    'index.js': `module.exports = (req, res) => res.end(JSON.stringify({
      release: ${JSON.stringify(name)}, greeting: process.env.GREETING, cwd: process.cwd(),
      keys: Object.keys(process.env),
    }));`,
  };
}

describe('what a new master inherits', () => {
  it('the original environment and working directory, without prefork’s own variables', async () => {
    root = makeAppRoot();
    root.addRelease('env1', envRelease('env1'));
    root.addRelease('env2', envRelease('env2'));
    const old = await startMaster(root.dir, ['releases/env1'], { env: { GREETING: 'hello' } });
    switchCurrent(root, 'env2');
    const next = await upgrade(old);
    expect(readlinkSync(`/proc/${next.pid}/cwd`)).toBe(root.dir);
    process.kill(old.pid, 'SIGQUIT');
    await waitFor('old master gone', () => !alive(old.pid));
    const { body } = await getJson(next.port);
    expect(body.release).toBe('env2');
    expect(body.greeting).toBe('hello');
    expect(
      (body.keys as string[]).filter((k) => (INTERNAL_ENV as readonly string[]).includes(k)),
    ).toEqual([]);
    // Workers run in the real release directory, not through `current`.
    expect(body.cwd).toBe(root.path('releases/env2'));
  });

  it('binds added and removed between releases: kept sockets reused, dropped ones closed and unlinked', async () => {
    root = makeAppRoot();
    const kept = root.path('kept.sock');
    const dropped = root.path('dropped.sock');
    const added = root.path('added.sock');
    writeFileSync(
      root.path('prefork.config.json'),
      JSON.stringify({ bind: ['127.0.0.1:0', `unix:${kept}`, `unix:${dropped}`], workers: 2 }),
    );
    const proc = new PreforkProcess(['start', '--root', root.dir, 'releases/v1'], {
      cwd: root.dir,
    });
    const pid = await waitFor(
      'the pidfile',
      () => readPid(root.path('prefork.pid')) === proc.pid && proc.pid,
    );
    const listening = await proc.waitForLog(/^listening at http:/);
    const port = Number(/:(\d+)$/.exec(listening.msg)?.[1]);
    const old = createRunningMaster(proc, pid, port, root.path('prefork.pid'));
    expect((await getJsonUnix(dropped)).release).toBe('v1');

    writeFileSync(
      root.path('prefork.config.json'),
      JSON.stringify({ bind: ['127.0.0.1:0', `unix:${kept}`, `unix:${added}`], workers: 2 }),
    );
    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    expect((await getJsonUnix(added)).release).toBe('v2');
    process.kill(old.pid, 'SIGWINCH');
    await waitFor('old workers drained', () => old.workers().length === 0);
    process.kill(old.pid, 'SIGQUIT');
    await waitFor('old master gone', () => !alive(old.pid));
    expect((await getJsonUnix(kept)).release).toBe('v2');
    expect((await getJsonUnix(added)).release).toBe('v2');
    expect((await getJson(next.port)).body.release).toBe('v2');
    expect(existsSync(dropped)).toBe(false);
    process.kill(next.pid, 'SIGQUIT');
    await waitFor('new master gone', () => !alive(next.pid));
    expect(existsSync(kept)).toBe(false);
    expect(existsSync(added)).toBe(false);
  });

  it('systemd socket activation: LISTEN_FDS sockets are served, passed on across USR2, never unlinked', async () => {
    root = makeAppRoot();
    const socketPath = root.path('systemd.sock');
    const [socket] = await openListenSockets([parseBind(`unix:${socketPath}`)], []);
    if (socket === undefined) throw new Error('no socket');
    // What systemd does: the socket at fd 3, LISTEN_PID set to the pid that runs prefork.
    const child = spawn(
      'sh',
      [
        '-c',
        'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" "$@"',
        process.execPath,
        PREFORK_BIN,
        'start',
        '--root',
        root.dir,
        '-w',
        '2',
        'releases/v1',
      ],
      { cwd: root.dir, stdio: ['ignore', 'pipe', 'pipe', socket.fd] },
    );
    track(child.pid);
    let out = '';
    child.stdout?.on('data', (c) => {
      out += c;
    });
    const pid = await waitFor(
      'the pidfile',
      () => readPid(root.path('prefork.pid')) === child.pid && child.pid,
    );
    // Only systemd's socket: no default bind was added.
    expect(out).not.toMatch(/127\.0\.0\.1:8000/);
    expect((await getJsonUnix(socketPath)).release).toBe('v1');
    const first = new PreforkProcess(['status', '--root', root.dir]);
    await first.exited;
    expect(first.stdout).toMatch(/^ {2}listening: web$/m);
    // The test's own handle is not needed any more; keep the file (systemd owns it).
    closeListenSockets([{ ...socket, systemd: true }], {
      newMaster: undefined,
      oldMasterAlive: false,
    });

    switchCurrent(root, 'v2');
    process.kill(pid, 'SIGUSR2');
    const nextPid = await waitFor('the new master', () => {
      const p = readPid(root.path('prefork.pid'));
      return p !== undefined && p !== pid && p;
    });
    track(nextPid);
    process.kill(pid, 'SIGQUIT');
    await waitFor('old master gone', () => !alive(pid));
    expect((await getJsonUnix(socketPath)).release).toBe('v2');
    process.kill(nextPid, 'SIGQUIT');
    await waitFor('new master gone', () => !alive(nextPid));
    expect(existsSync(socketPath)).toBe(true);
  });
});
