import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync } from 'node:fs';
import http from 'node:http';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { processState } from '../../src/process/alive.js';
import { type AppRoot, makeAppRoot, switchCurrent } from '../helpers/app-root.js';
import {
  addExecRelease,
  masterStatus,
  readyWorkers,
  removeGoBuild,
  type ServerLanguage,
  startExecMaster,
} from '../helpers/exec-servers.js';
import { startClientLoad } from '../helpers/load.js';
import { getJson } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import {
  alive,
  killAll,
  mastersIn,
  PreforkProcess,
  readPid,
  runPrefork,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  // Masters a failed test started without knowing their pids (USR2, a deploy cut short) too.
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});
afterAll(() => removeGoBuild());

/** {@link startExecMaster} in this test's root. */
function startOn(release: string, options: { workers?: number; args?: string[] } = {}) {
  return startExecMaster(root, release, options);
}

/** `prefork deploy` (or rollback) as a user runs it; the new master is tracked for clean-up. */
async function run(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const result = await runPrefork([...args, '--root', root.dir, '--verify-window', '1']);
  track(readPid(root.path('prefork.pid')));
  return result;
}

/** GET / on a fresh connection: the release that answered. */
async function releaseAnswering(port: number): Promise<string> {
  const { body } = await getJson(port, '/', new http.Agent({ keepAlive: false }));
  return String(body.release);
}

/** The inode of the socket at `fd` in process `pid` (`socket:[123]`). */
function socketInode(pid: number, fd: number): string {
  return readlinkSync(`/proc/${pid}/fd/${fd}`);
}

describe.each<ServerLanguage>(['go', 'python'])('exec releases: a %s server', (language) => {
  it('deploy and rollback under keep-alive and Connection: close load: 0 failed requests', async () => {
    root = makeAppRoot();
    addExecRelease(root, `${language}1`, language);
    addExecRelease(root, `${language}2`, language);
    const master = await startOn(`${language}1`);
    const keepAlive = startClientLoad(master.url, { connections: 6 });
    const close = startClientLoad(master.url, { connections: 4, close: true });
    await waitFor('traffic', () => keepAlive.count() > 200 && close.count() > 100);

    const deployed = await run(['deploy', `releases/${language}2`]);
    expect(deployed.code, deployed.stderr).toBe(0);
    const afterDeploy = keepAlive.count() + close.count();
    await waitFor(
      'traffic on the new release',
      () => keepAlive.count() + close.count() > afterDeploy + 200,
    );
    expect(await releaseAnswering(master.port)).toBe(`${language}2`);

    const rolledBack = await run(['rollback']);
    expect(rolledBack.code, rolledBack.stderr).toBe(0);
    const afterRollback = keepAlive.count() + close.count();
    await waitFor(
      'traffic after the rollback',
      () => keepAlive.count() + close.count() > afterRollback + 200,
    );
    expect(await releaseAnswering(master.port)).toBe(`${language}1`);

    const results = [await keepAlive.stop(), await close.stop()];
    for (const result of results) {
      expect(result.failed, JSON.stringify(result)).toBe(0);
      expect(result.byRelease[`${language}1`]).toBeGreaterThan(0);
      expect(result.byRelease[`${language}2`]).toBeGreaterThan(0);
    }
    // The new master of the rollback serves, with the release's own workers, readiness and status.
    const serving = readPid(root.path('prefork.pid')) as number;
    const status = await masterStatus(root.dir, serving);
    expect(status?.release).toBe(`${language}1`);
    for (const worker of status?.workers ?? []) {
      expect(worker.kind).toBe('exec');
      expect(worker.status).toBe(`serving ${language}1`);
      expect(worker.rss).toBeGreaterThan(1024 * 1024);
    }
  });

  it('by hand: USR2, WINCH old, then the revert (HUP old, QUIT new), then USR2, WINCH, QUIT old', async () => {
    root = makeAppRoot();
    addExecRelease(root, `${language}1`, language);
    addExecRelease(root, `${language}2`, language);
    const old = await startOn(`${language}1`);
    const load = startClientLoad(old.url, { connections: 4 });
    const upgradeTo = async () => {
      switchCurrent(root, `${language}2`);
      const readyLines = () =>
        old.proc.logs().filter((l) => /^new master \d+ is ready$/.test(l.msg));
      const before = readyLines().length;
      process.kill(old.pid, 'SIGUSR2');
      const line = await waitFor('the new master to be ready', () => readyLines()[before]);
      const pid = Number(/\d+/.exec(line.msg)?.[0]);
      track(pid);
      return pid;
    };
    let newPid = await upgradeTo();
    process.kill(old.pid, 'SIGWINCH');
    await waitFor('only the new release to answer', async () => {
      const status = await masterStatus(root.dir, old.pid);
      return status?.workers.length === 0;
    });
    for (let i = 0; i < 10; i += 1) expect(await releaseAnswering(old.port)).toBe(`${language}2`);

    // The revert: the old master's workers come back, the new master goes.
    switchCurrent(root, `${language}1`);
    process.kill(old.pid, 'SIGHUP');
    await readyWorkers(root.dir, old.pid, `${language}1`, 2);
    process.kill(newPid, 'SIGQUIT');
    await waitFor('the new master to exit', () => !alive(newPid));
    await waitFor(
      'the pidfile back on the old master',
      () => readPid(root.path('prefork.pid')) === old.pid,
    );
    for (let i = 0; i < 10; i += 1) expect(await releaseAnswering(old.port)).toBe(`${language}1`);

    // And forward again, to the end.
    newPid = await upgradeTo();
    process.kill(old.pid, 'SIGWINCH');
    await waitFor(
      'the old workers to stop',
      async () => (await masterStatus(root.dir, old.pid))?.workers.length === 0,
    );
    process.kill(old.pid, 'SIGQUIT');
    await waitFor('the old master to exit', () => !alive(old.pid));
    await waitFor(
      'the pidfile on the new master',
      () => readPid(root.path('prefork.pid')) === newPid,
    );
    expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
    for (let i = 0; i < 10; i += 1) expect(await releaseAnswering(old.port)).toBe(`${language}2`);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
  });
});

