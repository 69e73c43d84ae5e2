import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startMaster } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

/** The drain's deadline: short, so that the test sees what is closed at it. */
const GRACEFUL_TIMEOUT_S = 3;

let root: AppRoot;
const sockets: net.Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  killAll();
  root?.remove();
});

/**
 * A release with a request it never answers (`/hang`) and an `upgrade` handler that keeps the
 * connection: each kind of connection a worker tells apart, held open on purpose.
 */
const RELEASE = {
  'package.json': { name: 'test-counts', version: '1.0.0', main: 'index.js' },
  'index.js': `const http = require('node:http');
const server = http.createServer((req, res) => {
  if (req.url === '/hang') return;
  res.end('ok');
});
server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: test\\r\\nConnection: Upgrade\\r\\n\\r\\n');
});
module.exports = server;
`,
};

/** A raw client connection that sends `request` and resolves once `expected` came back. */
async function open(
  port: number,
  request: string,
  expected: string | undefined,
): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => {});
  let received = '';
  socket.on('data', (data) => {
    received += data;
  });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(request);
  if (expected !== undefined)
    await waitFor(`"${expected}" back`, () => received.includes(expected));
  return socket;
}

interface CountedWorker {
  pid: number;
  state: string;
  connections?: { byKind: Record<string, number>; streams: number };
  drainDeadline?: number;
  closedAtDeadline: number;
}

async function workersOf(dir: string): Promise<CountedWorker[]> {
  const status = JSON.parse((await runPrefork(['status', '--json', '--root', dir])).stdout);
  return status.pidfiles[0].master.workers as CountedWorker[];
}

