import { existsSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import {
  alive,
  cmdline,
  killAll,
  PreforkProcess,
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

/** Starts `prefork deploy --json` and resolves once it announces `step`. */
async function deployUntil(
  release: string,
  stepId: string,
  args: string[] = [],
): Promise<PreforkProcess> {
  const proc = new PreforkProcess(['deploy', release, '--root', root.dir, '--json', ...args]);
  await waitFor(`deploy to reach ${stepId}`, () =>
    proc.stdout.split('\n').some((l) => l.includes(`"step":"${stepId}","status":"start"`)),
  );
  return proc;
}

function expectClean(release: string, pid: number): void {
  expect(readPid(root.path('prefork.pid'))).toBe(pid);
  expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
  expect(cmdline(pid)).toBe(`prefork: master [${release}]`);
  expect(readlinkSync(root.path('current'))).toBe(`releases/${release}`);
}

describe('deploy faults', () => {
  it('two deploys at once: the second exits 4, never interleaved', async () => {
    root = makeAppRoot();
    await startMaster(root.dir, ['releases/v1']);
    const first = await deployUntil('releases/v2', 'wait-ready', ['--verify-window', '1']);
    const second = await runPrefork(['deploy', 'releases/v1', '--root', root.dir]);
    expect(second.code).toBe(4);
    expect(second.stderr).toMatch(/another deploy or rollback holds the lock/);
    expect((await first.exited).code).toBe(0);
    const pid = readPid(root.path('prefork.pid')) as number;
    track(pid);
    expectClean('v2', pid);
  });

  it('Ctrl-C during a deploy rolls back cleanly (exit 1)', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const load = startLoad(master.url, { connections: 8, durationSec: 120 });
    const deploy = await deployUntil('releases/v2', 'verify-window', ['--verify-window', '10']);
    deploy.child.kill('SIGINT');
    const { code } = await deploy.exited;
    expect(code).toBe(1);
    expect(deploy.stderr).toMatch(
      /failed at verify-window: interrupted by SIGINT.*Rolled back: v1 serves again/,
    );
    expectClean('v1', master.pid);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
  });

  it('rollback with nothing to roll back to says so (exit 2)', async () => {
    root = makeAppRoot();
    await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    const result = await runPrefork(['rollback', '--root', root.dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/nothing to roll back to/);
  });

  it('a manual upgrade left half-done is undone by rollback', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const { symlinkSync, renameSync } = await import('node:fs');
    symlinkSync('releases/v2', root.path('current.new'));
    renameSync(root.path('current.new'), root.path('current'));
    process.kill(master.pid, 'SIGUSR2');
    const newPid = await waitFor('the new master', () => {
      const p = readPid(root.path('prefork.pid'));
      return p !== undefined && p !== master.pid && p;
    });
    track(newPid);
    const oldWorkers = master.workers();
    process.kill(master.pid, 'SIGWINCH');
    // The state after WINCH, for certain: the old master's workers are gone.
    await waitFor('the old workers to exit', () => oldWorkers.every((pid) => !alive(pid)));
    expect(master.workers()).toEqual([]);
    const rolled = await runPrefork(['rollback', '--root', root.dir]);
    expect(rolled.code, rolled.stderr).toBe(0);
    expectClean('v1', master.pid);
    expect(alive(newPid)).toBe(false);
    await waitFor('2 workers back', () => master.workers().length === 2);
  });
});
