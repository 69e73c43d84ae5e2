import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import lockfile from 'proper-lockfile';
import { EXIT, PreforkError, UsageError } from '../errors/index.js';
import { assertReleaseName, defaultName } from '../release/install.js';
import type { Reporter } from '../report/reporter.js';
import { describeHost, readRunRecords, rolloutVerdict } from './records.js';

/** The playbook `prefork fleet deploy` runs, shipped in the package (docs/fleet.md). */
export const ROLLOUT_PLAYBOOK = fileURLToPath(
  new URL('../../docs/fleet/rollout.yml', import.meta.url),
);

/** What `prefork fleet deploy` is asked to do. */
export interface FleetDeployRequest {
  /** The release archive on this machine. */
  artifact: string;
  /** Ansible inventory (file or directory). */
  inventory: string;
  /** Release name on the hosts (default: the artifact's name without extension). */
  name: string | undefined;
  /** Hosts per batch after the first one: a count or a share (`25%`). */
  batch: string;
  /** Host pattern of the inventory to roll out to. */
  hosts: string;
  /** Where the records of each rollout are kept (`.prefork-fleet`). */
  stateDir: string;
  /** More variables for the playbook (`-e`), as ansible-playbook takes them. */
  extraVars: string[];
  reporter: Reporter;
}

/** How often the records are read while the playbook runs. */
const RECORDS_EVERY_MS = 500;

/** Refuses what would make the run fail before it reaches a host (exit 2, nothing changed). */
function preflight(request: FleetDeployRequest, name: string): void {
  const which = spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' });
  if (which.error !== undefined || which.status !== 0) {
    throw new UsageError(
      'ansible-playbook is not installed here: install Ansible ("apt install ansible-core" or "pipx install ansible-core"), or run docs/fleet/rollout.yml from a machine that has it',
    );
  }
  if (!existsSync(request.artifact) || !statSync(request.artifact).isFile()) {
    throw new UsageError(
      `${request.artifact} is not a file: build the release archive first (tar czf <name>.tar.gz -C <release dir> .)`,
    );
  }
  if (!existsSync(request.inventory)) {
    throw new UsageError(`inventory ${request.inventory} does not exist: pass --inventory FILE`);
  }
  assertReleaseName(name);
  if (!/^([1-9]\d*|([1-9]\d?|100)%)$/.test(request.batch)) {
    throw new UsageError(
      `--batch ${request.batch}: expected a number of hosts (2) or a share of them (25%)`,
    );
  }
}

/**
 * `prefork fleet deploy` (docs/fleet.md): runs the shipped playbook, which moves one host, then
 * batches, halts at the first failure and rolls back the hosts it moved; reports each host's
 * outcome as the playbook records it. Exit 0 every host moved; 1 halted and rolled back; 3 a
 * host could not be rolled back; 2 nothing was started.
 */
export async function fleetDeploy(request: FleetDeployRequest): Promise<void> {
  const { reporter } = request;
  const artifact = resolve(request.artifact);
  const name = request.name ?? defaultName(artifact);
  const stateDir = resolve(request.stateDir);
  await reporter.step('preflight', `preflight: ${request.artifact} as ${name}`, async () =>
    preflight(request, name),
  );
  mkdirSync(join(stateDir, name), { recursive: true });
  // One rollout of a release at a time per record: two would each take the other's hosts for
  // theirs. The lock of a rollout that was killed goes stale in 5 s: a run started right after
  // waits for that, no longer.
  const lockfilePath = join(stateDir, name, 'rollout.lock');
  const unlock = await lockfile
    .lock(join(stateDir, name), {
      lockfilePath,
      stale: 5000,
      update: 1000,
      realpath: false,
      retries: { retries: 8, minTimeout: 1000, maxTimeout: 1000 },
    })
    .catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ELOCKED') throw error;
      throw new PreforkError(
        `another rollout of ${name} runs with ${stateDir} (${lockfilePath}): wait for it to finish`,
        EXIT.locked,
        { cause: error },
      );
    });
  try {
    await rollout(request, { artifact, name, stateDir });
  } finally {
    await unlock().catch(() => {});
  }
}

/** Runs the playbook, reports each host as its outcome lands, and judges the run. */
async function rollout(
  request: FleetDeployRequest,
  { artifact, name, stateDir }: { artifact: string; name: string; stateDir: string },
): Promise<void> {
  const { reporter } = request;
  const logPath = join(stateDir, name, 'ansible.log');
  const started = Date.now();
  const args = [
    '-i',
    resolve(request.inventory),
    ROLLOUT_PLAYBOOK,
    '-e',
    JSON.stringify({
      prefork_artifact: artifact,
      prefork_release: name,
      prefork_fleet_state: stateDir,
      prefork_batch: request.batch,
      prefork_hosts: request.hosts,
    }),
    ...request.extraVars.flatMap((v) => ['-e', v]),
  ];
  const log = openSync(logPath, 'w');
  const seen = new Set<string>();
  const report = () => {
    const records = readRunRecords(stateDir, name);
    for (const host of records.hosts) {
      const key = `${host}:${records.deploys.get(host)?.outcome}:${records.rollbacks.get(host)?.outcome}`;
      if ((records.deploys.has(host) || records.rollbacks.has(host)) && !seen.has(key)) {
        seen.add(key);
        reporter.info(describeHost(records, host), { event: 'host', host });
      }
    }
  };
  const exit = await reporter.step(
    'rollout',
    `roll ${name} out with Ansible: 1 host, then batches of ${request.batch} (log: ${logPath})`,
    () =>
      new Promise<number>((resolveExit, reject) => {
        const child = spawn('ansible-playbook', args, {
          stdio: ['ignore', log, log],
          env: {
            ...process.env,
            // One SSH connection per host for all tasks, no temp files for modules: unless
            // the operator's ansible.cfg or environment says otherwise.
            ANSIBLE_PIPELINING: process.env.ANSIBLE_PIPELINING ?? 'True',
            ANSIBLE_NOCOLOR: '1',
          },
        });
        const forward = (signal: NodeJS.Signals) => child.kill(signal);
        process.on('SIGINT', forward);
        process.on('SIGTERM', forward);
        const timer = reporter.live ? setInterval(report, RECORDS_EVERY_MS) : undefined;
        child.on('error', reject);
        child.on('exit', (code, signal) => {
          if (timer) clearInterval(timer);
          process.off('SIGINT', forward);
          process.off('SIGTERM', forward);
          closeSync(log);
          resolveExit(code ?? (signal ? 128 : 1));
        });
      }),
  );
  const records = readRunRecords(stateDir, name);
  for (const host of records.hosts) {
    reporter.info(describeHost(records, host), {
      event: 'summary',
      host,
      ...records.deploys.get(host),
      rollback: records.rollbacks.get(host)?.outcome,
    });
  }
  const failure = rolloutVerdict(records, name, exit);
  if (failure !== undefined) {
    if (exit !== 0 && records.deploys.size === 0) {
      const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-15).join('\n');
      process.stderr.write(`${tail}\n`);
    }
    throw failure;
  }
  const deploySeconds = [...records.deploys.values()].reduce(
    (sum, r) => sum + (r.outcome === 'deployed' ? Number(r.seconds ?? 0) : 0),
    0,
  );
  const wall = (Date.now() - started) / 1000;
  reporter.info(
    `rolled ${name} out to ${records.hosts.length} host(s) in ${wall.toFixed(1)} s (their deploys alone: ${deploySeconds.toFixed(1)} s)`,
    {
      event: 'rolled-out',
      release: name,
      hosts: records.hosts.length,
      seconds: wall,
      deploySeconds,
    },
  );
}
