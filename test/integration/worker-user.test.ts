import { chmodSync, existsSync, readFileSync, readlinkSync, renameSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN } from '../helpers/app-root.js';
import { addExecRelease, readyWorkers, removeGoBuild } from '../helpers/exec-servers.js';
import { type InstallCopy, installCopy } from '../helpers/install-copy.js';
import { createRunningMaster, getJson } from '../helpers/master.js';
import {
  killAll,
  mastersIn,
  PreforkProcess,
  readPid,
  runPrefork,
  runStart,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;
let install: InstallCopy | undefined;

afterAll(() => removeGoBuild());
afterEach(() => {
  killAll();
  root?.remove();
  install?.remove();
  install = undefined;
});

// Needs root, as CI and this project's machines run tests.
const asRoot = it.skipIf(process.getuid?.() !== 0);

/** `prefork start` from `bin` as root, workers as nobody:nogroup, on `port`. */
function startAsNobody(
  bin: string,
  port: number,
  extra: string[] = [],
  release = 'releases/v1',
): PreforkProcess {
  return new PreforkProcess(
    [
      'start',
      '--root',
      root.dir,
      '--bind',
      `127.0.0.1:${port}`,
      '-w',
      '2',
      '--user',
      'nobody',
      '--group',
      'nogroup',
      ...extra,
      release,
    ],
    { bin },
  );
}

describe('--user / --group', () => {
  asRoot(
    'a root master binds a privileged port and runs its workers as nobody:nogroup',
    async () => {
      // prefork from a copy every user can read: the clone itself may live in a private
      // directory (mktemp -d), which is the case the next test covers.
      install = installCopy(0o755);
      root = makeAppRoot();
      chmodSync(root.dir, 0o755);
      const port = await freePrivilegedPort();
      const logFile = root.path('app.log');
      const proc = startAsNobody(install.bin, port, ['--log-file', logFile]);
      await waitFor('the pidfile', () => readPid(root.path('prefork.pid')) === proc.pid, 30_000);
      const master = createRunningMaster(proc, proc.pid, port, root.path('prefork.pid'));
      await waitFor('2 workers', () => master.workers().length === 2);
      expect(uidOf(master.pid)).toBe(0);
      for (const worker of master.workers()) expect(uidOf(worker)).toBe(65534);
      expect((await getJson(port)).body.release).toBe('v1');
      renameSync(logFile, `${logFile}.1`);
      process.kill(master.pid, 'SIGUSR1');
      await waitFor('workers logging to the reopened file', () => {
        try {
          return (
            (readFileSync(logFile, 'utf8').match(/"role":"worker".*"reopened log file"/g) ?? [])
              .length === 2
          );
        } catch {
          return false;
        }
      });
    },
  );

  asRoot(
    'prefork installed where the workers’ user cannot read it: exit 2 naming the path, the directory that blocks it and the fix; nothing started',
    async () => {
      install = installCopy(0o700);
      root = makeAppRoot();
      chmodSync(root.dir, 0o755);
      const port = await freePrivilegedPort();
      const proc = startAsNobody(install.bin, port);
      const { code } = await proc.exited;
      expect(code).toBe(2);
      const worker = `${install.dir}/dist/worker/main.js`;
      expect(proc.stderr).toContain(
        `the workers' user (--user nobody --group nogroup) cannot read prefork's worker entry ${worker}: ${install.dir} is not searchable (EACCES): "chmod o+x ${install.dir}", or install prefork where that user can read it; nothing was started`,
      );
      expect(proc.stderr).not.toMatch(/at .*\.js:\d+/);
      expect(readPid(root.path('prefork.pid'))).toBeUndefined();
      expect(() => readlinkSync(root.path('current'))).toThrow();
      expect(mastersIn(root.dir)).toEqual([]);
    },
  );

  asRoot(
    'deploying a release the workers’ user cannot read: exit 2 before anything is signalled',
    async () => {
      install = installCopy(0o755);
      root = makeAppRoot();
      chmodSync(root.dir, 0o755);
      const port = await freePrivilegedPort();
      const proc = startAsNobody(install.bin, port);
      await waitFor('the pidfile', () => readPid(root.path('prefork.pid')) === proc.pid, 30_000);
      chmodSync(root.path('releases/v2'), 0o700);
      const result = await runPrefork(['deploy', 'releases/v2', '--root', root.dir], {
        bin: install.bin,
      });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(
        /the workers' user \(uid 65534, gid 65534\) cannot read release v2's entry .*releases\/v2\/server\.js: .*releases\/v2 is not searchable \(EACCES\): "chmod o\+x .*releases\/v2"/,
      );
      expect(proc.countLogs(/^handling signal/)).toBe(0);
      expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    },
  );

  it('refuses an unknown user before starting anything', async () => {
    root = makeAppRoot();
    const result = await runStart(root.dir, ['--user', 'no-such-user-here', 'releases/v1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--user no-such-user-here: no such user/);
  });

  asRoot(
    'an exec release (a Go server) as nobody:nogroup: notifies through a socket that user can reach, removed at exit',
    async () => {
      root = makeAppRoot();
      chmodSync(root.dir, 0o755);
      addExecRelease(root, 'go1', 'go');
      const port = await freePrivilegedPort();
      // prefork itself from the clone, which nobody may not read: an exec worker loads none of it.
      const proc = startAsNobody(PREFORK_BIN, port, [], 'releases/go1');
      await waitFor('the pidfile', () => readPid(root.path('prefork.pid')) === proc.pid, 30_000);
      const workers = await readyWorkers(root.dir, proc.pid, 'go1', 2);
      for (const worker of workers) expect(uidOf(worker)).toBe(65534);
      expect((await getJson(port)).body.release).toBe('go1');
      const notify = /(?:^|\0)NOTIFY_SOCKET=([^\0]*)/.exec(
        readFileSync(`/proc/${workers[0]}/environ`, 'utf8'),
      )?.[1] as string;
      const notifyDir = dirname(notify);
      expect(statSync(notifyDir).uid).toBe(65534);
      expect(statSync(notifyDir).mode & 0o777).toBe(0o700);
      process.kill(proc.pid, 'SIGQUIT');
      expect((await proc.exited).code).toBe(0);
      expect(existsSync(notifyDir)).toBe(false);
    },
  );
});

function uidOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'));
  return Number(line?.split(/\s+/)[1]);
}

async function freePrivilegedPort(): Promise<number> {
  for (let port = 1023; port > 900; port -= 1) {
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below 1024');
}
