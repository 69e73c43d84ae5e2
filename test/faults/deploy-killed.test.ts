import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import {
  cmdline,
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
  killAll();
  root?.remove();
});

const STEPS = [
  'activate',
  'usr2',
  'wait-ready',
  'verify',
  'retire-old',
  'winch',
  'verify-window',
  'quit-old',
];

describe('faults: the deploy process SIGKILLed at every journaled step', () => {
  it.each(STEPS)(
    'killed at %s: status tells, rollback restores one clean master on v1, 0 failed',
    async (step) => {
      root = makeAppRoot();
      const master = await startMaster(root.dir, ['releases/v1']);
      const load = startLoad(master.url, { connections: 8, durationSec: 120 });
      const close = startLoad(master.url, { connections: 2, durationSec: 120, close: true });
      await waitFor('traffic', () => load.count() > 100);
      const deploy = new PreforkProcess([
        'deploy',
        'releases/v2',
        '--root',
        root.dir,
        '--json',
        '--verify-window',
        '3',
      ]);
      await waitFor(`the deploy at ${step}`, () =>
        deploy.stdout.includes(`"step":"${step}","status":"start"`),
      );
      deploy.child.kill('SIGKILL');
      await deploy.exited;
      const journal = JSON.parse(
        (await runPrefork(['status', '--json', '--root', root.dir])).stdout,
      ).deploy;
      track(journal.newPid);
      // The step it died in: the one it had announced, or one it reached before the kill landed.
      expect(STEPS.indexOf(journal.step)).toBeGreaterThanOrEqual(STEPS.indexOf(step));
      const status = await runPrefork(['status', '--root', root.dir]);
      expect(status.stdout).toMatch(
        new RegExp(
          `last deploy: v2 \\(2\\.0\\.0\\) from v1, .*step ${journal.step}, running — its process ${deploy.pid} is gone: run "prefork rollback"`,
        ),
      );

      const rolled = await runPrefork(['rollback', '--root', root.dir, '--verify-window', '0.5']);
      expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
      const pid = readPid(root.path('prefork.pid')) as number;
      track(pid);
      await waitFor('one master', () => mastersIn(root.dir).length === 1);
      expect(mastersIn(root.dir)).toEqual([pid]);
      expect(cmdline(pid)).toBe('prefork: master [v1]');
      expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
      expect(readlinkSync(root.path('current'))).toBe('releases/v1');
      // With all its workers: a kill during retire-old left the old master with fewer.
      const serving = JSON.parse(
        (await runPrefork(['status', '--json', '--root', root.dir])).stdout,
      ).pidfiles[0].master;
      expect(serving.desiredWorkers).toBe(2);
      const seen = load.count();
      await waitFor('traffic after', () => load.count() > seen + 100);
      for (const result of [await load.stop(), await close.stop()]) {
        expect(result.failed, JSON.stringify(result)).toBe(0);
      }
      // Killed once the old master was told to quit, rollback redeploys v1 (a deploy of its
      // own); before, it undoes the upgrade in flight, or, before USR2 took effect, says v2
      // never took over.
      const outcome = JSON.parse(readFileSync(root.path('.prefork/deploy.json'), 'utf8')).outcome;
      if (/rolled back to v1 \(1\.0\.0\): master \d+ serves/.test(rolled.stdout)) {
        expect(journal.step).toBe('quit-old');
        expect(outcome).toBe('done');
      } else {
        expect(rolled.stdout).toMatch(
          /(rolled back|the interrupted deploy of v2 never took over): v1 serves/,
        );
        expect(outcome).toBe('rolled-back');
      }
    },
  );
});
