import type { Logger } from 'pino';
import { messageOf } from '../errors/index.js';
import { tellStderr } from '../log/logger.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { HANDOVER_PROTOCOL } from '../protocol/versions.js';
import { writeExitReport } from '../state/exit-report.js';
import { writePidfile } from '../state/pidfile.js';
import { QUICK_KILL_MS } from '../wait/timeouts.js';
import type { MasterEffects } from './effects.js';
import { cleanUpAndExit } from './master-exit.js';
import type { MasterParts } from './master-parts.js';
import type { UpgradeState } from './upgrade-state.js';
import { drainTotals, type PoolLimits, type WorkerPool } from './worker-pool.js';

/** A master's life: booting until every worker is ready, running, then stopping. */
export type MasterState = 'booting' | 'running' | 'stopping';

/**
 * The master's life from boot to exit, in one owner: becoming ready (the pidfile, the ready
 * pipe), failing to boot, the quick and graceful stops with their deadline, and the exit.
 */
export class Lifecycle {
  state: MasterState = 'booting';
  private code = 0;
  /** A quick stop's deadline: workers still there then are killed. */
  private killAllAt: number | undefined;
  private exited = false;

  constructor(
    private readonly parts: Pick<
      MasterParts,
      'handover' | 'onBootFailure' | 'control' | 'notifyDir' | 'sockets' | 'metrics' | 'config'
    >,
    private readonly pool: WorkerPool,
    private readonly upgrade: UpgradeState,
    private readonly effects: MasterEffects,
    private readonly logger: Logger,
  ) {}

  /**
   * The service takes traffic, as the metrics bind's `/ready` says: this master runs, or the
   * other master of an upgrade serves while this one boots or retires. False once a stop began
   * with no other master (docs/containers.md).
   */
  takesTraffic(): boolean {
    return this.state === 'running' || this.upgrade.peerPid() !== undefined;
  }

  /**
   * All workers ready for the first time: write the pidfile, tell whoever waits (with the
   * binds it serves), log it.
   */
  becomeReady(ready: { pidfile: string; binds: string[]; release: string; workers: number }): void {
    this.state = 'running';
    try {
      writePidfile(ready.pidfile, process.pid);
    } catch (error) {
      this.failBoot(`cannot write the pidfile ${ready.pidfile}: ${messageOf(error)}`);
      return;
    }
    this.upgrade.holding(ready.pidfile);
    this.parts.handover.reportReady({
      ready: true,
      pid: process.pid,
      binds: ready.binds,
      protocol: HANDOVER_PROTOCOL,
      version: PREFORK_VERSION,
    });
    this.logger.info(
      { workers: ready.workers, pidfile: ready.pidfile },
      `master ready (pid: ${process.pid}, release ${ready.release})`,
    );
  }

  /** Gives up booting: reports why, stops the workers, exits non-zero. */
  failBoot(reason: string): void {
    this.logger.error(reason);
    tellStderr(`prefork: ${reason}`);
    this.parts.handover.reportFailure(reason);
    try {
      this.parts.onBootFailure?.();
    } catch (error) {
      this.logger.error(`could not undo the start: ${messageOf(error)}`);
    }
    this.code = 1;
    this.stopQuickly();
  }

  /** TERM/INT: workers told to stop at once, killed past {@link QUICK_KILL_MS}. */
  stopQuickly(): void {
    this.state = 'stopping';
    this.killAllAt = this.effects.now() + QUICK_KILL_MS;
    this.pool.terminateAll();
  }

  /** QUIT: every worker drains (up to the graceful timeout); once, whatever comes after. */
  stopGracefully(limits: PoolLimits): void {
    if (this.state === 'stopping') return;
    this.state = 'stopping';
    this.killAllAt = undefined;
    this.pool.drainWhere(() => true, 'graceful shutdown', limits);
  }

  /** Each tick: a quick stop past its deadline kills what is left. */
  tick(now: number): void {
    if (this.killAllAt === undefined || now <= this.killAllAt) return;
    this.pool.killAll('quick shutdown timed out');
    this.killAllAt = undefined;
  }

  /** Cleans up and exits (`master-exit.ts`), once, leaving its exit report for the deploy. */
  exit(pidfile: string): void {
    if (this.exited) return;
    this.exited = true;
    const code = this.code;
    const { root, gracefulTimeout } = this.parts.config;
    try {
      writeExitReport(root, {
        pid: process.pid,
        at: this.effects.now(),
        ...drainTotals(this.pool),
        gracefulTimeoutS: gracefulTimeout,
      });
    } catch (error) {
      this.logger.warn({ err: error }, `cannot write the exit report: ${messageOf(error)}`);
    }
    cleanUpAndExit(this.parts, pidfile, this.upgrade, this.logger, code, () =>
      this.effects.exit(code),
    );
  }
}
