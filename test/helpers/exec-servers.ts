import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppRoot, REPO } from './app-root.js';
import { portOf } from './master.js';
import { PreforkProcess, readPid, runPrefork, waitFor } from './processes.js';

/** The foreign servers exec releases are tested with: the examples in `docs/examples/`. */
export type ServerLanguage = 'go' | 'python';

let goBuild: { dir: string; binary: string } | undefined;

/**
 * Builds `docs/examples/go` with the machine's Go (Debian's golang-go, which `.ci/run`
 * installs), once per test file. Returns the binary.
 */
export function goServerBinary(): string {
  if (goBuild === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'prefork-go-'));
    const binary = join(dir, 'server');
    try {
      execFileSync('go', ['build', '-o', binary, '.'], {
        cwd: join(REPO, 'docs/examples/go'),
        // Everything Go writes goes in the build's own directory, whatever HOME is.
        env: {
          ...process.env,
          GOFLAGS: '-buildvcs=false',
          GOCACHE: join(dir, 'cache'),
          GOPATH: join(dir, 'gopath'),
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (error) {
      throw new Error(
        `cannot build docs/examples/go (${(error as Error).message}): the exec-release tests need Go (Debian: apt-get install golang-go; .ci/run installs it)`,
        { cause: error },
      );
    }
    goBuild = { dir, binary };
  }
  return goBuild.binary;
}

/** Removes the Go build (call in `afterAll`). */
export function removeGoBuild(): void {
  if (goBuild !== undefined) rmSync(goBuild.dir, { recursive: true, force: true });
  goBuild = undefined;
}

/**
 * Adds `releases/<name>` holding the example server of `language` and a `prefork.json` running
 * it, with `extra` keys merged in. Each answers `{"release": <its directory name>, "pid": ...}`.
 */
export function addExecRelease(
  root: AppRoot,
  name: string,
  language: ServerLanguage,
  extra: Record<string, unknown> = {},
): string {
  const command = language === 'go' ? ['./server'] : ['./server.py'];
  const dir = root.addRelease(name, {
    'prefork.json': { command, version: '1.0.0', ...extra },
  });
  if (language === 'go') copyFileSync(goServerBinary(), join(dir, 'server'));
  else copyFileSync(join(REPO, 'docs/examples/python/server.py'), join(dir, 'server.py'));
  chmodSync(join(dir, command[0] as string), 0o755);
  return dir;
}

/** The Debian-packaged servers with an example release in `docs/examples/<server>`. */
export type PackagedServer = 'gunicorn' | 'uvicorn' | 'puma';

/**
 * Adds `releases/<name>` holding `docs/examples/<server>` as it is, its `prefork.json` with
 * `extra` merged in (an `env` is merged key by key).
 */
export function addPackagedRelease(
  root: AppRoot,
  name: string,
  server: PackagedServer,
  extra: Record<string, unknown> = {},
): string {
  const example = join(REPO, 'docs/examples', server);
  const files: Record<string, string | object> = {};
  for (const file of readdirSync(example)) files[file] = readFileSync(join(example, file), 'utf8');
  const config = JSON.parse(files['prefork.json'] as string) as Record<string, unknown>;
  const env = { ...(config.env as object | undefined), ...(extra.env as object | undefined) };
  files['prefork.json'] = { ...config, ...extra, ...(Object.keys(env).length > 0 ? { env } : {}) };
  return root.addRelease(name, files);
}

/** A worker as `prefork status --json` shows it. */
export interface StatusWorker {
  pid: number;
  release: string;
  kind: string;
  state: string;
  rss: number;
  age: number;
  status?: string;
}

/** The master with `pid` as `prefork status --json` shows it, or undefined when it is not listed. */
export async function masterStatus(
  root: string,
  pid: number,
): Promise<{ workers: StatusWorker[]; binds: string[]; release: string } | undefined> {
  const { stdout } = await runPrefork(['status', '--json', '--root', root]);
  const status = JSON.parse(stdout) as {
    pidfiles: {
      master?: { pid: number; workers: StatusWorker[]; binds: string[]; release: string };
    }[];
  };
  return status.pidfiles.find((p) => p.master?.pid === pid)?.master;
}

/** Waits until the master with `pid` has `count` ready workers of `release`; returns their pids. */
export async function readyWorkers(
  root: string,
  pid: number,
  release: string,
  count: number,
  timeoutMs = 20_000,
): Promise<number[]> {
  return waitFor(
    `${count} ready workers of ${release} under master ${pid}`,
    async () => {
      const workers = (await masterStatus(root, pid))?.workers.filter(
        (w) => w.release === release && w.state === 'ready',
      );
      return workers?.length === count ? workers.map((w) => w.pid) : undefined;
    },
    timeoutMs,
  );
}

/** A master started with `prefork start` on an exec (or any) release, ready with `workers`. */
export interface ExecMaster {
  proc: PreforkProcess;
  pid: number;
  port: number;
  url: string;
}

/** `prefork start releases/<release>` in `root` on a free loopback port, once its workers are ready. */
export async function startExecMaster(
  root: AppRoot,
  release: string,
  options: { workers?: number; args?: string[] } = {},
): Promise<ExecMaster> {
  const workers = options.workers ?? 2;
  const proc = new PreforkProcess(
    [
      'start',
      `releases/${release}`,
      '--root',
      root.dir,
      '--bind',
      '127.0.0.1:0',
      '--workers',
      String(workers),
      ...(options.args ?? []),
    ],
    { cwd: root.dir },
  );
  const pidfile = root.path('prefork.pid');
  await waitFor(
    'the master to write its pidfile',
    () => {
      if (proc.child.exitCode !== null)
        throw new Error(`prefork start exited: ${proc.stderr}${proc.stdout.slice(-2000)}`);
      return readPid(pidfile) === proc.pid;
    },
    30_000,
  );
  const port = await portOf(root.dir, proc.pid);
  await readyWorkers(root.dir, proc.pid, release, workers, 30_000);
  return { proc, pid: proc.pid, port, url: `http://127.0.0.1:${port}` };
}