describe('connections by kind (status, /metrics) and what a drain closes at its deadline', () => {
  it('counts busy, idle and upgraded connections, shows the drain, and counts what it closed at the deadline', async () => {
    root = makeAppRoot();
    root.addRelease('counts', RELEASE);
    const metricsPort = await freePort();
    const master = await startMaster(
      root.dir,
      [
        'releases/counts',
        '--graceful-timeout',
        String(GRACEFUL_TIMEOUT_S),
        // What a drain closes, counted: idle connections that would otherwise move, once quiet
        // 250 ms (by default 5 s, past this test's 3 s graceful timeout: they would be closed at
        // the deadline).
        '--no-move-connections',
        '--keep-alive-min-timeout',
        '0.25',
        '--metrics-bind',
        `127.0.0.1:${metricsPort}`,
      ],
      { workers: 1 },
    );
    const get = 'GET / HTTP/1.1\r\nHost: t\r\n\r\n';
    for (let i = 0; i < 3; i += 1) await open(master.port, get, '\r\n\r\nok');
    await open(master.port, 'GET /hang HTTP/1.1\r\nHost: t\r\n\r\n', undefined);
    await open(
      master.port,
      'GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n',
      ' 101 ',
    );
    const expected = { http1_idle: 3, http1_busy: 1, upgraded: 1 };
    await waitFor('the connections in a heartbeat', async () => {
      const [worker] = await workersOf(root.dir);
      return JSON.stringify(worker?.connections?.byKind) === JSON.stringify(expected);
    });
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toContain(
      'connections [counts]: 5 (HTTP/1.1 busy 1, HTTP/1.1 idle 3, upgraded (WebSocket) 1)',
    );
    const metrics = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const scraped = await metrics();
    expect(scraped).toContain('prefork_connections{release="counts",kind="http1_idle"} 3');
    expect(scraped).toContain('prefork_connections{release="counts",kind="http1_busy"} 1');
    expect(scraped).toContain('prefork_connections{release="counts",kind="upgraded"} 1');
    expect(scraped).toContain('prefork_connections_closed_at_deadline_total{release="counts"} 0');

    // HUP: a new worker, and the old one drains. Its idle connections close once quiet; the
    // request never answered and the upgraded connection stay until the deadline.
    const [old] = await workersOf(root.dir);
    process.kill(master.pid, 'SIGHUP');
    const draining = await waitFor('the old worker draining, idle connections closed', async () => {
      const worker = (await workersOf(root.dir)).find((w) => w.pid === old?.pid);
      const left = worker?.connections?.byKind;
      return (
        worker?.state === 'draining' &&
        left?.http1_idle === undefined &&
        left?.http1_busy === 1 &&
        worker
      );
    });
    expect(draining.drainDeadline).toBeGreaterThan(Date.now());
    expect(draining.connections?.byKind).toEqual({ http1_busy: 1, upgraded: 1 });
    const during = await runPrefork(['status', '--root', root.dir]);
    expect(during.stdout).toMatch(
      /draining \[counts\]: 1 workers, 2 \(HTTP\/1\.1 busy 1, upgraded \(WebSocket\) 1\) left, the rest closed in [0-3]s; 3 closed cleanly, 0 closed at the deadline/,
    );
    // At the deadline the two are closed, and counted for the release (the worker has gone).
    await waitFor(
      'the two counted as closed at the deadline',
      async () =>
        (await metrics()).includes(
          'prefork_connections_closed_at_deadline_total{release="counts"} 2',
        ),
      (GRACEFUL_TIMEOUT_S + 20) * 1000,
    );
    // The three idle ones closed once quiet, none reset; nothing moved (moving is off).
    const drained = await metrics();
    expect(drained).toContain(
      'prefork_connections_drained_total{release="counts",outcome="closed"} 3',
    );
    expect(drained).toContain(
      'prefork_connections_drained_total{release="counts",outcome="reset"} 0',
    );
    expect(drained).toContain(
      'prefork_connections_drained_total{release="counts",outcome="moved"} 0',
    );
    await waitFor('the client sockets closed', () =>
      sockets.every((socket) => socket.destroyed || socket.readableEnded),
    );

    // A deploy whose old master had to close a connection at the deadline says so, and so
    // does a stop.
    root.addRelease('counts-b', RELEASE);
    await open(master.port, 'GET /hang HTTP/1.1\r\nHost: t\r\n\r\n', undefined);
    await waitFor('the request in a heartbeat', async () => {
      const [worker] = await workersOf(root.dir);
      return worker?.connections?.byKind.http1_busy === 1;
    });
    const deployed = await runPrefork([
      'deploy',
      'releases/counts-b',
      '--root',
      root.dir,
      '--verify-window',
      '1',
    ]);
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    expect(deployed.stdout).toContain(
      `old master ${master.pid}: 1 connection was still open at the graceful timeout (${GRACEFUL_TIMEOUT_S} s) and closed`,
    );
    const next = readPid(root.path('prefork.pid'));
    track(next);
    for (let i = 0; i < 2; i += 1)
      await open(master.port, 'GET /hang HTTP/1.1\r\nHost: t\r\n\r\n', undefined);
    await waitFor('the requests in a heartbeat', async () => {
      const [worker] = await workersOf(root.dir);
      return worker?.connections?.byKind.http1_busy === 2;
    });
    // And an idle one, which the stop's drain closes once quiet: the stop says so.
    await open(master.port, get, '\r\n\r\nok');
    await waitFor('the idle one in a heartbeat', async () => {
      const [worker] = await workersOf(root.dir);
      return worker?.connections?.byKind.http1_idle === 1;
    });
    const stopped = await runPrefork(['stop', '--root', root.dir]);
    expect(stopped.stdout).toBe(
      `prefork: master ${next}: 2 connections were still open at the graceful timeout (${GRACEFUL_TIMEOUT_S} s) and closed (connections: 1 closed cleanly)\n`.replace(
        `${next}:`,
        `${next} stopped:`,
      ),
    );
  });
});

