import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { installExample } from '../helpers/examples.js';
import { startLoad } from '../helpers/load.js';
import { getJson, startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

const FRAMEWORKS = ['express', 'fastify', 'koa', 'hono'] as const;
const installed = mkdtempSync(join(tmpdir(), 'prefork-examples-'));
let root: AppRoot;

// The examples' node_modules are installed here, by the test setup, from the npm registry.
beforeAll(async () => {
  await Promise.all(FRAMEWORKS.map((name) => installExample(name, join(installed, name))));
}, 300_000);

afterEach(() => {
  killAll();
  root?.remove();
});

afterAll(() => rmSync(installed, { recursive: true, force: true }));

describe('framework examples (docs/examples)', () => {
  it.each(FRAMEWORKS)(
    '%s deploys and rolls back under load with 0 failed requests',
    async (name) => {
      root = makeAppRoot();
      cpSync(join(installed, name), root.path('releases', name), { recursive: true });
      const master = await startMaster(root.dir, ['releases/v1']);
      const loads = [
        startLoad(master.url, { connections: 8, durationSec: 120 }),
        startLoad(master.url, { connections: 4, durationSec: 120, close: true }),
      ];
      await waitFor('traffic', () => (loads[0]?.count() ?? 0) > 100);

      const deployed = await runPrefork([
        'deploy',
        `releases/${name}`,
        '--root',
        root.dir,
        '--health-path',
        '/health',
        '--verify-window',
        '1',
      ]);
      expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
      const pid = readPid(root.path('prefork.pid')) as number;
      track(pid);
      const answer = await getJson(master.port);
      expect(answer.body.framework).toBe(name);
      expect(answer.status).toBe(200);
      const seen = loads[0]?.count() ?? 0;
      await waitFor(
        'traffic on the framework',
        () => (loads[0]?.byRelease[name] ?? 0) > 100 && (loads[0]?.count() ?? 0) > seen,
      );

      const rolled = await runPrefork([
        'rollback',
        '--root',
        root.dir,
        '--health-path',
        '/health',
        '--verify-window',
        '1',
      ]);
      expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
      track(readPid(root.path('prefork.pid')));
      expect((await getJson(master.port)).body.release).toBe('v1');
      for (const load of loads) {
        const result = await load.stop();
        expect(result.failed, JSON.stringify(result)).toBe(0);
      }
    },
  );
});
