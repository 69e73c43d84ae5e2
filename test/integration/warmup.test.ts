import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { getJson, type RunningMaster, startMaster } from '../helpers/master.js';
import { killAll, waitFor } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** A release that counts the warm-up requests it saw and reports them on /count. */
function countingRelease(onWarm = "res.end('warm');"): Record<string, string | object> {
  return listenerRelease(
    'counting',
    'let warm = 0; let agent = "";',
    `if (req.url === '/warm') { warm += 1; agent = req.headers['user-agent']; ${onWarm} return; }
     if (req.url === '/count') { res.end(JSON.stringify({ pid: process.pid, warm, agent })); return; }`,
  );
}

/** /count of every live worker (a new connection per request until each one has answered). */
async function countsOf(master: RunningMaster): Promise<Map<number, Record<string, unknown>>> {
  const workers = master.workers();
  const counts = new Map<number, Record<string, unknown>>();
  const fresh = new http.Agent({ keepAlive: false });
  await waitFor(`/count from workers ${workers.join(', ')}`, async () => {
    const { body } = await getJson(master.port, '/count', fresh);
    counts.set(Number(body.pid), body);
    return workers.every((pid) => counts.has(pid));
  });
  return counts;
}

describe('warm-up (--warmup, --warmup-path)', () => {
  it('each new worker sends itself the warm-up requests before it takes traffic, and they count for nothing', async () => {
    root = makeAppRoot();
    root.addRelease('counting', countingRelease());
    // maxRequests below the warm-up: were warm-up requests counted, the worker would retire
    // as soon as it is ready.
    const master = await startMaster(
      root.dir,
      [
        ...['--warmup', '40', '--warmup-path', '/warm', '--max-requests', '30'],
        'releases/counting',
      ],
      { workers: 1 },
    );
    const [worker] = master.workers();
    for (let i = 0; i < 5; i += 1) {
      const { body } = await getJson(master.port, '/count');
      expect(body).toEqual({ pid: worker, warm: 40, agent: 'prefork-warmup' });
    }
    expect(master.proc.countLogs(/^worker reached maxRequests/)).toBe(0);
    expect(master.proc.countLogs(/^warmed up$/)).toBe(1);

    // A worker a HUP starts warms up too, before the old one stops.
    process.kill(master.pid, 'SIGHUP');
    await waitFor(
      'a new worker',
      () => master.workers().length === 1 && master.workers()[0] !== worker,
    );
    const counts = await countsOf(master);
    expect([...counts.values()]).toMatchObject([{ warm: 40 }]);
    expect(master.proc.countLogs(/^warmed up$/)).toBe(2);
  });

  it('a warm-up path that fails ends the warm-up early; the worker serves anyway', async () => {
    root = makeAppRoot();
    root.addRelease('counting', countingRelease('req.socket.destroy();'));
    const master = await startMaster(root.dir, [
      ...['--warmup', '40', '--warmup-path', '/warm'],
      'releases/counting',
    ]);
    const counts = await countsOf(master);
    for (const body of counts.values()) expect(body.warm).toBe(1);
    const stopped = await master.proc.waitForLog(/^warm-up stopped early \(socket hang up\)/);
    expect(stopped.requests).toBe(0);
  });
});
