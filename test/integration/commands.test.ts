import { renameSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot, switchCurrent } from '../helpers/app-root.js';
import { getJson, startMaster } from '../helpers/master.js';
import {
  alive,
  cmdline,
  killAll,
  PreforkProcess,
  readPid,
  runPrefork,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

function ask(socketPath: string, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    let text = '';
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (c) => {
      text += c;
    });
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
}

describe('the signal commands, for people who would rather not kill', () => {
  it('scale N, +N, -N; reload; reopen-logs', async () => {
    root = makeAppRoot();
    const logFile = root.path('app.log');
    const master = await startMaster(root.dir, ['--log-file', logFile, 'releases/v1']);
    expect((await runPrefork(['scale', '4', '--root', root.dir])).stdout).toMatch(
      /now runs 4 workers/,
    );
    await waitFor('4 workers', () => master.workers().length === 4);
    expect((await runPrefork(['scale', '-3', '--root', root.dir])).code).toBe(0);
    await waitFor('1 worker', () => master.workers().length === 1);
    expect((await runPrefork(['scale', '+1', '--root', root.dir])).code).toBe(0);
    await waitFor('2 workers', () => master.workers().length === 2);
    const tooFew = await runPrefork(['scale', '-5', '--root', root.dir]);
    expect(tooFew.code).toBe(2);
    expect(tooFew.stderr).toMatch(/would leave -3 workers; at least 1 is needed/);

    // A reload onto another release: new workers, and `ps` names the release they run.
    const before = master.workers();
    switchCurrent(root, 'v2');
    expect((await runPrefork(['reload', '--root', root.dir])).stdout).toMatch(/sent SIGHUP/);
    await waitFor('new workers', () => {
      const now = master.workers();
      return now.length === 2 && now.every((p) => !before.includes(p));
    });
    await waitFor('the title to name v2', () => cmdline(master.pid) === 'prefork: master [v2]');
    expect((await getJson(master.port)).body.release).toBe('v2');

    renameSync(logFile, `${logFile}.1`);
    expect((await runPrefork(['reopen-logs', '--root', root.dir])).code).toBe(0);
    await waitFor('the reopened log file', () => {
      try {
        return statSync(logFile).size > 0;
      } catch {
        return false;
      }
    });
  });

  it('HUP with a config file that no longer validates is refused; the running configuration stays', async () => {
    root = makeAppRoot();
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ workers: 2 }));
    const proc = new PreforkProcess([
      'start',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      'releases/v1',
    ]);
    await waitFor('the pidfile', () => readPid(root.path('prefork.pid')) === proc.pid);
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ workers: 'three' }));
    process.kill(proc.pid, 'SIGHUP');
    const refused = await proc.waitForLog(/^reload refused: .*"workers": Invalid type/);
    expect(refused.msg).toMatch(/keeping the running configuration and release/);
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ workers: 3 }));
    process.kill(proc.pid, 'SIGHUP');
    await proc.waitForLog(/^reload complete/);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    expect(status.pidfiles[0].master.desiredWorkers).toBe(3);
  });

  it('writes the pidfile only once every worker is ready', async () => {
    root = makeAppRoot();
    root.addRelease('slow', {
      'package.json': { version: '1.0.0' },
      'index.js':
        "module.exports = async () => { await new Promise((r) => setTimeout(r, 1500)); return (req, res) => res.end('ok'); };",
    });
    const proc = new PreforkProcess([
      'start',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      '-w',
      '2',
      'releases/slow',
    ]);
    await proc.waitForLog(/^booting worker with pid/);
    expect(readPid(root.path('prefork.pid'))).toBeUndefined();
    const ready = await proc.waitForLog(/^master ready/);
    const booted = proc.logs().filter((l) => /^booting worker/.test(l.msg));
    expect(Number(ready.time)).toBeGreaterThanOrEqual(
      Math.max(...booted.map((l) => Number(l.time))) + 1400,
    );
    expect(readPid(root.path('prefork.pid'))).toBe(proc.pid);
  });

  it('the control socket is owner-only and shrugs off malformed and oversized requests', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    const socketPath = root.path('.prefork', `master-${master.pid}.sock`);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(root.path('.prefork')).mode & 0o777).toBe(0o700);
    expect(await ask(socketPath, 'not json\n')).toMatch(/"ok":false/);
    expect(await ask(socketPath, '{"cmd":"shutdown"}\n')).toMatch(/unknown request/);
    expect(await ask(socketPath, 'x'.repeat(200_000))).toMatch(/request larger than 65536 bytes/);
    expect(JSON.parse(await ask(socketPath, '{"cmd":"status"}\n')).result.pid).toBe(master.pid);
    expect(alive(master.pid)).toBe(true);
  });
});

describe('the control request "health"', () => {
  it('has each serving worker answer from its own app, none once WINCH stopped them', async () => {
    root = makeAppRoot();
    // Each worker answers a status of its own, so an answer from another worker would show.
    root.addRelease(
      'mirror',
      listenerRelease(
        'mirror',
        '',
        "if (req.url === '/health') { res.statusCode = 200 + (process.pid % 97); res.end(); return; }",
      ),
    );
    const master = await startMaster(root.dir, ['releases/mirror'], { workers: 3 });
    const socketPath = root.path('.prefork', `master-${master.pid}.sock`);
    const health = async () => {
      const reply = JSON.parse(await ask(socketPath, '{"cmd":"health","path":"/health"}\n'));
      expect(reply.ok, JSON.stringify(reply)).toBe(true);
      return reply.result as { pid: number; status: number | null; error: string | null }[];
    };
    const answers = await health();
    expect(answers.map((w) => w.pid).sort()).toEqual(master.workers().sort());
    for (const worker of answers) {
      expect(worker).toEqual({ pid: worker.pid, status: 200 + (worker.pid % 97), error: null });
    }
    expect(await ask(socketPath, '{"cmd":"health","path":"health"}\n')).toMatch(/unknown request/);
    process.kill(master.pid, 'SIGWINCH');
    await waitFor('the workers to exit', () => master.workers().length === 0);
    expect(await health()).toEqual([]);
  });
});
