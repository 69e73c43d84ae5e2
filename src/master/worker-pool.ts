import type { Logger } from 'pino';
import type { WorkerHealth } from '../control/schema.js';
import { isFigures } from '../figures/figures.js';
import { ReleaseBook } from '../metrics/release-book.js';
import { connectionTotal } from '../protocol/connections.js';
import type { WorkerExitReason } from '../protocol/exits.js';
import type { MasterMessage, WorkerMessage } from '../protocol/ipc.js';
import { addMoves, type MoveCounts, noMoves } from '../protocol/moves.js';
import { WORKER_KILL_GRACE_MS } from '../wait/timeouts.js';
import type { SpawnWorkerOptions, WorkerRecord } from '../worker-kind/worker-record.js';
import type { MasterEffects } from './effects.js';
import { strayMessageLog } from './master-log.js';
import { HEALTH_ANSWER_MS, WorkerHealthChecks } from './worker-health.js';

/** The settings a pool applies to its workers (the current generation's configuration). */
export interface PoolLimits {
  /** `--graceful-timeout` (s): a draining worker is killed past it. */
  gracefulTimeout: number;
  /** `--timeout` (s): a Node worker's heartbeat limit, and a health check's reach. */
  timeout: number;
  /** `bootTimeout` (s): a booting worker is killed past it. */
  bootTimeout: number;
  /** `maxMemory` (MB, 0 = none): a worker over it is replaced. */
  maxMemory: number;
}

/** What a worker's exit meant, for the master's decisions (crash backoff, a failed boot). */
export interface ExitedWorker {
  worker: WorkerRecord;
  /** It exited while draining (asked to), or during a stop. */
  expected: boolean;
  /** Why it died, when it was not expected to. */
  reason: string;
}

/**
 * The master's worker processes: spawned, drained, killed, and watched for deadlines (boot,
 * heartbeat, drain), with the book of what each release's workers did. Kind-specific behaviour
 * goes through each record's `kind`; the master decides how many workers of which generation
 * there should be, the pool carries it out.
 */
/**
 * What the drains of the pool's workers, alive and gone, did with their connections, and how
 * many they closed at a drain's deadline (as the book keeps them: it forgets releases long
 * gone, `ReleaseBook`).
 */
export function drainTotals(pool: Pick<WorkerPool, 'book' | 'all'>): {
  closedAtDeadline: number;
  drained: MoveCounts;
} {
  let closedAtDeadline = 0;
  let drained = noMoves();
  for (const release of pool.book.releases(pool.all())) {
    closedAtDeadline += release.closedAtDeadline;
    drained = addMoves(drained, release.drained);
  }
  return { closedAtDeadline, drained };
}

export class WorkerPool {
  private readonly workers = new Map<number, WorkerRecord>();
  private readonly healthChecks = new WorkerHealthChecks();
  /** Each release's workers and figures, those gone included (metrics, `status`). */
  readonly book = new ReleaseBook();

  /**
   * Whether a worker about to drain may move its idle connections (the master has somewhere
   * to put them); such a worker, if it speaks the moves protocol, is drained by a `drain`
   * message instead of its stop signal.
   */
  canMove: (worker: WorkerRecord) => boolean = () => false;

  /** Logs a worker's stray IPC message, once per worker. */
  readonly strayMessage: (pid: number, problem: string) => void;

  constructor(
    private readonly effects: MasterEffects,
    private readonly logger: Logger,
  ) {
    this.strayMessage = strayMessageLog(logger);
  }

  get size(): number {
    return this.workers.size;
  }

  all(): IterableIterator<WorkerRecord> {
    return this.workers.values();
  }

  get(pid: number): WorkerRecord | undefined {
    return this.workers.get(pid);
  }

  /** Workers of `generation` that count toward its size: not retiring, not draining. */
  serving(generation: number): WorkerRecord[] {
    return [...this.workers.values()].filter(
      (w) => w.generation === generation && !w.retiring && w.state !== 'draining',
    );
  }

  spawn(options: SpawnWorkerOptions): void {
    const worker = this.effects.spawnWorker(options);
    this.workers.set(worker.pid, worker);
    this.logger.info(
      { worker: worker.pid, release: options.release.name },
      `booting worker with pid: ${worker.pid}`,
    );
  }

  /** Graceful stop of one worker: its kind's stop signal, and SIGKILL past the graceful timeout. */
  drain(worker: WorkerRecord, reason: string, limits: PoolLimits): void {
    this.drainTogether([worker], reason, limits);
  }