describe('--keep-alive-min-timeout: how long an idle connection that cannot move stays open in a drain', () => {
  it('a quiet connection is closed only after it, and a request sent within it is answered with Connection: close', async () => {
    root = makeAppRoot();
    root.addRelease('counts', RELEASE);
    const minTimeoutMs = 2000;
    const master = await startMaster(
      root.dir,
      ['releases/counts', '--keep-alive-min-timeout', String(minTimeoutMs / 1000)],
      { workers: 1 },
    );
    const get = 'GET / HTTP/1.1\r\nHost: t\r\n\r\n';
    const quiet = await open(master.port, get, '\r\n\r\nok');
    const asking = await open(master.port, get, '\r\n\r\nok');
    let answer = '';
    asking.on('data', (data) => {
      answer += data;
    });
    const closedAt = (socket: net.Socket) =>
      new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    const quietClosed = closedAt(quiet);
    const askingClosed = closedAt(asking);
    // QUIT: a drain with no successor, so its idle connections cannot move.
    process.kill(master.pid, 'SIGQUIT');
    const draining = await master.proc.waitForLog(/^draining$/);
    const drainStart = draining.time as number;
    // The client's next request, half the minimum quiet time into the drain.
    setTimeout(() => asking.write(get), minTimeoutMs / 2 - (Date.now() - drainStart));
    expect((await askingClosed) - drainStart).toBeLessThan(minTimeoutMs);
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer.toLowerCase()).toContain('connection: close\r\n');
    expect(answer).toMatch(/\r\n\r\nok$/);
    // The quiet one: not before the minimum quiet time (the drain looks every 50 ms).
    expect((await quietClosed) - drainStart).toBeGreaterThanOrEqual(minTimeoutMs);
    expect((await master.proc.exited).code).toBe(0);
  });
});

describe("the graceful timeout a QUIT waits out is the master's own", () => {
  it("a deploy waits out the old master's own graceful timeout, not its own setting: a long request on the old release is answered", async () => {
    root = makeAppRoot();
    // Answers /slow 14 s after its worker's drain began: past what the deploy's own setting
    // (0.5 s, + 10 s for the master to exit) would wait after its QUIT, which comes at least
    // the verify window (1 s) after the drain began, and well within the master's own 30 s.
    const slowRelease = (name: string) => ({
      'package.json': { name: `test-${name}`, version: '1.0.0', type: 'module', main: 'index.js' },
      'index.js': `import http from 'node:http';
const waiting = [];
export default http.createServer((req, res) => {
  if (req.url === '/slow') waiting.push(res);
  else res.end('ok');
});
export function drain() {
  setTimeout(() => { for (const res of waiting) res.end('slow ok'); }, 14_000);
}
`,
    });
    root.addRelease('slow-a', slowRelease('slow-a'));
    // The root's configuration says 0.5 s; the master was started with 30 on its command line,
    // which wins for it (and for the new master USR2 starts with its arguments).
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ gracefulTimeout: 0.5 }));
    root.addRelease('slow-b', slowRelease('slow-b'));
    const master = await startMaster(root.dir, ['releases/slow-a', '--graceful-timeout', '30'], {
      workers: 1,
    });
    const slow = await open(master.port, 'GET /slow HTTP/1.1\r\nHost: t\r\n\r\n', undefined);
    let answer = '';
    slow.on('data', (data) => {
      answer += data;
    });
    await waitFor('the request in a heartbeat', async () => {
      const [worker] = await workersOf(root.dir);
      return worker?.connections?.byKind.http1_busy === 1;
    });
    const started = Date.now();
    const deployed = await runPrefork([
      'deploy',
      'releases/slow-b',
      '--root',
      root.dir,
      '--verify-window',
      '1',
    ]);
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    // It waited for the old master to finish its request, and sent it no TERM.
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n(7\r\n)?slow ok/);
    expect(deployed.stdout).not.toContain('SIGTERM');
    expect(deployed.stdout).toContain(
      `old master ${master.pid}: every connection finished before the graceful timeout`,
    );
    expect(Date.now() - started).toBeGreaterThan(14_000);
  });
});