describe('exec releases: faults and bad input', () => {
  it('a release that never sends READY=1: deploy exits 1, says it never notified, rolled back, 0 failed', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    // A real program that serves nothing and never notifies.
    root.addRelease('silent', { 'prefork.json': { command: ['/bin/sleep', '600'] } });
    const master = await startOn('go1', { args: ['--boot-timeout', '2'] });
    const load = startClientLoad(master.url, { connections: 4, close: true });
    const deployed = await run(['deploy', 'releases/silent']);
    expect(deployed.code).toBe(1);
    expect(deployed.stderr).toMatch(
      /never sent READY=1 on NOTIFY_SOCKET within bootTimeout \(2 s\)/,
    );
    expect(deployed.stderr).toMatch(/Rolled back: go1 serves again/);
    expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
    expect(readlinkSync(root.path('current'))).toMatch(/go1$/);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(Object.keys(result.byRelease)).toEqual(['go1']);
  });

  it('a release that exits at once: deploy exits 1 with what it said; on a running master, crash backoff', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    root.addRelease('crash', {
      'prefork.json': { command: ['/bin/sh', '-c', 'echo "cannot open the database" >&2; exit 3'] },
    });
    const master = await startOn('go1');
    const load = startClientLoad(master.url, { connections: 4, close: true });
    const deployed = await run(['deploy', 'releases/crash']);
    expect(deployed.code).toBe(1);
    expect(deployed.stderr).toMatch(/exited with code 3 \(it said: cannot open the database\)/);
    expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);

    // HUP onto it by hand: the reload is abandoned, the running workers stay.
    switchCurrent(root, 'crash');
    process.kill(master.pid, 'SIGHUP');
    await master.proc.waitForLog(/^reload failed: a new worker failed to boot: exited with code 3/);
    expect(await releaseAnswering(master.port)).toBe('go1');
  });

  it('a serving worker that keeps dying is respawned with backoff', async () => {
    root = makeAppRoot();
    // Ready at once by time, then it dies 300 ms later: a crash loop after readiness.
    root.addRelease('flaky', {
      'prefork.json': {
        command: ['/bin/sh', '-c', 'sleep 0.3; echo "lost the database" >&2; exit 3'],
        ready: { afterMs: 0 },
      },
    });
    const proc = new PreforkProcess(
      ['start', 'releases/flaky', '--root', root.dir, '--bind', '127.0.0.1:0', '--workers', '1'],
      { cwd: root.dir },
    );
    await proc.waitForLog(/^workers are crash-looping: next spawn in \d+ ms$/, 20_000);
    await proc.waitForLog(/^workers are crash-looping: next spawn in (4|8)00 ms$/, 20_000);
    expect(
      proc.countLogs(/died: exited with code 3 \(it said: lost the database\)/),
    ).toBeGreaterThan(2);
    process.kill(proc.pid, 'SIGTERM');
    expect((await proc.exited).code).toBe(0);
  });

  it.each([
    [
      'missing',
      { command: ['./bin/nowhere'] },
      /"command" program "\.\/bin\/nowhere" does not exist/,
    ],
    [
      'not executable',
      { command: ['./server.txt'] },
      /"command" program "\.\/server\.txt" is not executable .*chmod \+x/,
    ],
    [
      'not on PATH',
      { command: ['no-such-server-here'] },
      /"command" program "no-such-server-here" is not on PATH/,
    ],
    [
      'a bad key',
      { command: ['/bin/sleep'], ready: 'soon' },
      /"ready": expected "notify" or \{"afterMs": N\}/,
    ],
    [
      'a variable prefork sets',
      { command: ['/bin/sleep'], env: { LISTEN_FDS: '9' } },
      /"env" sets LISTEN_FDS, which prefork sets/,
    ],
  ])('a release with a command %s: exit 2 naming it, nothing changed', async (_, json, message) => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    root.addRelease('bad', { 'prefork.json': json, 'server.txt': 'not a program' });
    // `start` on it refuses, before anything runs.
    const started = await runPrefork([
      'start',
      'releases/bad',
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
    ]);
    expect(started.code).toBe(2);
    expect(started.stderr).toMatch(message);
    expect(existsSync(root.path('current'))).toBe(false);
    // `deploy` too, with a master serving: nothing changes.
    const master = await startOn('go1', { workers: 1 });
    const deployed = await run(['deploy', 'releases/bad']);
    expect(deployed.code).toBe(2);
    expect(deployed.stderr).toMatch(message);
    expect(readPid(root.path('prefork.pid'))).toBe(master.pid);
    expect(readlinkSync(root.path('current'))).toMatch(/go1$/);
    expect((await masterStatus(root.dir, master.pid))?.workers.map((w) => w.release)).toEqual([
      'go1',
    ]);
  });

  it('a worker that stops sending WATCHDOG=1 is killed and replaced; the others serve every request', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go', { watchdogSec: 1 });
    const master = await startOn('go1', { workers: 2 });
    const [hung, other] = await readyWorkers(root.dir, master.pid, 'go1', 2);
    process.kill(hung as number, 'SIGSTOP');
    // Stopped, it accepts nothing: every connection from now on goes to the other one. (Until
    // the stop has taken, it might still take one, and that request would hang with it.)
    await waitFor('the worker to be stopped', () => processState(hung as number) === 'T');
    const answers: string[] = [];
    const killed = master.proc.waitForLog(
      new RegExp(`^killing worker ${hung}: no WATCHDOG=1 for 1 s`),
      10_000,
    );
    let done = false;
    void killed.then(() => {
      done = true;
    });
    while (!done) answers.push(await releaseAnswering(master.port));
    await killed;
    const replaced = await readyWorkers(root.dir, master.pid, 'go1', 2);
    expect(replaced).toContain(other);
    expect(replaced).not.toContain(hung);
    expect(answers.length).toBeGreaterThan(0);
    expect(new Set(answers)).toEqual(new Set(['go1']));
  });
});