  /** TTOU: drains `extra` of `serving`, those not ready yet first, then the oldest. */
  drainExtra(serving: WorkerRecord[], extra: number, limits: PoolLimits): void {
    if (extra <= 0) return;
    const byPreference = serving.sort(
      (a, b) => Number(a.state === 'ready') - Number(b.state === 'ready') || a.bornAt - b.bornAt,
    );
    this.drainTogether(byPreference.slice(0, extra), 'TTOU', limits);
  }

  /** Drains every worker that `which` picks. */
  drainWhere(which: (worker: WorkerRecord) => boolean, reason: string, limits: PoolLimits): void {
    this.drainTogether([...this.workers.values()].filter(which), reason, limits);
  }

  /**
   * Drains `workers` as one step: all are marked draining before any is told, so none is taken
   * for a successor to the others' connections (a QUIT drains every worker: their connections
   * have nowhere to move within this master).
   */
  private drainTogether(workers: WorkerRecord[], reason: string, limits: PoolLimits): void {
    const fresh = workers.filter((worker) => worker.state !== 'draining');
    for (const worker of fresh) {
      worker.state = 'draining';
      worker.killAt = this.effects.now() + limits.gracefulTimeout * 1000 + WORKER_KILL_GRACE_MS;
    }
    for (const worker of fresh) {
      const move = worker.moves && this.canMove(worker);
      this.logger.info(
        { worker: worker.pid, reason, move },
        `draining worker ${worker.pid} (${reason})`,
      );
      // Only a drain that moves connections is told by IPC (it must know before it starts);
      // every other drain is the worker's stop signal, as an app that traps QUIT expects.
      const told = move && worker.kind.tell(worker, { type: 'drain', reason, move }, this.effects);
      if (!told) this.effects.signalWorker(worker, worker.kind.stopSignal(worker));
    }
  }

  kill(worker: WorkerRecord, reason: string, exitReason: WorkerExitReason): void {
    if (worker.killed) return;
    worker.killed = true;
    worker.failure = reason;
    worker.exitReason = exitReason;
    worker.killAt = undefined;
    this.logger.error({ worker: worker.pid }, `killing worker ${worker.pid}: ${reason}`);
    this.effects.signalWorker(worker, 'SIGKILL');
  }

  /** Quick shutdown: TERM to every worker, each counted as stopped. */
  terminateAll(): void {
    for (const worker of this.workers.values()) {
      worker.state = 'draining';
      worker.exitReason ??= 'stopped';
      this.effects.signalWorker(worker, 'SIGTERM');
    }
  }

  /** Kills every worker still there (a quick shutdown that timed out). */
  killAll(reason: string): void {
    for (const worker of this.workers.values()) this.kill(worker, reason, 'killed');
  }

  /** USR1: each worker that writes its own log reopens it. */
  reopenLogs(): void {
    for (const worker of this.workers.values()) worker.kind.reopenLogs(worker, this.effects);
  }

  /** Tells every worker that has a channel. */
  tellAll(message: MasterMessage): void {
    for (const worker of this.workers.values()) worker.kind.tell(worker, message, this.effects);
  }

  /** A message from a worker; returns the worker, undefined for one the pool does not know. */
  onMessage(pid: number, message: WorkerMessage, limits: PoolLimits): WorkerRecord | undefined {
    const worker = this.workers.get(pid);
    if (worker === undefined) return undefined;
    worker.lastBeat = this.effects.now();
    switch (message.type) {
      case 'ready':
        if (worker.state === 'booting') {
          worker.state = 'ready';
          worker.tls = message.tls === true;
          worker.http = message.http;
          worker.moves = message.moves;
          worker.readyAt = this.effects.now();
          this.logger.debug({ worker: pid }, 'worker ready');
        }
        break;
      case 'heartbeat':
        worker.requests = message.requests;
        worker.rss = message.rss;
        if (isFigures(message.figures)) worker.figures = message.figures;
        if (message.connections !== undefined) worker.connections = message.connections;
        worker.drainDeadline = message.drainDeadline;
        worker.closedAtDeadline = message.closedAtDeadline ?? 0;
        if (message.moves !== undefined) worker.moveCounts = message.moves;
        this.checkMemory(worker, limits);
        break;
      case 'boot-error':
        worker.failure = message.message;
        break;
      case 'watchdog':
        break;
      case 'status':
        worker.statusText = message.text;
        break;
      case 'health':
        this.healthChecks.answer(pid, message);
        break;
      case 'retire':
        worker.requests = message.requests;
        if (!worker.retiring) {
          worker.retiring = true;
          this.logger.info(
            { worker: pid, requests: message.requests },
            'worker reached maxRequests: replacing it',
          );
        }
        break;
    }
    return worker;
  }

