import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT, PreforkError, UsageError } from '../errors/index.js';
import { readJsonNoFollow } from '../state/safe-path.js';

/** What the playbook recorded for one host (docs/fleet/roles/prefork_release/tasks/). */
export interface HostRecord {
  host: string;
  release: string;
  /** `deployed`, `already`, or `failed`: the host's part of the rollout. */
  outcome: 'deployed' | 'already' | 'failed';
  /** The release it ran before, when this rollout moved it. */
  previous?: string;
  serving?: string;
  /** How long its `prefork deploy` took. */
  seconds?: string | number;
  /** The failed task, its exit code and the error `prefork` printed. */
  task?: string;
  rc?: string | number | null;
  error?: string;
}

/** What the playbook recorded when it rolled a moved host back. */
export interface RollbackRecord {
  host: string;
  /** `rolled-back` (prefork rollback ran), `back` (its own deploy had rolled it back), `rollback-failed`. */
  outcome: 'rolled-back' | 'back' | 'rollback-failed';
  serving?: string;
  error?: string;
}

/** Everything one run of the playbook recorded about its hosts. */
export interface RunRecords {
  /** The hosts the rollout was run on, in inventory order. */
  hosts: string[];
  deploys: Map<string, HostRecord>;
  rollbacks: Map<string, RollbackRecord>;
  /** The host whose failure halted the rollout, if it halted. */
  haltedOn: string | undefined;
  /** Hosts that a run of this rollout moved and that are not known to be back. */
  moved: string[];
}

function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Reads the records of the rollout of `release` under `stateDir` (`--state-dir`). */
export function readRunRecords(stateDir: string, release: string): RunRecords {
  const run = join(stateDir, release);
  const outcomeDir = join(run, 'outcome');
  const hostsFile = join(outcomeDir, 'hosts.list');
  const hosts = existsSync(hostsFile)
    ? readFileSync(hostsFile, 'utf8')
        .split('\n')
        .filter((h) => h !== '')
    : [];
  const deploys = new Map<string, HostRecord>();
  const rollbacks = new Map<string, RollbackRecord>();
  for (const name of filesIn(outcomeDir)) {
    if (name.endsWith('.rollback.json')) {
      const record = readJsonNoFollow<RollbackRecord>(join(outcomeDir, name));
      if (record !== undefined) rollbacks.set(record.host, record);
    } else if (name.endsWith('.json')) {
      const record = readJsonNoFollow<HostRecord>(join(outcomeDir, name));
      if (record !== undefined) deploys.set(record.host, record);
    }
  }
  const halted = existsSync(join(run, 'halted'))
    ? readFileSync(join(run, 'halted'), 'utf8').trim()
    : undefined;
  return { hosts, deploys, rollbacks, haltedOn: halted, moved: filesIn(join(run, 'moved')) };
}

/** One line about one host, for the summary. */
export function describeHost(records: RunRecords, host: string): string {
  const deploy = records.deploys.get(host);
  const rollback = records.rollbacks.get(host);
  if (deploy === undefined) {
    return rollback === undefined
      ? `${host}: untouched`
      : `${host}: moved by an earlier run, ${rollback.outcome}${rollback.serving ? ` (serves ${rollback.serving})` : ''}`;
  }
  const seconds = deploy.seconds === undefined ? '' : ` in ${Number(deploy.seconds).toFixed(1)} s`;
  const said = {
    deployed: `deployed ${deploy.release}${seconds} (was ${deploy.previous ?? '?'})`,
    already: `already on ${deploy.release}, left alone`,
    failed: `FAILED at "${deploy.task ?? '?'}"${deploy.rc === undefined || deploy.rc === null || deploy.rc === '' ? '' : ` (exit ${deploy.rc})`}: ${deploy.error ?? ''}`,
  }[deploy.outcome];
  const back =
    rollback === undefined
      ? ''
      : rollback.outcome === 'rollback-failed'
        ? `; rollback FAILED: ${rollback.error ?? ''}`
        : `; ${rollback.outcome === 'back' ? 'back' : 'rolled back'}, serves ${rollback.serving ?? '?'}`;
  return `${host}: ${said}${back}`;
}

/**
 * How a run of the rollout ended, from its records and the playbook's exit code: undefined when
 * every host runs the release; otherwise the error to exit with. 1: halted, and every host it
 * moved is back. 3: a host could not be rolled back, its own deploy's rollback did not complete
 * (exit 3), or a moved host is unaccounted for. 2: the playbook failed before reaching a host.
 */
export function rolloutVerdict(
  records: RunRecords,
  release: string,
  playbookExit: number,
): PreforkError | undefined {
  const failed = [...records.deploys.values()].filter((r) => r.outcome === 'failed');
  const rollbackFailed = [...records.rollbacks.values()].filter(
    (r) => r.outcome === 'rollback-failed',
  );
  if (records.haltedOn === undefined && failed.length === 0 && playbookExit === 0) return undefined;
  if (records.haltedOn === undefined && records.deploys.size === 0) {
    return new UsageError(
      `ansible-playbook failed (exit ${playbookExit}) before it reached a host: see its output above or in the log`,
    );
  }
  const halted = records.haltedOn ?? failed[0]?.host ?? '?';
  const why = records.deploys.get(halted)?.error ?? 'see the log';
  // A host whose deploy could not roll itself back (exit 3) or failed unexpectedly (70: its
  // state is unknown), a rollback that failed, or a
  // moved host left unaccounted for: a person must look.
  const incomplete =
    rollbackFailed.length > 0 ||
    failed.some((r) =>
      [EXIT.rollbackIncomplete, EXIT.internal].some((code) => String(r.rc) === String(code)),
    ) ||
    records.moved.length > 0 ||
    (records.haltedOn === undefined && playbookExit !== 0);
  if (incomplete) {
    const hosts = [...new Set([...rollbackFailed.map((r) => r.host), ...records.moved])];
    return new PreforkError(
      `the rollout of ${release} halted on ${halted} (${why}) and did not roll every host back${hosts.length > 0 ? `: ${hosts.join(', ')} may still run ${release}` : ''}. Run "prefork status" on them, then "prefork rollback", or run this command again once the cause is fixed`,
      EXIT.rollbackIncomplete,
    );
  }
  const back = [...records.rollbacks.values()]
    .filter((r) => r.outcome === 'rolled-back')
    .map((r) => r.host);
  return new PreforkError(
    `the rollout of ${release} halted on ${halted}: ${why}. ${back.length > 0 ? `Rolled back ${back.join(', ')}; ` : ''}every host serves the release it ran before`,
    EXIT.failedRolledBack,
  );
}
