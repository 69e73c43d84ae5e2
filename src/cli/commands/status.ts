import type { Command } from 'commander';
import { loadConfig } from '../../config/load.js';
import { ControlProtocolError, diagnoseNoAnswer, queryMasterNow } from '../../control/client.js';
import type { MasterStatus, WorkerStatus } from '../../control/schema.js';
import { type Journal, readJournal } from '../../journal/journal.js';
import { isAlive } from '../../process/alive.js';
import { addConnections, noConnections } from '../../protocol/connections.js';
import { addMoves, noMoves } from '../../protocol/moves.js';
import { readCurrentTarget } from '../../release/current-link.js';
import { describeConnections, describeDrained } from '../../report/connections.js';
import { readPidfilePair } from '../../state/pidfile.js';
import { addRootOptions, configSources } from '../options.js';

/** What `status` reports for one pidfile. */
interface PidfileReport {
  pidfile: string;
  pid: number | undefined;
  master: MasterStatus | undefined;
  /** Why the pid did not answer as a master of this root (stale, stopped, hung). */
  problem?: string | undefined;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function describeMaster(report: PidfileReport): string[] {
  if (report.pid === undefined) return [];
  const m = report.master;
  if (m === undefined) {
    return [report.problem ?? `${report.pidfile}: pid ${report.pid} did not answer`];
  }
  const lines = [
    `master ${m.pid} [${m.release}] version ${m.version}: ${m.state}${m.workersStopped ? ' (workers stopped by WINCH)' : ''}, up ${m.uptime}s, rss ${megabytes(m.rss)}, ${m.workers.length}/${m.desiredWorkers} workers, pidfile ${m.pidfile}`,
    `  listening: ${m.binds.join(', ')}${protocolNote(m.workers)}`,
  ];
  // A master of a prefork from before these fields (during an upgrade of prefork itself).
  if (m.preforkVersion !== undefined && m.node !== undefined) {
    lines.push(`  prefork ${m.preforkVersion}, node ${m.node.version} (${m.node.path})`);
  }
  if (m.metrics !== null) lines.push(`  metrics: ${m.metrics}`);
  if (m.canary === true) {
    lines.push(
      '  canary deploy: its release is being judged (figures recorded, clients reconnect)',
    );
  }
  if (m.newMasterPid !== null) lines.push(`  upgrade in flight: new master ${m.newMasterPid}`);
  for (const t of m.traffic) {
    const share =
      t.errorShare === null
        ? '5xx share unknown (metrics off: set --metrics-bind)'
        : `${(t.errorShare * 100).toFixed(1)}% 5xx`;
    lines.push(
      `  traffic [${t.release}]: ${t.rate.toFixed(1)} req/s, ${share} (last ${t.windowS} s)`,
    );
  }
  lines.push(...describeGenerations(m.workers));
  for (const w of m.workers) {
    lines.push(
      `  worker ${w.pid} [${w.release}] ${w.state.padEnd(8)} requests ${(w.kind === 'exec' ? '-' : String(w.requests)).padStart(7)}  rss ${megabytes(w.rss).padStart(9)}  age ${w.age}s${w.status === undefined ? '' : `  status: ${w.status}`}`,
    );
  }
  return lines;
}

/**
 * Per release (a master's generation), its Node workers' open connections by kind; while some
 * of them drain, what those hold, when it is closed, and what was closed at the deadline so far.
 */
function describeGenerations(workers: WorkerStatus[]): string[] {
  const lines: string[] = [];
  const counted = workers.filter((w) => w.connections !== undefined);
  for (const release of new Set(counted.map((w) => w.release))) {
    const own = counted.filter((w) => w.release === release);
    const total = (list: WorkerStatus[]) =>
      list.reduce(
        (sum, w) => addConnections(sum, w.connections ?? noConnections()),
        noConnections(),
      );
    lines.push(`  connections [${release}]: ${describeConnections(total(own))}`);
    const draining = own.filter((w) => w.state === 'draining');
    if (draining.length === 0) continue;
    const deadlines = draining.flatMap((w) =>
      w.drainDeadline === undefined ? [] : [w.drainDeadline],
    );
    const closeIn =
      deadlines.length === 0
        ? ''
        : `, the rest closed in ${Math.max(0, Math.ceil((Math.max(...deadlines) - Date.now()) / 1000))}s`;
    const closed = draining.reduce((sum, w) => sum + w.closedAtDeadline, 0);
    const drained = describeDrained(
      draining.reduce((sum, w) => addMoves(sum, w.drained ?? noMoves()), noMoves()),
    );
    lines.push(
      `  draining [${release}]: ${draining.length} workers, ${describeConnections(total(draining))} left${closeIn}; ${drained === '' ? '' : `${drained}, `}${closed} closed at the deadline`,
    );
  }
  return lines;
}

function describeJournal(journal: Journal): string {
  const who =
    journal.outcome === 'running' && !isAlive(journal.pid)
      ? ` — its process ${journal.pid} is gone: run "prefork rollback"`
      : '';
  return `last ${journal.kind}: ${journal.release} (${journal.version}) from ${journal.previous ?? '(none)'}, started ${journal.startedAt}, step ${journal.step}, ${journal.outcome}${journal.error ? ` (${journal.error})` : ''}${who}`;
}

/**
 * What one pidfile tells: its master's status, or why there is none. A master that answers in
 * a form this prefork does not read (another prefork version) is described, not fatal.
 */
async function reportOn(
  root: string,
  pidfile: string,
  pid: number | undefined,
): Promise<PidfileReport> {
  if (pid === undefined) return { pidfile, pid, master: undefined, problem: undefined };
  try {
    const master = await queryMasterNow(root, pid);
    const problem = master === undefined ? diagnoseNoAnswer(root, pid, pidfile).why : undefined;
    return { pidfile, pid, master, problem };
  } catch (error) {
    if (!(error instanceof ControlProtocolError)) throw error;
    return {
      pidfile,
      pid,
      master: undefined,
      problem: `master ${pid} is running: ${error.message}`,
    };
  }
}

/** Registers `prefork status [--json]`. */
export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('show the masters, their release and workers, and any upgrade in flight')
    .option('--json', 'print one JSON document');
  addRootOptions(command);
  command.action(async (options: Record<string, unknown>) => {
    const config = loadConfig(configSources(options));
    const reports: PidfileReport[] = [];
    for (const { path: pidfile, pid } of readPidfilePair(config.pid)) {
      reports.push(await reportOn(config.root, pidfile, pid));
    }
    const current = readCurrentTarget(config.root);
    const journal = readJournal(config.root) ?? null;
    if (options.json) {
      const deployRunning = journal?.outcome === 'running' && isAlive(journal.pid);
      const summary = {
        // The release the master in the pidfile runs, or null when none answers.
        serving: reports[0]?.master?.release ?? null,
        // A deploy or rollback is running now (its process is alive).
        deployRunning,
        // Two masters run, or a deploy stopped before it finished: "prefork rollback" settles it.
        inFlight:
          reports[1]?.master !== undefined ||
          (!deployRunning &&
            (journal?.outcome === 'running' || journal?.outcome === 'rollback-incomplete')),
      };
      process.stdout.write(
        `${JSON.stringify({ root: config.root, current: current ?? null, ...summary, pidfiles: reports, deploy: journal }, null, 2)}\n`,
      );
    } else {
      const lines = [`root ${config.root}, current -> ${current ?? '(none)'}`];
      for (const report of reports) lines.push(...describeMaster(report));
      if (reports.every((r) => r.pid === undefined)) lines.push('no master running');
      if (journal) lines.push(describeJournal(journal));
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    process.exitCode = reports[0]?.master !== undefined || reports[1]?.master !== undefined ? 0 : 1;
  });
}

/** What the workers speak, after the binds: nothing for plain HTTP/1.1. */
function protocolNote(workers: { tls: boolean; http: string }[]): string {
  const http = workers.find((w) => w.http !== 'http/1.1')?.http;
  if (http === 'h2c') return ' (HTTP/2, h2c)';
  if (http === 'h2') return ' (HTTP/2 over TLS)';
  if (http === 'grpc') return workers.some((w) => w.tls) ? ' (gRPC over TLS)' : ' (gRPC)';
  return workers.some((w) => w.tls) ? ' (HTTPS)' : '';
}
