import type { MasterMetrics, MasterStatus } from '../control/schema.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { CONTROL_PROTOCOL } from '../protocol/versions.js';
import type { Generation } from './generations.js';
import type { MasterParts } from './master-parts.js';
import type { UpgradeState } from './upgrade-state.js';
import type { WorkerPool } from './worker-pool.js';
import { drainTotals } from './worker-pool.js';

/** What a master's reports are made of (a view of its state at the moment of asking). */
export interface ReportSource {
  now: number;
  startedAt: number;
  state: MasterStatus['state'];
  generation: Generation;
  workersStopped: boolean;
  canary: boolean;
  pool: WorkerPool;
  upgrade: UpgradeState;
  parts: Pick<MasterParts, 'sockets' | 'metrics' | 'identity' | 'command'>;
}

/** This master's state, as `prefork status` shows it (control request `status`). */
export function statusReport(source: ReportSource): MasterStatus {
  const { now, generation, pool, upgrade, parts } = source;
  const { release, config } = generation;
  return {
    pid: process.pid,
    root: config.root,
    release: release.name,
    version: release.version,
    releaseDir: release.dir,
    state: source.state,
    workersStopped: source.workersStopped,
    desiredWorkers: generation.desired,
    configuredWorkers: config.workers,
    canary: source.canary,
    uptime: Math.round((now - source.startedAt) / 1000),
    rss: process.memoryUsage.rss(),
    binds: parts.sockets.map((s) => s.address),
    oldMasterPid: upgrade.oldMasterAlive() ? (upgrade.oldMaster?.pid ?? null) : null,
    newMasterPid: upgrade.newMasterPid ?? null,
    upgradeError: upgrade.error ?? null,
    pidfile: upgrade.pidfile,
    heartbeatTimeout: config.timeout,
    gracefulTimeout: config.gracefulTimeout,
    preforkVersion: PREFORK_VERSION,
    node: { version: process.version, path: parts.command.execPath },
    workerIdentity: parts.identity ?? null,
    metrics: parts.metrics?.socket.address ?? null,
    traffic: pool.book.traffic(),
    ...drainTotals(pool),
    protocol: CONTROL_PROTOCOL,
    workers: [...pool.all()].map((w) => ({
      pid: w.pid,
      release: w.release.name,
      kind: w.kind.name,
      generation: w.generation,
      state: w.state,
      tls: w.tls,
      http: w.http,
      requests: w.requests,
      rss: w.rss,
      age: Math.round((now - w.bornAt) / 1000),
      ...(w.statusText === undefined ? {} : { status: w.statusText }),
      ...(w.connections === undefined ? {} : { connections: w.connections }),
      ...(w.drainDeadline === undefined ? {} : { drainDeadline: w.drainDeadline }),
      closedAtDeadline: w.closedAtDeadline,
      ...(w.moveCounts === undefined ? {} : { drained: w.moveCounts }),
    })),
  };
}

/**
 * This master's own share of the metrics: its state, release, and its workers' figures by
 * release (those gone included). A scrape adds the other master's during an upgrade.
 */
export function metricsReport(
  source: Pick<ReportSource, 'state' | 'generation' | 'pool'>,
): MasterMetrics {
  const { release } = source.generation;
  return {
    pid: process.pid,
    state: source.state,
    release: release.name,
    version: release.version,
    releases: source.pool.book.releases(source.pool.all()),
  };
}
