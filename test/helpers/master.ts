import http from 'node:http';
import { join } from 'node:path';
import {
  alive,
  childrenOf,
  cmdline,
  PreforkProcess,
  readPid,
  runPrefork,
  track,
  waitFor,
} from './processes.js';

/** A master started with `prefork start` in a test app root. */
export interface RunningMaster {
  proc: PreforkProcess;
  pid: number;
  port: number;
  url: string;
  pidfile: string;
  /** Live worker pids (children of the master titled as workers). */
  workers(): number[];
}

/**
 * Starts `prefork start <args>` in `root` on a free port of a loopback address (`host`,
 * 127.0.0.1 by default) and waits until it is ready.
 */
export async function startMaster(
  root: string,
  args: string[] = [],
  options: { env?: NodeJS.ProcessEnv; workers?: number; host?: string } = {},
): Promise<RunningMaster> {
  const workers = options.workers ?? 2;
  const host = options.host ?? '127.0.0.1';
  const proc = new PreforkProcess(
    ['start', '--root', root, '--bind', `${host}:0`, '--workers', String(workers), ...args],
    { cwd: root, env: options.env },
  );
  const pidfile = join(root, 'prefork.pid');
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  await waitFor(
    'the master to write its pidfile',
    () => {
      if (exited)
        throw new Error(`prefork start exited early: ${proc.stderr}${proc.stdout.slice(-2000)}`);
      return readPid(pidfile) === proc.pid;
    },
    30_000,
  );
  const port = await portOf(root, proc.pid);
  const master = createRunningMaster(proc, proc.pid, port, pidfile, host);
  await waitFor('all workers', () => master.workers().length === workers);
  return master;
}

/** Describes a master by pid (also one started by USR2, which the test did not spawn). */
export function createRunningMaster(
  proc: PreforkProcess,
  pid: number,
  port: number,
  pidfile: string,
  host = '127.0.0.1',
): RunningMaster {
  track(pid);
  return {
    proc,
    pid,
    port,
    url: `http://${host}:${port}`,
    pidfile,
    workers: () => {
      const pids = childrenOf(pid).filter(
        (c) => alive(c) && cmdline(c).startsWith('prefork: worker'),
      );
      for (const w of pids) track(w);
      return pids;
    },
  };
}

/** GETs `path` and parses the JSON body. */
export function getJson(
  port: number,
  path = '/',
  agent?: http.Agent,
): Promise<{ status: number; body: Record<string, unknown>; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), headers: res.headers });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: { text }, headers: res.headers });
        }
      });
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`GET ${path} timed out`)));
  });
}

/** Pid from a pidfile, waiting for it to name `expected` (or any pid). */
export function waitForPidfile(path: string, expected?: number): Promise<number> {
  return waitFor(`${path} to hold ${expected ?? 'a pid'}`, () => {
    const pid = readPid(path);
    return pid !== undefined && (expected === undefined || pid === expected) ? pid : undefined;
  });
}

/** The TCP port the master with `pid` listens on (from `prefork status --json`). */
export async function portOf(root: string, pid: number): Promise<number> {
  const { stdout } = await runPrefork(['status', '--json', '--root', root]);
  const status = JSON.parse(stdout) as {
    pidfiles: { master?: { pid: number; binds: string[] } }[];
  };
  const master = status.pidfiles.find((p) => p.master?.pid === pid)?.master;
  const tcp = master?.binds.find((b) => !b.startsWith('unix:'));
  if (tcp === undefined) throw new Error(`master ${pid} reports no TCP bind: ${stdout}`);
  return Number(/:(\d+)$/.exec(tcp)?.[1]);
}

/** Sends USR2 to `old` and waits for the new master it starts to be ready. */
export async function upgrade(old: RunningMaster): Promise<RunningMaster> {
  const startedBy = () =>
    old.proc.logs().filter((l) => l.pid === old.pid && /^upgrade: started new master/.test(l.msg));
  const started = startedBy().length;
  process.kill(old.pid, 'SIGUSR2');
  const line = await waitFor('the new master to start', () => startedBy()[started]);
  const pid = Number(line.newMaster);
  track(pid);
  await waitFor(`new master ${pid} to be ready`, () =>
    old.proc.logs().some((l) => l.pid === old.pid && l.msg === `new master ${pid} is ready`),
  );
  return createRunningMaster(old.proc, pid, old.port, old.pidfile);
}

/** Sends GETs on fresh connections until `done(releasesSeen)` holds; returns what answered. */
export async function sample(
  port: number,
  done: (seen: Map<string, number>) => boolean,
  max = 400,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < max && !done(seen); i += 1) {
    const { body } = await getJson(port, '/', new http.Agent({ keepAlive: false }));
    const release = String(body.release);
    seen.set(release, (seen.get(release) ?? 0) + 1);
  }
  return seen;
}

/** GETs `/` over a Unix socket and parses the JSON body. */
export function getJsonUnix(socketPath: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/', agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve(JSON.parse(text)));
      })
      .on('error', reject);
  });
}
