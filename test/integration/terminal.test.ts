import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN } from '../helpers/app-root.js';
import { startMaster } from '../helpers/master.js';
import {
  childrenOf,
  cmdline,
  killAll,
  readPid,
  runPrefork,
  sessionOf,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** Runs `prefork start` in the foreground of a pseudo-terminal (util-linux `script`). */
function startOnTerminal(args: string[]) {
  const command = [
    process.execPath,
    PREFORK_BIN,
    'start',
    '--root',
    root.dir,
    '--bind',
    '127.0.0.1:0',
    '-w',
    '1',
    ...args,
  ]
    .map((a) => `'${a.replace(/'/g, "'\\''")}'`)
    .join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child.pid);
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
  });
  return { child, output: () => out };
}

async function masterPid(): Promise<number> {
  const pid = await waitFor('the pidfile', () => readPid(root.path('prefork.pid')));
  track(pid);
  return pid;
}

describe('in the foreground of a terminal', () => {
  it('logs human-readable lines and ignores WINCH (a window resize)', async () => {
    root = makeAppRoot();
    const run = startOnTerminal(['releases/v1']);
    const pid = await masterPid();
    await waitFor('a worker', () =>
      childrenOf(pid).some((c) => cmdline(c).startsWith('prefork: worker')),
    );
    process.kill(pid, 'SIGWINCH');
    await waitFor('the WINCH notice', () =>
      /WINCH ignored: the master runs in the foreground of a terminal/.test(run.output()),
    );
    expect(run.output()).toMatch(/INFO.*booting worker with pid/);
    expect(run.output()).not.toMatch(/^\{"level"/m);
    expect(childrenOf(pid).filter((c) => cmdline(c).startsWith('prefork: worker'))).toHaveLength(1);
    process.kill(pid, 'SIGTERM');
  });

  it('honours WINCH there with --force-winch', async () => {
    root = makeAppRoot();
    startOnTerminal(['--force-winch', 'releases/v1']);
    const pid = await masterPid();
    await waitFor('a worker', () =>
      childrenOf(pid).some((c) => cmdline(c).startsWith('prefork: worker')),
    );
    process.kill(pid, 'SIGWINCH');
    await waitFor(
      'no workers',
      () => !childrenOf(pid).some((c) => cmdline(c).startsWith('prefork: worker')),
    );
    process.kill(pid, 'SIGTERM');
  });
});

describe('USR2 from a master in the foreground of a terminal', () => {
  it('starts the new master in a session of its own, out of reach of the terminal’s WINCH', async () => {
    root = makeAppRoot();
    startOnTerminal(['releases/v1']);
    const oldPid = await masterPid();
    await waitFor('a worker', () =>
      childrenOf(oldPid).some((c) => cmdline(c).startsWith('prefork: worker')),
    );
    process.kill(oldPid, 'SIGUSR2');
    const newPid = await waitFor('the new master', () => {
      const pid = readPid(root.path('prefork.pid'));
      return pid !== undefined && pid !== oldPid ? pid : undefined;
    });
    track(newPid);
    // Its own session (it leads it), not the terminal's, where a window resize sends WINCH.
    expect(sessionOf(newPid)).toBe(newPid);
    expect(sessionOf(newPid)).not.toBe(sessionOf(oldPid));
    process.kill(newPid, 'SIGTERM');
    process.kill(oldPid, 'SIGTERM');
  });
});

describe('prefork releases', () => {
  it('lists releases in semver order, marks current, and shows the deploy history', async () => {
    root = makeAppRoot();
    root.addRelease('v10', { 'package.json': { version: '10.0.0' }, 'index.js': '' });
    root.addRelease('broken', { 'index.js': '' });
    await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    expect(
      (await runPrefork(['deploy', 'releases/v2', '--root', root.dir, '--verify-window', '0']))
        .code,
    ).toBe(0);
    track(readPid(root.path('prefork.pid')));
    const text = await runPrefork(['releases', '--root', root.dir]);
    const lines = text.stdout.trim().split('\n');
    // A line's release is its first column (after the current mark), never a match anywhere in
    // it: the broken release's line names its path, and the random temp directory can hold "v2".
    const nameOf = (l: string) => l.replace(/^\*/, '').trim().split(/\s+/)[0];
    const lineOf = (name: string) => lines.find((l) => nameOf(l) === name);
    expect(lines.map(nameOf)).toEqual(['broken', 'v1', 'v2', 'v10']);
    expect(lineOf('v2')).toMatch(/^\* v2\s+2\.0\.0\s+current, deployed \d{4}-/);
    expect(lineOf('broken')).toMatch(/has no package\.json/);
    const json = JSON.parse((await runPrefork(['releases', '--json', '--root', root.dir])).stdout);
    expect(json.history.map((h: { release: string }) => h.release)).toEqual(['v2']);
    expect(json.releases.find((r: { name: string }) => r.name === 'v2').current).toBe(true);
  });
});
