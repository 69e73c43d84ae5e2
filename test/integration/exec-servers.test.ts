import { chmodSync } from 'node:fs';
import http from 'node:http';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import {
  addExecRelease,
  addPackagedRelease,
  removeGoBuild,
  startExecMaster,
} from '../helpers/exec-servers.js';
import { type LoadResult, startClientLoad } from '../helpers/load.js';
import { getJson } from '../helpers/master.js';
import { killAll, mastersIn, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

// Servers no one here wrote, from Debian's packages (test/provision.sh installs them), each
// deployed and rolled back as the example in docs/examples/<server> under kept-alive load. The
// table in docs/exec-releases.md (`npm run bench:exec-servers`) measures their settings.

let root: AppRoot;

afterEach(() => {
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});
afterAll(() => removeGoBuild());

/**
 * A server that, like Uvicorn, goes on accepting for a moment after SIGTERM and closes what it
 * accepts then unread (here with a reset, for 1.5 s); with RESET=always it resets every
 * connection from the start (a broken release).
 */
const LATE_RESETTER = `#!/usr/bin/env python3
import os, signal, socket, struct, time
RELEASE = os.path.basename(os.getcwd())
listener = socket.socket(fileno=3)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
listener.settimeout(0.05)
while not (stopping and time.monotonic() - stopping[0] > 1.5):
    try:
        conn, _ = listener.accept()
    except (socket.timeout, InterruptedError):
        continue
    if stopping or os.environ.get("RESET") == "always":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        continue
    conn.settimeout(2)
    conn.recv(65536)
    body = ('{"release": "%s", "pid": %d}' % (RELEASE, os.getpid())).encode()
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nconnection: close\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(body), body))
    conn.close()
`;

function addLateResetter(name: string, env: Record<string, string> = {}): void {
  root.addRelease(name, {
    'server.py': LATE_RESETTER,
    'prefork.json': { command: ['./server.py'], env },
  });
  chmodSync(root.path('releases', name, 'server.py'), 0o755);
}

/** Starts a master on releases/r1 (2 workers), ready; returns its port. */
async function startOnR1(): Promise<number> {
  return (await startExecMaster(root, 'r1')).port;
}

/** `prefork deploy releases/r2` with a 2 s verify window; the new master is tracked. */
async function deployR2(): Promise<{ code: number | null; stderr: string }> {
  const result = await runPrefork([
    'deploy',
    'releases/r2',
    '--root',
    root.dir,
    '--verify-window',
    '2',
  ]);
  track(readPid(root.path('prefork.pid')));
  return result;
}

/** Starts a master on releases/r1, deploys r2 and rolls back under load. */
async function deployAndRollBack(): Promise<LoadResult[]> {
  const url = `http://127.0.0.1:${await startOnR1()}`;
  const keepAlive = startClientLoad(url, { connections: 12 });
  const close = startClientLoad(url, { connections: 4, close: true });
  const total = () => keepAlive.count() + close.count();
  await waitFor('traffic', () => keepAlive.count() > 200 && close.count() > 50, 30_000);
  for (const [command, serving] of [
    ['deploy', 'r2'],
    ['rollback', 'r1'],
  ] as const) {
    const args = command === 'deploy' ? ['deploy', 'releases/r2'] : ['rollback'];
    const result = await runPrefork([...args, '--root', root.dir, '--verify-window', '1']);
    track(readPid(root.path('prefork.pid')));
    expect(result.code, `${command}: ${result.stderr}`).toBe(0);
    const before = keepAlive.byRelease[serving] ?? 0;
    const after = total();
    await waitFor(
      `traffic on ${serving} after the ${command}`,
      () => total() > after + 200 && (keepAlive.byRelease[serving] ?? 0) > before + 100,
      30_000,
    );
  }
  return [await keepAlive.stop(), await close.stop()];
}

describe('exec releases: servers from Debian, as the examples configure them', () => {
  it('Gunicorn (sync worker, no keep-alive): deploy and rollback under load, 0 failed', async () => {
    root = makeAppRoot();
    addPackagedRelease(root, 'r1', 'gunicorn');
    addPackagedRelease(root, 'r2', 'gunicorn');
    for (const result of await deployAndRollBack()) {
      expect(result.failed, JSON.stringify(result)).toBe(0);
      expect(result.byRelease.r2).toBeGreaterThan(0);
    }
  });

  it('Puma (16 threads, queue_requests false): deploy and rollback under load, 0 failed', async () => {
    root = makeAppRoot();
    addPackagedRelease(root, 'r1', 'puma');
    addPackagedRelease(root, 'r2', 'puma');
    for (const result of await deployAndRollBack()) {
      expect(result.failed, JSON.stringify(result)).toBe(0);
      expect(result.byRelease.r2).toBeGreaterThan(0);
    }
  });

  // Neither reaches 0 on every run (docs/exec-releases.md says why): each server process closes,
  // when it stops, the connections it holds with no request in progress, and a client sending on
  // one at that instant fails. Each must still deploy, roll back and serve both releases, and lose
  // nothing beyond that race: at most one request per connection for each server process stopped
  // (two switches of generations, of `processes` each: prefork's 2 workers, and for Uvicorn the
  // 2 UvicornWorkers of each worker's Gunicorn).
  it.each([
    ['Uvicorn (Gunicorn with UvicornWorker, the app answers connection: close)', 'uvicorn', 4],
    ['Go net/http with Shutdown alone on SIGTERM', 'go', 2],
  ] as const)('%s: deploy and rollback under load', async (_name, server, processes) => {
    root = makeAppRoot();
    for (const name of ['r1', 'r2']) {
      if (server === 'go')
        addExecRelease(root, name, 'go', { command: ['./server', '-drain', 'shutdown'] });
      else addPackagedRelease(root, name, server);
    }
    const results = await deployAndRollBack();
    for (const [result, connections] of [
      [results[0], 12],
      [results[1], 4],
    ] as const) {
      expect(result?.byRelease.r2).toBeGreaterThan(0);
      expect(result?.non2xx, JSON.stringify(result)).toBe(0);
      expect(result?.failed, JSON.stringify(result)).toBeLessThanOrEqual(
        connections * processes * 2,
      );
    }
  });
});

describe('the verify window while the old server drains', () => {
  it('a check the old server accepted and reset as it stopped is not held against the new release', async () => {
    root = makeAppRoot();
    addLateResetter('r1');
    addExecRelease(root, 'r2', 'python');
    const port = await startOnR1();
    const result = await deployR2();
    expect(result.code, result.stderr).toBe(0);
    const { body } = await getJson(port, '/', new http.Agent({ keepAlive: false }));
    expect(body.release).toBe('r2');
  });

  it('a new release that resets every connection is still rolled back', async () => {
    root = makeAppRoot();
    addLateResetter('r1');
    addLateResetter('r2', { RESET: 'always' });
    await startOnR1();
    const result = await deployR2();
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/r2 failed at verify-window: health check failed: GET \/ failed/);
  });
});