describe('exec releases and metrics', () => {
  it('--metrics-bind: workers by state, exits by reason and RSS for an exec release; no request series', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'py1', 'python', { ready: { afterMs: 300 } });
    const metricsPort = await freePort();
    const master = await startOn('py1', {
      workers: 2,
      args: ['--metrics-bind', `127.0.0.1:${metricsPort}`],
    });
    for (let i = 0; i < 10; i += 1) expect(await releaseAnswering(master.port)).toBe('py1');
    const [victim] = await readyWorkers(root.dir, master.pid, 'py1', 2);
    process.kill(victim as number, 'SIGKILL');
    await waitFor('the crashed worker replaced', async () => {
      const pids = await readyWorkers(root.dir, master.pid, 'py1', 2);
      return !pids.includes(victim as number);
    });
    const text = await waitFor('the exit counted and the RSS read', async () => {
      const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const rss = /^prefork_worker_resident_memory_bytes\{release="py1"\} (\d+)/m.exec(body);
      return (
        body.includes('prefork_worker_exits_total{release="py1",reason="crashed"} 1') &&
        Number(rss?.[1]) > 1_000_000 &&
        body
      );
    });
    expect(text).toContain('prefork_workers{release="py1",state="ready"} 2');
    // prefork is not in an exec release's data path: no request figures, and status says none.
    expect(text).not.toMatch(/prefork_http_requests_total\{release="py1"/);
    expect(text).not.toMatch(/prefork_http_request_duration_seconds_count\{release="py1"/);
    const { stdout } = await runPrefork(['status', '--root', root.dir]);
    expect(stdout).toContain(`metrics: 127.0.0.1:${metricsPort}`);
    expect(stdout).not.toContain('traffic [py1]');
  });
});

