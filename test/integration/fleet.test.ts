import { existsSync, mkdirSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN } from '../helpers/app-root.js';
import { type Load, type LoadResult, startClientLoad } from '../helpers/load.js';
import { type RunningMaster, startMaster } from '../helpers/master.js';
import {
  alive,
  killAll,
  mastersIn,
  PreforkProcess,
  runPrefork,
  track,
  waitFor,
} from '../helpers/processes.js';
import { type Sshd, startSshd } from '../helpers/sshd.js';

// A fleet of three simulated hosts on one machine: each its own loopback address (reached over
// real SSH, sshd started here), app root, port and running master; the rollout runs on the real
// ansible-playbook through `prefork fleet deploy` (docs/fleet.md).

const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

interface Host {
  name: string;
  address: string;
  root: AppRoot;
  master: RunningMaster;
}

let work: string;
let sshd: Sshd;
let hosts: Host[];
let inventory: string;
let stateDir: string;
let env: NodeJS.ProcessEnv;

/** A release answering `{ release, pid }`; on a host whose app root holds `broken`, its /healthz fails. */
function releaseFiles(version: string): Record<string, string> {
  return {
    'package.json': JSON.stringify({ name: 'fleet-app', version, main: 'index.js' }),
    'index.js': `const { existsSync } = require('node:fs');
const { join } = require('node:path');
const broken = existsSync(join(__dirname, '..', '..', 'broken'));
module.exports = (req, res) => {
  if (req.url === '/healthz' && broken) {
    res.statusCode = 503;
    res.end('missing configuration');
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ release: ${JSON.stringify(`v${version[0]}`)}, pid: process.pid }));
};
`,
  };
}

/** Builds `<name>.tar.gz` the way a CI job would: the release's files at the archive root. */
async function artifact(name: string, version: string): Promise<string> {
  const dir = join(work, 'build', name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(releaseFiles(version))) {
    writeFileSync(join(dir, file), content);
  }
  const file = join(work, `${name}.tar.gz`);
  await tar.c({ gzip: true, file, cwd: dir, portable: true }, ['.']);
  return file;
}

/** `prefork fleet deploy <file>` on the test's inventory, with JSON output. */
function fleetArgs(file: string, args: string[]): string[] {
  return [
    'fleet',
    'deploy',
    file,
    '--inventory',
    inventory,
    '--state-dir',
    stateDir,
    '--json',
    '-e',
    JSON.stringify({
      prefork_deploy_args: '--health-path /healthz --verify-window 1 --retire-window 0',
    }),
    ...args,
  ];
}

/** Runs `prefork fleet deploy` to completion. */
function fleetDeploy(file: string, args: string[] = []) {
  return runPrefork(fleetArgs(file, args), { cwd: work, env });
}

interface HostStatus {
  current: string | null;
  serving: string | null;
  inFlight: boolean;
  deployRunning: boolean;
  deploy: { release: string; step: string; outcome: string; pid: number } | null;
}

async function statusOf(host: Host): Promise<HostStatus> {
  return JSON.parse((await runPrefork(['status', '--json', '--root', host.root.dir])).stdout);
}

/** Deploys and rollbacks of a host that completed, as its history lists them. */
async function historyOf(host: Host): Promise<{ release: string; kind: string }[]> {
  return JSON.parse((await runPrefork(['releases', '--json', '--root', host.root.dir])).stdout)
    .history;
}

/** Every host serves `release`, alone (one master), with `current` pointing at it. */
async function expectFleetOn(release: string, which = hosts): Promise<void> {
  for (const host of which) {
    const status = await statusOf(host);
    expect(status.serving, host.name).toBe(release);
    expect(status.current, host.name).toBe(`releases/${release}`);
    expect(status.inFlight, host.name).toBe(false);
    expect(mastersIn(host.root.dir), host.name).toHaveLength(1);
  }
}

/**
 * Keep-alive load on every host for the length of `run`: 4 connections from Node's client,
 * each pausing 20 ms after every answer (under 200 requests/s, leaving Ansible and three
 * deploys the CPU they need on 2 cores). Not autocannon: it writes on after a `Connection:
 * close` answer, and a draining worker then resets that request (docs/exec-releases.md). No
 * connection stays idle for the drain's 250 ms idle close, which races a client sending at
 * that instant (docs/signals.md): this test is about fleets, not that race.
 */
