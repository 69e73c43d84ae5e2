import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AppRoot,
  listenerRelease,
  makeAppRoot,
  PREFORK_BIN,
  switchCurrent,
} from '../helpers/app-root.js';
import { startClientLoad, startLoad } from '../helpers/load.js';
import { getJson, startMaster, upgrade } from '../helpers/master.js';
import {
  alive,
  cmdline,
  killAll,
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

describe('faults: processes', () => {
  it('the old master SIGKILLed during the overlap: its workers finish and leave, the new master serves alone, no .oldbin', async () => {
    root = makeAppRoot();
    const old = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(old.url, { connections: 8, durationSec: 120 });
    await waitFor('traffic', () => load.count() > 200);
    switchCurrent(root, 'v2');
    const next = await upgrade(old);
    const oldWorkers = old.workers();
    process.kill(old.pid, 'SIGKILL');
    await waitFor('the old workers gone', () => oldWorkers.every((pid) => !alive(pid)));
    await waitFor('no .oldbin', () => !existsSync(root.path('prefork.pid.oldbin')));
    expect(readPid(root.path('prefork.pid'))).toBe(next.pid);
    expect(cmdline(next.pid)).toBe('prefork: master [v2]');
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    // The killed master held no connections; its workers drained: nothing is lost.
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(result.byRelease.v2).toBeGreaterThan(0);
  });

  it('a draining worker stopped while bursty kept-alive clients send: resumed, it resets none of their requests', async () => {
    // Kept-alive clients sending each second's requests in a burst leave their connections
    // idle in between: a draining worker closes them after 250 ms idle. Stopped (SIGSTOP: a
    // worker starved of CPU on a busy host) across the next burst, then resumed, it must read
    // the requests waiting on those connections before it judges them idle. Node's client, as
    // real clients do, stops using a connection once its answer says `Connection: close`
    // (autocannon writes its next request on it anyway, and the resumed worker's close resets
    // that one now and then: a request no real client sends).
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const load = startClientLoad(master.url, { connections: 4, durationSec: 120, rate: 200 });
    await waitFor('traffic', () => load.count() > 200);
    for (const stopAfterMs of [400, 700, 1000, 400, 700, 1000]) {
      const draining = master.workers();
      process.kill(master.pid, 'SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, stopAfterMs));
      for (const pid of draining) if (alive(pid)) process.kill(pid, 'SIGSTOP');
      await new Promise((resolve) => setTimeout(resolve, 1100));
      for (const pid of draining) if (alive(pid)) process.kill(pid, 'SIGCONT');
      await waitFor('the stopped workers to finish draining', () =>
        draining.every((pid) => !alive(pid)),
      );
      await waitFor('new workers', () => master.workers().length === 2);
    }
    const result = await load.stop();
    expect(result.failed, JSON.stringify({ ...result, pids: undefined })).toBe(0);
  }, 120_000);

  it('a worker leaking memory past maxMemory is replaced, 0 failed requests', async () => {
    root = makeAppRoot();
    root.addRelease(
      'leaky',
      listenerRelease('leaky', 'const leak = [];', 'leak.push(Buffer.alloc(256 * 1024, 1));'),
    );
    const master = await startMaster(root.dir, [
      '--max-memory',
      '120',
      '--timeout',
      '2',
      'releases/leaky',
    ]);
    const load = startLoad(master.url, { connections: 4, durationSec: 120 });
    const replaced = await master.proc.waitForLog(
      /^worker \d+ uses \d+ MB, over maxMemory 120 MB: replacing it/,
      60_000,
    );
    const victim = Number(replaced.worker);
    await waitFor('the leaking worker gone', () => !alive(victim), 30_000);
    await waitFor('2 workers', () => master.workers().length === 2);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(alive(master.pid)).toBe(true);
  });

  it('an app that traps SIGTERM still stops on a quick shutdown', async () => {
    root = makeAppRoot();
    root.addRelease(
      'stubborn',
      listenerRelease(
        'stubborn',
        "process.on('SIGTERM', () => {}); process.on('SIGINT', () => {});",
      ),
    );
    const master = await startMaster(root.dir, ['releases/stubborn']);
    const workers = master.workers();
    const stopped = await runPrefork(['stop', '--quick', '--root', root.dir]);
    expect(stopped.code).toBe(0);
    for (const pid of workers) expect(alive(pid)).toBe(false);
  });

  it('a worker that hangs while draining is killed past the graceful timeout, and the master exits', async () => {
    root = makeAppRoot();
    root.addRelease(
      'hang',
      listenerRelease('hang', "process.on('SIGQUIT', () => { for (;;) {} });"),
    );
    const master = await startMaster(root.dir, ['--graceful-timeout', '1', 'releases/hang'], {
      workers: 1,
    });
    const [worker] = master.workers();
    process.kill(master.pid, 'SIGQUIT');
    await master.proc.waitForLog(
      /^killing worker \d+: still draining past the graceful timeout/,
      20_000,
    );
    expect((await master.proc.exited).code).toBe(0);
    expect(alive(worker as number)).toBe(false);
  });

  it('an SSE stream and a WebSocket held past the graceful timeout are closed then, the reload completes, 0 failed', async () => {
    root = makeAppRoot();
    root.addRelease('streams', {
      'package.json': { version: '1.0.0' },
      'index.js': `
        const http = require('node:http');
        module.exports = () => {
          const server = http.createServer((req, res) => {
            if (req.url === '/events') {
              res.writeHead(200, { 'content-type': 'text/event-stream' });
              const t = setInterval(() => res.write('data: tick\\n\\n'), 100);
              res.on('close', () => clearInterval(t));
              return;
            }
            res.end(JSON.stringify({ release: 'streams', pid: process.pid }));
          });
          server.on('upgrade', (req, socket) => {
            socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n');
            socket.on('data', () => {});
          });
          return server;
        };`,
    });
    const master = await startMaster(root.dir, ['--graceful-timeout', '2', 'releases/streams']);
    const load = startLoad(master.url, { connections: 4, durationSec: 120 });
    const sseClosed = new Promise<number>((resolve) => {
      http.get({ host: '127.0.0.1', port: master.port, path: '/events', agent: false }, (res) => {
        res.on('data', () => {});
        res.on('close', () => resolve(Date.now()));
      });
    });
    const wsClosed = new Promise<number>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: master.port,
        path: '/ws',
        agent: false,
        headers: { connection: 'Upgrade', upgrade: 'websocket' },
      });
      req.on('upgrade', (_res, socket) => socket.on('close', () => resolve(Date.now())));
      req.end();
    });
    await waitFor('traffic', () => load.count() > 100);
    const hup = Date.now();
    process.kill(master.pid, 'SIGHUP');
    const [sse, ws] = await Promise.all([sseClosed, wsClosed]);
    expect(sse - hup).toBeGreaterThanOrEqual(1500);
    expect(ws - hup).toBeGreaterThanOrEqual(1500);
    await master.proc.waitForLog(/^graceful timeout reached: closing the remaining connections/);
    await waitFor('2 workers', () => master.workers().length === 2);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
  });

  it('fd exhaustion (EMFILE) in a worker: it stops accepting at once and is replaced, 0 failed', async () => {
    root = makeAppRoot();
    root.addRelease(
      'fdhog',
      listenerRelease(
        'fdhog',
        "const fs = require('node:fs'); const held = [];",
        "if (req.url === '/exhaust') { try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { res.end(JSON.stringify({ release: 'fdhog', pid: process.pid, error: e.code })); return; } }",
      ),
    );
    // The test sets the fd limit the way an operator would, in the shell that starts prefork.
    const child = spawn(
      'sh',
      [
        '-c',
        'ulimit -n 512 && exec "$0" "$@"',
        process.execPath,
        PREFORK_BIN,
        'start',
        '--root',
        root.dir,
        '--bind',
        '127.0.0.1:0',
        '-w',
        '2',
        'releases/fdhog',
      ],
      { cwd: root.dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(child.pid);
    let out = '';
    child.stdout?.on('data', (chunk) => {
      out += chunk;
    });
    await waitFor('the pidfile', () => readPid(root.path('prefork.pid')) === child.pid);
    const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    const port = Number(/:(\d+)$/.exec(status.pidfiles[0].master.binds[0])?.[1]);
    const load = startLoad(`http://127.0.0.1:${port}`, { connections: 8, durationSec: 60 });
    await waitFor('traffic', () => load.count() > 200);
    // Over a kept-alive connection: its fd stays taken, so the worker has none left at all.
    const agent = new http.Agent({ keepAlive: true });
    const exhausted = await getJson(port, '/exhaust', agent);
    expect(exhausted.body.error).toBe('EMFILE');
    const sick = Number(exhausted.body.pid);
    await waitFor('the notice', () => out.includes('out of file descriptors (EMFILE): draining'));
    await waitFor('the exhausted worker replaced', () => !alive(sick), 30_000);
    const seen = load.count();
    await waitFor('traffic after', () => load.count() > seen + 200);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(alive(child.pid as number)).toBe(true);
    agent.destroy();
  });
});