describe('exec releases among Node releases', () => {
  it('Node → Go → Go → Go → Node under load: 0 failed, the same listen socket throughout, no fd growth', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    addExecRelease(root, 'go2', 'go');
    const first = await startOn('v1');
    const fdsOf = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
    const inode = socketInode(first.pid, 3 + 0);
    const listenFd = (pid: number) =>
      readdirSync(`/proc/${pid}/fd`)
        .map(Number)
        .find((fd) => {
          try {
            return socketInode(pid, fd) === inode;
          } catch {
            return false;
          }
        });
    expect(listenFd(first.pid)).toBeDefined();
    const fdsAtStart = fdsOf(first.pid);
    const load = startClientLoad(first.url, { connections: 6 });
    const close = startClientLoad(first.url, { connections: 2, close: true });
    for (const release of ['go1', 'go2', 'go1', 'v1']) {
      const deployed = await run(['deploy', `releases/${release}`]);
      expect(deployed.code, deployed.stderr).toBe(0);
      const serving = readPid(root.path('prefork.pid')) as number;
      expect(listenFd(serving), `master ${serving} holds the same listen socket`).toBeDefined();
      expect(await releaseAnswering(first.port)).toBe(release);
    }
    const serving = readPid(root.path('prefork.pid')) as number;
    expect(fdsOf(serving)).toBe(fdsAtStart);
    for (const result of [await load.stop(), await close.stop()]) {
      expect(result.failed, JSON.stringify(result)).toBe(0);
      for (const release of ['v1', 'go1', 'go2'])
        expect(result.byRelease[release]).toBeGreaterThan(0);
    }
  });

  it('exec workers\u2019 output is the master\u2019s log, tagged with pid and release; USR1 reopens it', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    const logFile = root.path('prefork.log');
    const master = await startOn('go1', { workers: 1, args: ['--log-file', logFile] });
    const lines = (file: string) =>
      existsSync(file)
        ? readFileSync(file, 'utf8')
            .split('\n')
            .filter((l) => l.startsWith('{'))
            .map((l) => JSON.parse(l) as Record<string, unknown>)
        : [];
    const [first] = await readyWorkers(root.dir, master.pid, 'go1', 1);
    const served = (file: string, pid: number) =>
      lines(file).find((l) => l.worker === pid && l.msg === 'go1 serving on 1 socket(s)');
    await waitFor('the first worker’s line', () => served(logFile, first as number));
    expect(served(logFile, first as number)).toMatchObject({ release: 'go1', stream: 'stderr' });

    renameSync(logFile, `${logFile}.1`);
    process.kill(master.pid, 'SIGUSR1');
    await waitFor('the reopened log', () =>
      lines(logFile).some((l) => l.msg === 'reopened log file'),
    );
    expect(alive(first as number)).toBe(true); // USR1 is not passed on to the program
    process.kill(master.pid, 'SIGTTIN');
    const workers = await readyWorkers(root.dir, master.pid, 'go1', 2);
    const second = workers.find((w) => w !== first) as number;
    await waitFor('the new worker’s line in the new file', () => served(logFile, second));
    expect(served(`${logFile}.1`, second)).toBeUndefined();

    // After a HUP onto go2, what the go1 workers say while they drain is still tagged go1.
    addExecRelease(root, 'go2', 'go');
    switchCurrent(root, 'go2');
    process.kill(master.pid, 'SIGHUP');
    const drained = await waitFor('the old workers’ last lines', () => {
      const found = lines(logFile).filter((l) => l.msg === 'go1 drained');
      return found.length === 2 ? found : undefined;
    });
    for (const line of drained) expect(line.release).toBe('go1');
  });

  it('the argv reaches the program verbatim, in a release whose path has spaces and $(): no shell interprets it', async () => {
    root = makeAppRoot();
    const name = 'go $(touch PWNED) a b';
    const args = ['$(touch PWNED2)', '; touch PWNED3', '`id`', 'two words', '"quoted"'];
    addExecRelease(root, name, 'go', { command: ['./server', ...args] });
    const master = await startOn(name, { workers: 1 });
    const [worker] = await readyWorkers(root.dir, master.pid, name, 1);
    const argv = readFileSync(`/proc/${worker}/cmdline`, 'utf8').split('\0').slice(0, -1);
    expect(argv).toEqual([root.path('releases', name, 'server'), ...args]);
    expect(await releaseAnswering(master.port)).toBe(name);
    for (const dir of [root.dir, root.path('releases', name)]) {
      expect(readdirSync(dir).filter((f) => f.startsWith('PWNED'))).toEqual([]);
    }
  });

  it('each worker has its own notify socket, removed when it exits', async () => {
    root = makeAppRoot();
    addExecRelease(root, 'go1', 'go');
    const master = await startOn('go1', { workers: 2 });
    const workers = await readyWorkers(root.dir, master.pid, 'go1', 2);
    const notifyOf = (pid: number) =>
      /(?:^|\0)NOTIFY_SOCKET=([^\0]*)/.exec(
        readFileSync(`/proc/${pid}/environ`, 'utf8'),
      )?.[1] as string;
    const paths = workers.map(notifyOf);
    expect(new Set(paths).size).toBe(2);
    for (const path of paths) expect(existsSync(path)).toBe(true);
    process.kill(master.pid, 'SIGTTOU');
    await waitFor(
      'one worker',
      async () => (await masterStatus(root.dir, master.pid))?.workers.length === 1,
    );
    const [left] = (await masterStatus(root.dir, master.pid))?.workers ?? [];
    const gone = paths[workers.indexOf(workers.find((w) => w !== left?.pid) as number)] as string;
    await waitFor('its socket removed', () => !existsSync(gone));
    process.kill(master.pid, 'SIGQUIT');
    await master.proc.exited;
    expect(readdirSync(root.path('.prefork')).filter((f) => f.startsWith('notify-'))).toEqual([]);
  });
});