async function underLoad<T>(run: () => Promise<T>): Promise<{ value: T; results: LoadResult[] }> {
  const loads: Load[] = hosts.map((h) =>
    startClientLoad(h.master.url, {
      connections: 4,
      durationSec: 240,
      pauseMs: 20,
    }),
  );
  try {
    const value = await run();
    return { value, results: await Promise.all(loads.map((l) => l.stop())) };
  } catch (error) {
    await Promise.all(loads.map((l) => l.stop()));
    throw error;
  }
}

function expectNoFailures(results: LoadResult[]): void {
  for (const [i, r] of results.entries()) {
    expect(r.failed, `${hosts[i]?.name}: ${JSON.stringify({ ...r, pids: undefined })}`).toBe(0);
    expect(r.responses, hosts[i]?.name).toBeGreaterThan(0);
  }
}

/** The JSON events of a `--json` run. */
function eventsOf(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeAll(async () => {
  work = join(makeAppRoot().dir, 'fleet');
  mkdirSync(work, { recursive: true });
  sshd = await startSshd(join(work, 'ssh'), ADDRESSES);
  hosts = [];
  for (const [i, address] of ADDRESSES.entries()) {
    const root = makeAppRoot();
    // Each host starts on v1 of the fleet app.
    mkdirSync(root.path('releases', 'f1'), { recursive: true });
    root.addRelease('f1', releaseFiles('1.0.0'));
    const master = await startMaster(root.dir, ['f1'], { host: address, workers: 2 });
    hosts.push({ name: `host${i + 1}`, address, root, master });
  }
  inventory = join(work, 'inventory.ini');
  writeFileSync(
    inventory,
    [
      '[app]',
      ...hosts.map((h) => `${h.name} ansible_host=${h.address} prefork_root=${h.root.dir}`),
      '',
      '[app:vars]',
      `ansible_port=${sshd.port}`,
      `ansible_user=${process.env.USER ?? 'root'}`,
      `ansible_ssh_private_key_file=${sshd.clientKey}`,
      `ansible_ssh_common_args=-o UserKnownHostsFile=${sshd.knownHosts} -o StrictHostKeyChecking=yes`,
      'ansible_python_interpreter=/usr/bin/python3',
      `prefork_command=${process.execPath} ${PREFORK_BIN}`,
      '',
    ].join('\n'),
  );
  stateDir = join(work, 'state');
  env = {
    ...process.env,
    ANSIBLE_SSH_CONTROL_PATH_DIR: sshd.controlDir,
    ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_HOME: join(work, 'ansible-home'),
  };
}, 120_000);

afterAll(async () => {
  await sshd?.stop();
  for (const host of hosts ?? []) for (const pid of mastersIn(host.root.dir)) track(pid);
  killAll();
  for (const host of hosts ?? []) host.root.remove();
  if (work) rmSync(join(work, '..'), { recursive: true, force: true });
});

describe('a rollout across three hosts with Ansible over SSH', () => {
  it('refuses a missing artifact, a bad --batch and a bad name before reaching a host', async () => {
    const file = await artifact('f9', '9.0.0');
    for (const [args, said] of [
      [[join(work, 'missing.tar.gz')], /missing\.tar\.gz is not a file/],
      [[file, '--batch', '0'], /--batch 0: expected a number of hosts/],
      [[file, '--name', '../f9'], /release name "\.\.\/f9" is not usable/],
      [[file, '--inventory', join(work, 'none.ini')], /inventory .*none\.ini does not exist/],
    ] as [string[], RegExp][]) {
      const run = await runPrefork(['fleet', 'deploy', '--inventory', inventory, ...args], {
        cwd: work,
        env,
      });
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(said);
    }
    expect(existsSync(join(stateDir, 'f9'))).toBe(false);
  });

  it('moves every host, one first, then a batch of two, without failing a request', async () => {
    const file = await artifact('f2', '2.0.0');
    const { value: run, results } = await underLoad(() => fleetDeploy(file, ['--batch', '2']));
    expect(run.code, run.stderr + run.stdout.slice(-3000)).toBe(0);
    expectNoFailures(results);
    await expectFleetOn('f2');
    const events = eventsOf(run.stdout);
    const summary = events.filter((e) => e.event === 'summary');
    expect(summary.map((e) => [e.host, e.outcome])).toEqual([
      ['host1', 'deployed'],
      ['host2', 'deployed'],
      ['host3', 'deployed'],
    ]);
    const done = events.find((e) => e.event === 'rolled-out');
    expect(done).toMatchObject({ release: 'f2', hosts: 3 });
    // docs/fleet.md, "Measured": the rollout against the sum of its hosts' deploys.
    console.log(
      `fleet rollout of 3 hosts (1, then 2): ${Number(done?.seconds).toFixed(1)} s; their deploys alone: ${Number(done?.deploySeconds).toFixed(1)} s (${summary.map((e) => `${e.host} ${Number(e.seconds).toFixed(1)} s`).join(', ')})`,
    );
    // Host 1 alone, then hosts 2 and 3 together: host 1 finished before the others began.
    for (const host of hosts) {
      expect(existsSync(host.root.path('releases', 'f2', 'index.js'))).toBe(true);
    }
  }, 240_000);

  it('halts when host 2 fails its health check: host 1 is rolled back, host 3 untouched', async () => {
    const file = await artifact('f3', '3.0.0');
    writeFileSync(hosts[1]?.root.path('broken') as string, 'v3 needs a configuration file here\n');
    const before = await historyOf(hosts[2] as Host);
    const { value: run, results } = await underLoad(() => fleetDeploy(file, ['--batch', '1']));
    expect(run.code, run.stderr + run.stdout.slice(-3000)).toBe(1);
    expectNoFailures(results);
    await expectFleetOn('f2');
    expect(run.stderr).toMatch(/halted on host2: .*health check failed.*Rolled back host1/);
    const summary = eventsOf(run.stdout).filter((e) => e.event === 'summary');
    expect(summary.map((e) => [e.host, e.outcome ?? 'untouched', e.rollback ?? null])).toEqual([
      ['host1', 'deployed', 'rolled-back'],
      ['host2', 'failed', 'back'],
      ['host3', 'untouched', null],
    ]);
    // Host 3 was never reached: no copy of the release, no deploy in its history.
    expect(existsSync(hosts[2]?.root.path('releases', 'f3') as string)).toBe(false);
    // No uploaded artifact is left on any host.
    for (const host of hosts) {
      expect(
        readdirSync(host.root.path('.prefork')).filter((f) => f.startsWith('upload-')),
      ).toEqual([]);
    }
    expect(await historyOf(hosts[2] as Host)).toEqual(before);
    rmSync(hosts[1]?.root.path('broken') as string);
  }, 240_000);

  it('converges when run again after the rollout and the deploy it ran were killed', async () => {
    const file = join(work, 'f3.tar.gz');
    const [host1, host2] = hosts as [Host, Host, Host];
    const host1Deploys = (await historyOf(host1)).length;
    const { value: rerun, results } = await underLoad(async () => {
      const first = new PreforkProcess(fleetArgs(file, ['--batch', '1']), {
        cwd: work,
        env,
        detached: true,
      });
      // Host 2's deploy of f3 is under way (its new master started): kill the controller's
      // whole process group (prefork, ansible-playbook, its workers and ssh clients), and the
      // deploy on host 2 with it, as when the CI runner dies.
      const journal = await waitFor(
        "host 2's deploy to reach wait-ready",
        async () => {
          const { deploy } = await statusOf(host2);
          return deploy?.release === 'f3' &&
            deploy.outcome === 'running' &&
            ['wait-ready', 'verify'].includes(deploy.step)
            ? deploy
            : undefined;
        },
        120_000,
      );
      process.kill(-(first.pid as number), 'SIGKILL');
      process.kill(journal.pid, 'SIGKILL');
      await first.exited;
      await waitFor('the killed deploy to be gone', () => !alive(journal.pid));
      const left = await statusOf(host2);
      expect(left.inFlight).toBe(true);
      return fleetDeploy(file, ['--batch', '1']);
    });
    expect(rerun.code, rerun.stderr + rerun.stdout.slice(-3000)).toBe(0);
    expectNoFailures(results);
    await expectFleetOn('f3');
    const summary = eventsOf(rerun.stdout).filter((e) => e.event === 'summary');
    expect(summary.map((e) => [e.host, e.outcome])).toEqual([
      ['host1', 'already'],
      ['host2', 'deployed'],
      ['host3', 'deployed'],
    ]);
    // Host 1 moved in the killed run and was left alone by the second.
    expect((await historyOf(host1)).length).toBe(host1Deploys + 1);
    expect(readlinkSync(host1.root.path('current'))).toBe('releases/f3');
    expect(readdirSync(join(stateDir, 'f3'))).not.toContain('moved');
  }, 300_000);
});
