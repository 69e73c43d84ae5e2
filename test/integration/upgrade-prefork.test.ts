import { execFileSync } from 'node:child_process';
import {
  cpSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, REPO } from '../helpers/app-root.js';
import { type InstallCopy, installCopy } from '../helpers/install-copy.js';
import { startLoad } from '../helpers/load.js';
import { createRunningMaster, portOf, type RunningMaster, upgrade } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import {
  alive,
  killAll,
  mastersIn,
  PreforkProcess,
  readPid,
  runPrefork,
  track,
  waitFor,
} from '../helpers/processes.js';

// Upgrading prefork itself the way nginx's USR2 upgrades nginx: the master re-execs the
// installed `bin/prefork`, so new files take effect on USR2. The handover between the two
// masters carries a protocol version; a new master that cannot take over says why and exits,
// and the old one serves on.

let root: AppRoot;
let install: InstallCopy | undefined;

afterEach(() => {
  // A new master the test did not see start (a failed check leaves none, but be sure).
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
  install?.remove();
  install = undefined;
});

/** The first landed core (issue 1): the oldest prefork a user may still have running. */
const CORE_COMMIT = 'e359ac2eb1fa97aa4b254791f1366531b1c1e69c';
/**
 * The last commit before the handover carried a version (protocol 1): prefork as released with
 * exec releases (issue 12).
 */
const PROTOCOL_1_COMMIT = 'b0412159d410617217627ad73c839dad855d054c';
/**
 * The last commit of handover protocol 2 (sockets as comma-joined PREFORK_FDS/PREFORK_FD_NAMES,
 * before PREFORK_SOCKETS), and of the control socket before its replies were validated.
 */
const PROTOCOL_2_COMMIT = 'de73a0201f180c8ffec5ecdacfbce29eefca0281';