  /** A worker over `maxMemory` (a leak) is replaced like one that reached `maxRequests`. */
  private checkMemory(worker: WorkerRecord, limits: PoolLimits): void {
    const limit = limits.maxMemory * 1024 * 1024;
    if (limit === 0 || worker.retiring || worker.state !== 'ready' || worker.rss <= limit) return;
    worker.retiring = true;
    this.logger.warn(
      { worker: worker.pid, rss: worker.rss },
      `worker ${worker.pid} uses ${Math.round(worker.rss / 1024 / 1024)} MB, over maxMemory ${limits.maxMemory} MB: replacing it`,
    );
  }

  /**
   * A worker exited: it leaves the pool and the book counts it. Returns what its exit meant
   * (`stopping`: the master is shutting down), undefined for a pid the pool does not know.
   */
  onExit(
    pid: number,
    code: number | null,
    signal: NodeJS.Signals | null,
    stopping: boolean,
  ): ExitedWorker | undefined {
    const worker = this.workers.get(pid);
    if (worker === undefined) return undefined;
    this.workers.delete(pid);
    this.healthChecks.workerExited(pid);
    this.book.workerExited(worker, exitReason(worker, stopping), this.effects.now());
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (worker.state === 'draining' || stopping) {
      this.logger.info({ worker: pid }, `worker exited (pid: ${pid}, ${how})`);
      return { worker, expected: true, reason: how };
    }
    const reason = worker.failure ?? `exited with ${how}${worker.kind.lastWords(worker)}`;
    this.logger.error(
      { worker: pid, release: worker.release.name, state: worker.state },
      `worker ${pid} died: ${reason}`,
    );
    return { worker, expected: false, reason };
  }

  /**
   * Each tick: what each kind must find out itself (readiness by time, RSS), then the
   * deadlines — booting past `bootTimeout`, ready but silent past its kind's limit, draining
   * past the graceful timeout. Returns the ready workers that have stayed up `healthyMs`.
   */
  tick(now: number, limits: PoolLimits, healthyMs: number): WorkerRecord[] {
    const healthy: WorkerRecord[] = [];
    this.book.sample(this.workers.values(), now);
    for (const worker of this.workers.values()) {
      const news = worker.kind.onTick(worker, now, this.effects);
      if (news.ready)
        this.onMessage(
          worker.pid,
          { type: 'ready', tls: false, http: 'http/1.1', moves: false },
          limits,
        );
      if (news.rssRead) this.checkMemory(worker, limits);
      const silence = worker.kind.silenceLimit(worker, limits.timeout);
      if (worker.state === 'booting' && now - worker.bornAt > limits.bootTimeout * 1000) {
        const within = `within bootTimeout (${limits.bootTimeout} s)`;
        this.kill(worker, worker.kind.notReadyReason(worker, within), 'boot_failed');
      } else if (
        worker.state === 'ready' &&
        silence !== undefined &&
        now - worker.lastBeat > silence.s * 1000
      ) {
        this.kill(worker, silence.why, 'hung');
      } else if (worker.killAt !== undefined && now > worker.killAt) {
        // Its connections (as its last heartbeat counted them) die with it: closed at the
        // deadline too, by the master instead of the worker.
        const left = worker.connections === undefined ? 0 : connectionTotal(worker.connections);
        worker.closedAtDeadline = Math.max(worker.closedAtDeadline, left);
        this.kill(worker, 'still draining past the graceful timeout', 'killed');
      } else if (worker.state === 'ready' && worker.readyAt && now - worker.readyAt > healthyMs) {
        healthy.push(worker);
      }
    }
    return healthy;
  }

  /**
   * Asks every serving worker (ready, not draining) that can be asked to GET `path` from its
   * own app. Empty when none serves (WINCH, booting) or none can be asked (exec workers, which
   * deploy checks through the bind).
   */
  checkHealth(path: string, limits: PoolLimits): Promise<WorkerHealth[]> {
    const serving = [...this.workers.values()].filter(
      (w) => w.state === 'ready' && w.kind.answersHealthChecks,
    );
    const bounds = { answerMs: HEALTH_ANSWER_MS, reachMs: limits.timeout * 1000 };
    return Promise.all(serving.map((w) => this.healthChecks.ask(w, path, bounds)));
  }
}

/** Why a worker that just exited did, as `prefork_worker_exits_total{reason}` counts it. */
function exitReason(worker: WorkerRecord, stopping: boolean): WorkerExitReason {
  if (worker.exitReason !== undefined) return worker.exitReason;
  if (worker.state === 'draining') return worker.retiring ? 'recycled' : 'drained';
  if (stopping) return 'stopped';
  return worker.state === 'booting' ? 'boot_failed' : 'crashed';
}
