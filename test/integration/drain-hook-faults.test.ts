import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

/** Long enough that a deploy which sits it out is told apart from one that does not. */
const GRACEFUL_TIMEOUT_S = 60;
/** How long the blocking hook holds its worker's event loop. */
const BLOCK_MS = 3000;

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** Drain hooks that fail each way an app's can: what each does, and the log line it leaves. */
const HOOKS: { name: string; code: string; logged: string | undefined }[] = [
  {
    name: 'throws',
    code: `module.exports.drain = () => { throw new Error('the hook exploded'); };`,
    logged: 'the hook exploded',
  },
  {
    name: 'rejects',
    code: `module.exports.drain = async () => { throw new Error('the hook rejected'); };`,
    logged: 'the hook rejected',
  },
  // Never settles: nothing waits for it, so nothing waits on it.
  { name: 'hangs', code: 'module.exports.drain = () => new Promise(() => {});', logged: undefined },
  // Holds its worker's loop: requests in flight there finish after it, late but answered.
  {
    name: 'blocks',
    code: `module.exports.drain = () => { const until = Date.now() + ${BLOCK_MS}; while (Date.now() < until); };`,
    logged: undefined,
  },
];

describe('a release whose drain hook fails', () => {
  it.each(HOOKS)(
    '$name: the deploy finishes without sitting out the graceful timeout, no request fails',
    async ({ name, code, logged }) => {
      root = makeAppRoot();
      const files = listenerRelease(`hook-${name}`);
      root.addRelease(`hook-${name}`, { ...files, 'index.js': `${files['index.js']}\n${code}\n` });
      root.addRelease('next', listenerRelease('next'));
      const master = await startMaster(root.dir, [
        `releases/hook-${name}`,
        '--graceful-timeout',
        String(GRACEFUL_TIMEOUT_S),
      ]);
      const load = startLoad(master.url, { connections: 8, durationSec: 60 });
      await waitFor('traffic', () => load.count() > 200);
      const started = Date.now();
      const deployed = await runPrefork([
        'deploy',
        'releases/next',
        '--root',
        root.dir,
        '--verify-window',
        '1',
      ]);
      const took = Date.now() - started;
      expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
      track(readPid(root.path('prefork.pid')));
      expect(took, deployed.stdout).toBeLessThan((GRACEFUL_TIMEOUT_S * 1000) / 2);
      if (name === 'blocks') expect(took).toBeGreaterThan(BLOCK_MS);
      const result = await load.stop();
      expect(result.failed, JSON.stringify(result)).toBe(0);
      // The old workers said what failed (their log lines reach the old master's output).
      if (logged !== undefined) {
        await master.proc.waitForLog(/the app drain\(\) hook failed/);
        expect(master.proc.stdout).toContain(logged);
      }
      await master.proc.exited;
    },
    120_000,
  );
});