/** Whether this clone has that commit (a shallow clone does not). */
function hasCommit(commit: string): boolean {
  try {
    execFileSync('git', ['-C', REPO, 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Fails loudly when this clone lacks `commit` (a shallow clone), never skips. */
function requireCommit(commit: string): void {
  if (!hasCommit(commit))
    throw new Error(
      `this clone lacks commit ${commit}: fetch the full history (git fetch --unshallow)`,
    );
}

/** "npm install prefork@next" while masters run: this checkout's files over the install's. */
function replaceInstall(copy: InstallCopy): void {
  for (const part of ['bin', 'dist', 'package.json']) {
    rmSync(join(copy.dir, part), { recursive: true, force: true });
    cpSync(join(REPO, part), join(copy.dir, part), { recursive: true });
  }
  setInstalledVersion(copy, '9.9.9-next');
}

/** Each earlier commit's build, made once per file run (a tsc compile costs seconds). */
const builds = new Map<string, string>();

afterAll(() => {
  for (const dir of builds.values()) rmSync(dir, { recursive: true, force: true });
});

/**
 * prefork as it was at `commit`, built and laid out like an install: its files from git, this
 * checkout's node_modules (the same dependencies, and more), compiled with its own tsconfig.
 * Each call gets its own copy of the commit's one build (tests replace an install's files).
 */
function earlierInstall(commit: string): InstallCopy {
  let build = builds.get(commit);
  if (build === undefined) {
    build = mkdtempSync(join(tmpdir(), 'prefork-earlier-build-'));
    const tar = execFileSync('git', ['-C', REPO, 'archive', '--format=tar', commit], {
      maxBuffer: 64 * 1024 * 1024,
    });
    execFileSync('tar', ['-x', '-C', build], { input: tar });
    symlinkSync(join(REPO, 'node_modules'), join(build, 'node_modules'));
    execFileSync(
      process.execPath,
      [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'],
      { cwd: build },
    );
    builds.set(commit, build);
  }
  const dir = mkdtempSync(join(tmpdir(), 'prefork-earlier-'));
  cpSync(build, dir, { recursive: true, verbatimSymlinks: true });
  return {
    dir,
    bin: join(dir, 'bin', 'prefork'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * `prefork start` of the installed copy, on a free port, ready with 2 workers. With `port`,
 * on that port, not read back from the master's status (which this prefork may not read).
 */
async function startInstalled(copy: InstallCopy, port?: number): Promise<RunningMaster> {
  const bind = `127.0.0.1:${port ?? 0}`;
  const proc = new PreforkProcess(
    ['start', 'releases/v1', '--root', root.dir, '--bind', bind, '--workers', '2'],
    { cwd: root.dir, bin: copy.bin },
  );
  const pidfile = root.path('prefork.pid');
  await waitFor('the master to write its pidfile', () => {
    if (proc.child.exitCode !== null) throw new Error(`start exited: ${proc.stderr}`);
    return readPid(pidfile) === proc.pid;
  });
  const master = createRunningMaster(
    proc,
    proc.pid,
    port ?? (await portOf(root.dir, proc.pid)),
    pidfile,
  );
  await waitFor('its workers', () => master.workers().length === 2);
  return master;
}

/** Traffic on the service: keep-alive and `Connection: close` loads, stopped with no failure. */
interface Traffic {
  count(): number;
  /** Stops both loads and expects 0 failed requests. */
  expectNoFailures(): Promise<void>;
}

/** Starts `copy` on releases/v1 in the test's root, under load; resolves once traffic flows. */
async function serveUnderLoad(
  copy: InstallCopy,
  port?: number,
): Promise<{ old: RunningMaster; traffic: Traffic }> {
  install = copy;
  const old = await startInstalled(copy, port);
  const loads = [
    startLoad(old.url, { connections: 8, durationSec: 90 }),
    startLoad(old.url, { connections: 4, durationSec: 90, close: true }),
  ];
  const traffic: Traffic = {
    count: () => loads[0]?.count() ?? 0,
    async expectNoFailures() {
      for (const result of await Promise.all(loads.map((l) => l.stop()))) {
        expect(result.failed, JSON.stringify(result)).toBe(0);
      }
    },
  };
  await waitFor('traffic', () => traffic.count() > 200);
  return { old, traffic };
}

/** The manual upgrade: USR2, WINCH old once the new master is ready, QUIT old; the new master. */
async function upgradeByHand(old: RunningMaster): Promise<RunningMaster> {
  const next = await upgrade(old);
  process.kill(old.pid, 'SIGWINCH');
  await waitFor('the old workers to drain', () => old.workers().length === 0);
  process.kill(old.pid, 'SIGQUIT');
  await waitFor('the old master to exit', () => !alive(old.pid));
  return next;
}

/** Sets the version in the installed copy's package.json, as installing another release would. */
function setInstalledVersion(copy: InstallCopy, version: string): void {
  const path = join(copy.dir, 'package.json');
  const pkg = JSON.parse(readFileSync(path, 'utf8')) as { version: string };
  writeFileSync(path, JSON.stringify({ ...pkg, version }, null, 2));
}

/** One master's `status --json` entry. */
async function statusOf(pid: number): Promise<Record<string, unknown> | undefined> {
  const { stdout } = await runPrefork(['status', '--json', '--root', root.dir]);
  const status = JSON.parse(stdout) as { pidfiles: { master?: Record<string, unknown> }[] };
  return status.pidfiles.find((p) => p.master?.pid === pid)?.master;
}

describe('upgrading prefork itself with USR2', () => {
  it('new files in the install take effect on USR2, WINCH, QUIT by hand: 0 failed, status shows the new version', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    const { old, traffic } = await serveUnderLoad(copy);
    expect(await statusOf(old.pid)).toMatchObject({
      preforkVersion: JSON.parse(readFileSync(join(copy.dir, 'package.json'), 'utf8')).version,
      node: { version: process.version, path: process.execPath },
    });
    setInstalledVersion(copy, '9.9.9-next');
    const next = await upgradeByHand(old);
    expect(old.proc.logs().find((l) => l.msg === `new master ${next.pid} is ready`)).toMatchObject({
      version: '9.9.9-next',
      protocol: 3,
    });
    const seen = traffic.count();
    await waitFor('traffic after', () => traffic.count() > seen + 200);
    await traffic.expectNoFailures();
    expect(await statusOf(next.pid)).toMatchObject({ preforkVersion: '9.9.9-next' });
    const { stdout } = await runPrefork(['status', '--root', root.dir]);
    expect(stdout).toContain(`prefork 9.9.9-next, node ${process.version} (${process.execPath})`);
  });

  it.each([
    ['1', PROTOCOL_1_COMMIT],
    ['2', PROTOCOL_2_COMMIT],
  ])(
    'from an earlier prefork (protocol %s, built from git): its files replaced by this one, USR2, WINCH, QUIT: 0 failed',
    async (protocol, commit) => {
      requireCommit(commit);
      root = makeAppRoot();
      const earlier = earlierInstall(commit);
      const { old, traffic } = await serveUnderLoad(earlier);
      // The protocol-1 prefork's status has no version fields.
      if (protocol === '1') expect(await statusOf(old.pid)).not.toHaveProperty('preforkVersion');
      replaceInstall(earlier);
      const next = await upgradeByHand(old);
      const seen = traffic.count();
      await waitFor('traffic after', () => traffic.count() > seen + 200);
      await traffic.expectNoFailures();
      expect(await statusOf(next.pid)).toMatchObject({
        preforkVersion: '9.9.9-next',
        state: 'running',
      });
      expect(readPid(root.path('prefork.pid'))).toBe(next.pid);
    },
  );

  /** The CLI at `bin` in the test's root: each command must exit 0; every output is kept. */
  const cliOf = (bin: string) => {
    const outputs: string[] = [];
    const run = async (args: string[]) => {
      const result = await runPrefork([...args, '--root', root.dir], { bin });
      outputs.push(result.stdout + result.stderr);
      expect(result.code, `prefork ${args.join(' ')}: ${result.stdout}${result.stderr}`).toBe(0);
      return result;
    };
    return { run, outputs };
  };

  it.each([
    ['the first landed core', CORE_COMMIT],
    ['handover protocol 1', PROTOCOL_1_COMMIT],
  ])(
    'today’s CLI against a master of %s still running after its install was replaced: status, upgrade, deploy, rollback, 0 failed',
    async (_name, commit) => {
      requireCommit(commit);
      root = makeAppRoot();
      const earlier = earlierInstall(commit);
      const { old, traffic } = await serveUnderLoad(earlier);
      replaceInstall(earlier);
      // HUP: the earlier master spawns workers from the replaced files, today's worker reading
      // the earlier master's options (fields it lacks default to what their absence meant).
      const before = old.workers();
      process.kill(old.pid, 'SIGHUP');
      await waitFor('workers of today’s files', () => {
        const now = old.workers();
        return now.length === 2 && now.every((pid) => !before.includes(pid));
      });
      const served = traffic.count();
      await waitFor('traffic on them', () => traffic.count() > served + 200);
      const { run, outputs } = cliOf(earlier.bin); // the install now holds today’s files

      // status describes the earlier master with what it can tell, and no upgrade in flight.
      const json = JSON.parse((await run(['status', '--json'])).stdout) as {
        pidfiles: { master?: Record<string, unknown> }[];
      };
      expect(json.pidfiles.find((p) => p.master?.pid === old.pid)?.master).toMatchObject({
        release: 'v1',
        state: 'running',
        newMasterPid: null,
        oldMasterPid: null,
      });
      expect((await run(['status'])).stdout).toMatch(new RegExp(`master ${old.pid} \\[v1\\]`));
      // upgrade replaces the earlier master by today's on the same release.
      await run(['upgrade', '--verify-window', '1']);
      const upgraded = readPid(root.path('prefork.pid')) as number;
      expect(upgraded).not.toBe(old.pid);
      await waitFor('the earlier master gone', () => !alive(old.pid));
      expect(await statusOf(upgraded)).toMatchObject({
        preforkVersion: '9.9.9-next',
        release: 'v1',
      });
      await run(['deploy', 'v2', '--verify-window', '1']);
      await run(['rollback', '--verify-window', '1']);
      expect(readlinkSync(root.path('current'))).toBe('releases/v1');
      const seen = traffic.count();
      await waitFor('traffic after', () => traffic.count() > seen + 200);
      await traffic.expectNoFailures();
      for (const output of outputs) expect(output).not.toMatch(/unexpected error/);
    },
  );

  it.each([
    ['the first landed core', CORE_COMMIT],
    ['handover protocol 1', PROTOCOL_1_COMMIT],
  ])(
    'the CLI of %s, still installed, against today’s master: status, deploy, rollback, 0 failed',
    async (_name, commit) => {
      requireCommit(commit);
      root = makeAppRoot();
      const earlier = earlierInstall(commit);
      const { old, traffic } = await serveUnderLoad(installCopy(0o755));
      const { run, outputs } = cliOf(earlier.bin);
      try {
        const { stdout } = await run(['status']);
        expect(stdout).toMatch(new RegExp(`master ${old.pid} \\[v1\\]`));
        // No upgrade in flight where none is (the first CLI reads `childPid`/`parentPid`).
        expect(stdout).not.toMatch(/upgrade in flight/);
        await run(['deploy', 'v2', '--verify-window', '1']);
        expect(readlinkSync(root.path('current'))).toBe('releases/v2');
        await run(['rollback', '--verify-window', '1']);
        expect(readlinkSync(root.path('current'))).toBe('releases/v1');
        const seen = traffic.count();
        await waitFor('traffic after', () => traffic.count() > seen + 200);
        await traffic.expectNoFailures();
        for (const output of outputs) expect(output).not.toMatch(/unexpected error/);
      } finally {
        earlier.remove();
      }
    },
  );

  it('a master whose status this prefork cannot read (a newer prefork): status describes it, deploy refuses naming the way out, which works; 0 failed', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    // A future master: its status names a state this prefork does not know.
    const answers = join(copy.dir, 'dist/master/control-answers.js');
    const source = readFileSync(answers, 'utf8');
    const future = source.replace(
      'return statusOnTheWire(target.status());',
      "return { ...statusOnTheWire(target.status()), state: 'hibernating' };",
    );
    expect(future).not.toBe(source);
    writeFileSync(answers, future);
    const { old, traffic } = await serveUnderLoad(copy, await freePort());
    // The install goes back to this prefork while the newer master runs.
    replaceInstall(copy);

    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(
      new RegExp(
        `master ${old.pid} is running: the master at .*answered "status" in a form this prefork .* does not read \\(state: .*hibernating.*\\).*kill -USR2 the master, and once the new master is ready, kill -WINCH and then -QUIT the old one`,
      ),
    );
    expect(status.stdout + status.stderr).not.toMatch(/unexpected error/);
    const json = await runPrefork(['status', '--json', '--root', root.dir]);
    const [serving] = JSON.parse(json.stdout).pidfiles;
    expect(serving).toMatchObject({ pid: old.pid, problem: expect.stringMatching(/hibernating/) });
    expect(serving).not.toHaveProperty('master');

    const deployed = await runPrefork(['deploy', 'v2', '--root', root.dir]);
    expect(deployed.code).toBe(2);
    expect(deployed.stderr).toMatch(/does not read \(state: .*kill -USR2 the master/);
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    expect(readPid(root.path('prefork.pid'))).toBe(old.pid);

    // The way out it names: USR2, WINCH, QUIT by hand; the new master is this prefork.
    const next = await upgradeByHand(old);
    expect(await statusOf(next.pid)).toMatchObject({
      preforkVersion: '9.9.9-next',
      state: 'running',
    });
    const seen = traffic.count();
    await waitFor('traffic after', () => traffic.count() > seen + 200);
    await traffic.expectNoFailures();
  });

  it('prefork upgrade: the masters replaced on the same release, current untouched, 0 failed; rollback then skips it', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    const { traffic } = await serveUnderLoad(copy);
    const deployed = await runPrefork(['deploy', 'v2', '--root', root.dir, '--verify-window', '1']);
    expect(deployed.code, deployed.stderr).toBe(0);
    setInstalledVersion(copy, '9.9.9-next');
    const before = readPid(root.path('prefork.pid'));
    const upgraded = await runPrefork(['upgrade', '--root', root.dir, '--verify-window', '1']);
    expect(upgraded.code, upgraded.stdout + upgraded.stderr).toBe(0);
    expect(upgraded.stdout).toMatch(
      /upgraded v2 \(2\.0\.0\) on prefork 9\.9\.9-next: master \d+ serves/,
    );
    expect(upgraded.stdout).not.toMatch(/point current at/);
    const after = readPid(root.path('prefork.pid')) as number;
    expect(after).not.toBe(before);
    expect(await statusOf(after)).toMatchObject({ preforkVersion: '9.9.9-next', release: 'v2' });
    expect(readlinkSync(root.path('current'))).toBe('releases/v2');
    const history = JSON.parse(readFileSync(root.path('.prefork/history.json'), 'utf8')) as {
      deploys: { kind: string; release: string; preforkVersion?: string }[];
    };
    expect(history.deploys.at(-1)).toMatchObject({
      kind: 'upgrade',
      release: 'v2',
      preforkVersion: '9.9.9-next',
    });
    // The release before the last deploy, not the upgrade's own.
    const rolledBack = await runPrefork(['rollback', '--root', root.dir, '--verify-window', '1']);
    expect(rolledBack.code, rolledBack.stdout + rolledBack.stderr).toBe(0);
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    await traffic.expectNoFailures();
  });

  it('prefork upgrade onto a prefork that cannot take over: exit 1 with why, the old master serves on', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    const { old, traffic } = await serveUnderLoad(copy);
    const protocol = join(copy.dir, 'dist/protocol/versions.js');
    writeFileSync(
      protocol,
      readFileSync(protocol, 'utf8').replace(
        /OLDEST_HANDOVER_PROTOCOL = 1;/,
        'OLDEST_HANDOVER_PROTOCOL = 4;',
      ),
    );
    const upgraded = await runPrefork(['upgrade', '--root', root.dir, '--verify-window', '1']);
    expect(upgraded.code).toBe(1);
    expect(upgraded.stderr).toMatch(
      /cannot take over from old master \d+: it speaks handover protocol 3.*Rolled back: v1 serves again/,
    );
    expect(readPid(root.path('prefork.pid'))).toBe(old.pid);
    await traffic.expectNoFailures();
  });

  it('prefork upgrade killed mid-way (both masters up): prefork rollback undoes it, 0 failed', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    const { old, traffic } = await serveUnderLoad(copy);
    setInstalledVersion(copy, '9.9.9-next');
    const upgrading = new PreforkProcess(['upgrade', '--root', root.dir, '--verify-window', '30'], {
      cwd: root.dir,
    });
    const journal = () => {
      try {
        return JSON.parse(readFileSync(root.path('.prefork/deploy.json'), 'utf8')) as {
          kind: string;
          step: string;
          newPid?: number;
        };
      } catch {
        return undefined;
      }
    };
    const during = await waitFor('the upgrade to reach its verify window', () => {
      const j = journal();
      return j?.step === 'verify-window' && j;
    });
    expect(during.kind).toBe('upgrade');
    upgrading.child.kill('SIGKILL');
    await upgrading.exited;
    const rolledBack = await runPrefork(['rollback', '--root', root.dir]);
    expect(rolledBack.code, rolledBack.stdout + rolledBack.stderr).toBe(0);
    await waitFor('the new master to be gone', () => !alive(during.newPid as number));
    expect(readPid(root.path('prefork.pid'))).toBe(old.pid);
    expect(await statusOf(old.pid)).toMatchObject({ state: 'running', newMasterPid: null });
    await waitFor('the old workers back', () => old.workers().length === 2);
    const seen = traffic.count();
    await waitFor('traffic after', () => traffic.count() > seen + 200);
    await traffic.expectNoFailures();
  });

  it('node: a new Node takes effect on prefork upgrade (masters and workers run it); one that does not run or is too old: exit 2, nothing changed', async () => {
    root = makeAppRoot();
    // A second Node: a wrapper that runs this one and marks every process it starts.
    const wrapper = root.path('node-wrapped');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nPREFORK_TEST_NODE=wrapped exec "${process.execPath}" "$@"\n`,
      { mode: 0o755 },
    );
    const tooOld = root.path('node-18');
    writeFileSync(tooOld, '#!/bin/sh\necho v18.20.0\n', { mode: 0o755 });
    const { old, traffic } = await serveUnderLoad(installCopy(0o755));
    const config = root.path('prefork.config.json');
    const upgrade = () => runPrefork(['upgrade', '--root', root.dir, '--verify-window', '1']);

    for (const [node, why] of [
      [root.path('no-such-node'), /node .*no-such-node cannot be run \(ENOENT\): point --node/],
      [tooOld, /node .*node-18 is v18\.20\.0, but prefork needs Node >=20/],
    ] as const) {
      writeFileSync(config, JSON.stringify({ node }));
      const refused = await upgrade();
      expect(refused.code, refused.stdout + refused.stderr).toBe(2);
      expect(refused.stderr).toMatch(why);
      expect(readPid(root.path('prefork.pid'))).toBe(old.pid);
      // USR2 by hand reads the setting too, and refuses it the same way.
      process.kill(old.pid, 'SIGUSR2');
      await old.proc.waitForLog(new RegExp(`^USR2 refused: ${why.source.slice(0, 20)}`));
    }

    writeFileSync(config, JSON.stringify({ node: 'node-wrapped' }));
    const upgraded = await upgrade();
    expect(upgraded.code, upgraded.stdout + upgraded.stderr).toBe(0);
    const pid = readPid(root.path('prefork.pid')) as number;
    expect(await statusOf(pid)).toMatchObject({
      node: { path: wrapper, version: process.version },
    });
    const environ = (p: number) => readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
    expect(environ(pid)).toContain('PREFORK_TEST_NODE=wrapped');
    const next = createRunningMaster(old.proc, pid, old.port, old.pidfile);
    const workers = await waitFor(
      'the new workers',
      () => next.workers().length === 2 && next.workers(),
    );
    for (const worker of workers) expect(environ(worker)).toContain('PREFORK_TEST_NODE=wrapped');
    await traffic.expectNoFailures();

    // A foreground start cannot switch the Node that runs it: refused, nothing started.
    const other = makeAppRoot();
    try {
      const started = await runPrefork(
        ['start', 'releases/v1', '--root', other.dir, '--bind', '127.0.0.1:0', '--node', wrapper],
        { cwd: other.dir },
      );
      expect(started.code).toBe(2);
      expect(started.stderr).toMatch(/is not the Node running this command.*Use --daemon/);
      expect(readPid(other.path('prefork.pid'))).toBeUndefined();
    } finally {
      other.remove();
    }
  });

  it('a new prefork that cannot take over from the old master’s protocol says why and exits; the old one serves on, 0 failed', async () => {
    root = makeAppRoot();
    const copy = installCopy(0o755);
    const { old, traffic } = await serveUnderLoad(copy);
    // A future prefork that only takes over from protocol 4 and later.
    const protocol = join(copy.dir, 'dist/protocol/versions.js');
    const source = readFileSync(protocol, 'utf8');
    const future = source
      .replace(/HANDOVER_PROTOCOL = 3;/, 'HANDOVER_PROTOCOL = 4;')
      .replace(/OLDEST_HANDOVER_PROTOCOL = 1;/, 'OLDEST_HANDOVER_PROTOCOL = 4;');
    expect(future).not.toBe(source);
    writeFileSync(protocol, future);
    setInstalledVersion(copy, '10.0.0');
    process.kill(old.pid, 'SIGUSR2');
    const failed = await old.proc.waitForLog(/^new master \d+ failed to start: /);
    expect(failed.msg).toMatch(
      /cannot take over from old master \d+: it speaks handover protocol 3, prefork 10\.0\.0 takes over from protocols 4–4; upgrade through an intermediate prefork release, or stop the old master and start this one\. The old master serves on/,
    );
    await waitFor('the pidfile back', () => readPid(root.path('prefork.pid')) === old.pid);
    const status = await statusOf(old.pid);
    expect(status).toMatchObject({ state: 'running', newMasterPid: null });
    expect(String(status?.upgradeError)).toMatch(/handover protocol 3/);
    const seen = traffic.count();
    await waitFor('traffic after', () => traffic.count() > seen + 200);
    await traffic.expectNoFailures();
    expect(old.workers()).toHaveLength(2);
  });
});
