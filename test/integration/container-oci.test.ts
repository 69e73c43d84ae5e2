import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN, REPO } from '../helpers/app-root.js';
import { startClientLoad } from '../helpers/load.js';
import { freePort } from '../helpers/ports.js';
import { killAll, PreforkProcess, runPrefork } from '../helpers/processes.js';

// prefork as the entrypoint of a real OCI container: crun (Debian's), a bundle whose root
// filesystem is this machine's /usr and /etc, read-only, its own PID, mount, IPC and UTS
// namespaces (the host's network, for the load on loopback). `crun run`, `crun exec` and
// `crun kill` are what `docker run`, `docker exec` and `docker stop` call underneath.

let root: AppRoot | undefined;
let bundle: string | undefined;
const containers: string[] = [];

/**
 * crun, as the host machine allows it: on a host whose cgroups are mounted in hybrid mode (v1
 * controllers and an empty v2 hierarchy at /sys/fs/cgroup/unified, as on these test machines),
 * crun refuses to start; in a mount namespace of its own without the v2 mount it takes the v1
 * layout. No cgroup is made for the container (`--cgroup-manager=disabled`): its limits are not
 * what is tested.
 */
function crunArgs(args: string[]): string[] {
  const script =
    'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec crun --cgroup-manager=disabled "$@"';
  return ['-m', 'sh', '-c', script, 'crun', ...args];
}

function crun(args: string[]): string {
  return execFileSync('unshare', crunArgs(args), { encoding: 'utf8' });
}

afterEach(() => {
  for (const id of containers.splice(0)) {
    try {
      crun(['delete', '--force', id]);
    } catch {
      // never created, or gone
    }
  }
  killAll();
  root?.remove();
  if (bundle) rmSync(bundle, { recursive: true, force: true });
});

/**
 * An OCI bundle running `prefork start ARGS` as the container's process: this machine's /usr
 * and /etc, this checkout (prefork and its node_modules) and the Node running the tests, all
 * read-only at their own paths; the app root read-write at its own path.
 */
function makeBundle(app: string, args: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-oci-'));
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  for (const link of ['bin', 'lib', 'lib64', 'sbin'])
    symlinkSync(`usr/${link}`, join(rootfs, link));
  execFileSync('crun', ['spec'], { cwd: dir });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const node = realpathSync(process.execPath);
  const bind = (path: string, rw = false) => ({
    destination: path,
    type: 'bind',
    source: path,
    options: ['rbind', rw ? 'rw' : 'ro'],
  });
  const binds = [bind('/usr'), bind('/etc'), bind(REPO), bind(app, true)];
  if (!node.startsWith('/usr/')) binds.push(bind(dirname(node)));
  config.process.terminal = false;
  config.process.args = [node, PREFORK_BIN, 'start', ...args];
  config.process.cwd = app;
  config.linux.namespaces = config.linux.namespaces.filter(
    (ns: { type: string }) => ns.type !== 'network',
  );
  // /tmp first: the binds below may lie in the host's /tmp (a checkout in mktemp -d, the app root).
  config.mounts = [
    ...config.mounts.filter((m: { destination: string }) => m.destination !== '/sys/fs/cgroup'),
    {
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'mode=1777'],
    },
    ...binds,
  ];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 1));
  return dir;
}

describe('prefork in a real OCI container (crun)', () => {
  it('crun run, a deploy by crun exec under load, crun kill TERM: 0 failed, the container lives through the deploy and stops gracefully with status 0', async () => {
    if (!existsSync('/usr/bin/crun'))
      throw new Error('crun is missing: run "bash test/provision.sh"');
    root = makeAppRoot();
    const port = await freePort();
    bundle = makeBundle(root.dir, [
      'v1',
      '--root',
      root.dir,
      '--bind',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
    ]);
    const id = `prefork-test-${process.pid}-${Date.now()}`;
    containers.push(id);
    const container = new PreforkProcess([], {
      wrapper: ['unshare', ...crunArgs(['run', '--bundle', bundle, id])],
      wrapperStartsPrefork: true,
    });
    const ready = await container.waitForLog(/^init: master \d+ is ready$/, 30_000);
    expect(ready.pid).toBe(1);

    const load = startClientLoad(`http://127.0.0.1:${port}/`, {
      connections: 16,
      durationSec: 120,
      pauseMs: 5,
    });
    const deployed = await runPrefork(
      ['deploy', 'v2', '--root', root.dir, '--verify-window', '1'],
      {
        wrapper: ['unshare', ...crunArgs(['exec', id])],
      },
    );
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    expect(crun(['state', id])).toMatch(/"status": "running"/);
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result.firstErrors)).toBe(0);
    expect(result.byRelease.v2).toBeGreaterThan(0);

    crun(['kill', id, 'TERM']);
    const { code } = await container.exited;
    expect(code, container.stdout.slice(-2000)).toBe(0);
    expect(container.logs().some((l) => l.msg === 'handling signal: quit')).toBe(true);
    expect(container.logs().some((l) => l.msg === 'init: no master left, exiting (0)')).toBe(true);
  }, 180_000);
});
