import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type {
  ControlRequest,
  MasterMetrics,
  MasterStatus,
  WorkerHealth,
} from '../control/schema.js';
import type { ListenSocket } from '../handover/listen-sockets.js';
import { shareLogFile } from '../log/share-log-file.js';
import { masterTitle } from '../protocol/titles.js';
import type { Release } from '../release/read-release.js';
import { type ConnectionRouter, linkParent, routerFor } from './connection-router.js';
import { answerControl, type ControlTarget } from './control-answers.js';
import { CRASH_HEALTHY_MS, SpawnPacing } from './crash-backoff.js';
import { type MasterEffects, realEffects } from './effects.js';
import { Generations, readReload } from './generations.js';
import { Lifecycle, type MasterState } from './lifecycle.js';
import { logStart } from './master-log.js';
import {
  MASTER_SIGNALS,
  type MasterEvent,
  type MasterParts,
  type MasterSignal,
} from './master-parts.js';
import { metricsReport, type ReportSource, statusReport } from './master-report.js';
import { UpgradeState } from './upgrade-state.js';
import { WorkerPool } from './worker-pool.js';
import { workerSpawnOptions } from './worker-spawn.js';

/** How often the master checks heartbeats, boot and drain deadlines and backoff timers. */
const TICK_MS = 250;

/**
 * The master: one loop over a queue of events (signals, worker messages and exits, the new
 * master's readiness, a timer tick). Each signal has one handler, so the signal table in
 * `docs/signals.md` maps 1:1 to the code. After every event `reconcile()` brings the workers
 * in line with the desired state: spawn the missing, drain the extra and the outdated. The
 * workers themselves are the pool's, the generations (HUP) and the upgrade (USR2) each have
 * their own owner; the master decides.
 */
export class Master implements ControlTarget {
  private readonly logger: Logger;
  private readonly events: MasterEvent[] = [];
  private scheduled = false;
  private readonly generations: Generations;
  private readonly pool: WorkerPool;
  private readonly upgrade: UpgradeState;
  /** Its life from boot to exit (also what the metrics bind's `/ready` says). */
  readonly life: Lifecycle;
  /** Moves idle connections of draining workers to serving ones (docs/connection-moves.md). */
  private readonly router: ConnectionRouter;
  /** The sockets a new master inherits: the app's and the metrics socket. */
  private readonly handed: ListenSocket[];
  private workersStopped = false;
  private readonly pacing = new SpawnPacing();
  private readonly effects: MasterEffects;
  private readonly startedAt: number;
  private tick: NodeJS.Timeout | undefined;
  /** A canary deploy is judging this master's release (docs/canary.md). */
  private canary: boolean;

  constructor(private readonly parts: MasterParts) {
    const canaryWorkers = parts.handover.canaryWorkers();
    this.canary = canaryWorkers !== undefined;
    this.generations = new Generations({
      number: 1,
      release: parts.release,
      config: parts.config,
      desired: canaryWorkers ?? parts.config.workers,
    });
    this.logger = parts.log.logger;
    this.effects = parts.effects ?? realEffects;
    this.pool = new WorkerPool(this.effects, this.logger);
    this.router = routerFor(this.pool, () => this.generations.current);
    this.upgrade = new UpgradeState(parts.config.pid, parts.handover.oldMaster);
    this.life = new Lifecycle(parts, this.pool, this.upgrade, this.effects, this.logger);
    this.startedAt = this.effects.now();
    const { metrics, sockets } = parts;
    this.handed = metrics === undefined ? sockets : [...sockets, metrics.socket];
  }

  private get state(): MasterState {
    return this.life.state;
  }

  private get config(): Config {
    return this.generations.current.config;
  }

  private get release(): Release {
    return this.generations.current.release;
  }

  /** Installs the signal handlers, starts the first workers and runs until exit. */
  run(): void {
    shareLogFile(this.config.logFile, this.parts.identity, this.logger);
    for (const signal of MASTER_SIGNALS) {
      process.on(signal, () => this.enqueue({ kind: 'signal', signal }));
    }
    this.tick = setInterval(() => this.enqueue({ kind: 'tick' }), TICK_MS);
    linkParent(this.parts.handover.oldMaster?.pid, this.router.hooks('parent'));
    this.setTitle();
    logStart(this.logger, {
      release: this.release,
      workers: this.generations.current.desired,
      sockets: this.parts.sockets,
      ...(this.parts.metrics === undefined ? {} : { metrics: this.parts.metrics.socket }),
    });
    this.reconcile();
  }

  private enqueue(event: MasterEvent): void {
    this.events.push(event);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.handleQueued();
    });
  }

  /** Handles every queued event, then reconciles once. */
  private handleQueued(): void {
    for (let event = this.events.shift(); event; event = this.events.shift()) {
      try {
        this.handle(event);
      } catch (error) {
        this.logger.error({ err: error, event: event.kind }, 'error while handling an event');
      }
    }
    this.reconcile();
  }

  /** Handles `event` and reconciles, as the loop would (unit tests drive a master so). */
  dispatch(event: MasterEvent): void {
    this.events.push(event);
    this.handleQueued();
  }

  private handle(event: MasterEvent): void {
    switch (event.kind) {
      case 'signal':
        this.logger.info(`handling signal: ${event.signal.slice(3).toLowerCase()}`);
        this.signalHandlers[event.signal]();
        return;
      case 'worker-message':
        this.pool.onMessage(event.pid, event.message, this.config);
        return;
      case 'worker-exit':
        this.onWorkerExit(event.pid, event.code, event.signal);
        return;
      case 'new-master-ready':
        this.upgrade.onReady(event.pid, event.message);
        return;
      case 'new-master-exit':
        this.onNewMasterExit(event.pid, event.code, event.signal);
        return;
      case 'tick':
        this.onTick();
        return;
    }
  }

  private readonly signalHandlers: Record<MasterSignal, () => void> = {
    SIGTERM: () => this.handleTerm(),
    SIGINT: () => this.handleTerm(),
    SIGQUIT: () => this.handleQuit(),
    SIGHUP: () => this.handleHup(),
    SIGTTIN: () => this.handleTtin(),
    SIGTTOU: () => this.handleTtou(),
    SIGUSR1: () => this.handleUsr1(),
    SIGUSR2: () => this.handleUsr2(),
    SIGWINCH: () => this.handleWinch(),
  };

  /** TERM, and INT as TERM: quick shutdown. */
  private handleTerm(): void {
    this.life.stopQuickly();
  }

  /** QUIT: graceful shutdown — workers drain, then the master exits. */
  private handleQuit(): void {
    this.life.stopGracefully(this.config);
  }

  /**
   * HUP: reload. Re-read the configuration and `current`, start a new generation of workers,
   * and drain the old one only once the new one is ready. During an upgrade (a new master is
   * running) it restarts this master's workers on its own release instead, reloading nothing.
   */
  private handleHup(): void {
    if (this.state !== 'running') {
      this.logger.warn(`HUP ignored: the master is ${this.state}`);
      return;
    }
    if (this.upgrade.inFlight) {
      this.logger.info(
        { release: this.release.name },
        'upgrade in flight: restarting workers on this master’s own release, nothing reloaded',
      );
      this.startGeneration(this.release, this.config, this.generations.current.desired);
      return;
    }
    const next = readReload(this.parts.configSources, this.config, this.logger);
    if (next === undefined) return;
    const { config, release } = next;
    this.logger.info(
      { release: release.name, version: release.version, workers: config.workers },
      'hang up: reloading',
    );
    this.parts.log.logger.level = config.logLevel;
    this.startGeneration(release, config, config.workers);
  }

  /** TTIN: one worker more. */
  private handleTtin(): void {
    this.generations.current.desired += 1;
    this.logger.info(`workers: ${this.generations.current.desired}`);
  }

  /** TTOU: one worker fewer, never below one. */
  private handleTtou(): void {
    const current = this.generations.current;
    if (current.desired <= 1) {
      this.logger.warn('TTOU ignored: already at one worker');
      return;
    }
    current.desired -= 1;
    this.logger.info(`workers: ${current.desired}`);
  }

  /** USR1: reopen the log file here and in every worker that writes its own. */
  private handleUsr1(): void {
    this.parts.log.reopen();
    shareLogFile(this.config.logFile, this.parts.identity, this.logger);
    this.logger.info('reopened log file');
    this.pool.reopenLogs();
  }

  /**
   * USR2: binary upgrade. Move the pidfile to `.oldbin`, become `master (old)`, and start a
   * new master the way this one was started, handing it the listen sockets (`handover/`).
   */
  private handleUsr2(): void {
    const refused = this.startUpgrade(undefined);
    if (refused !== undefined) this.logger.warn(`USR2 refused: ${refused}`);
  }

  /**
   * WINCH: drain every worker and keep the master and its sockets, spawning none until HUP
   * (or until the new master of an upgrade exits). Ignored in the foreground of a terminal,
   * where resizing the window sends it, unless `forceWinch` is set.
   */
  private handleWinch(): void {
    if (this.parts.interactive && !this.config.forceWinch) {
      this.logger.info(
        'WINCH ignored: the master runs in the foreground of a terminal (set forceWinch to honour it)',
      );
      return;
    }
    if (this.state !== 'running') {
      this.logger.warn(`WINCH ignored: the master is ${this.state}`);
      return;
    }
    this.workersStopped = true;
    this.generations.abandon(undefined, this.pool, this.logger);
    this.pool.drainWhere(() => true, 'WINCH', this.config);
  }

  private onWorkerExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    this.router.workerGone(pid);
    const exited = this.pool.onExit(pid, code, signal, this.state === 'stopping');
    if (exited === undefined || exited.expected) return;
    const { worker, reason } = exited;
    const current = this.generations.current.number;
    if (this.state === 'booting') {
      this.life.failBoot(`worker ${pid} failed before the master became ready: ${reason}`);
      return;
    }
    if (this.generations.reloading && worker.generation === current && worker.state === 'booting') {
      this.generations.abandon(`a new worker failed to boot: ${reason}`, this.pool, this.logger);
      return;
    }
    if (worker.generation !== current) return;
    const now = this.effects.now();
    this.pacing.died(now - worker.bornAt, now, this.logger);
  }

  private onTick(): void {
    const now = this.effects.now();
    this.upgrade.tick(now, this.config.pid, this.logger);
    const healthy = this.pool.tick(now, this.config, CRASH_HEALTHY_MS);
    const current = this.generations.current.number;
    if (healthy.some((w) => w.generation === current)) this.pacing.healthy();
    this.life.tick(now);
  }

  private spawn(): void {
    const current = this.generations.current;
    const release = current.release.name;
    this.pool.spawn(
      workerSpawnOptions(current, this.parts, this.canary, {
        onMessage: (pid, message) => this.enqueue({ kind: 'worker-message', pid, message }),
        onMove: (pid, message, handle) => this.router.onWorkerMessage(pid, message, handle),
        onExit: (pid, code, signal) => this.enqueue({ kind: 'worker-exit', pid, code, signal }),
        // The worker's own release: after a HUP, the current generation's is the next one.
        onOutput: (pid, stream, line) => this.logger.info({ worker: pid, release, stream }, line),
        onStrayMessage: this.pool.strayMessage,
      }),
    );
  }

  private startGeneration(release: Release, config: Config, workers: number): void {
    this.generations.start(release, config, workers, this.pool, this.logger);
    this.workersStopped = false;
    this.pacing.reset();
  }

  private reconcile(): void {
    if (this.state === 'stopping') {
      if (this.pool.size === 0) {
        if (this.tick) clearInterval(this.tick);
        this.life.exit(this.config.pid);
      }
      return;
    }
    const { number: generation, desired } = this.generations.current;
    const current = this.pool.serving(generation);
    if (!this.workersStopped) {
      if (current.length < desired && this.pacing.due(this.effects.now())) {
        const count = this.pacing.batch(desired - current.length);
        for (let i = 0; i < count; i += 1) this.spawn();
        this.pacing.spawned(this.effects.now());
      }
      this.pool.drainExtra(current, current.length - desired, this.config);
    }
    const ready = current.filter((w) => w.state === 'ready').length;
    if (ready < desired || this.workersStopped) return;
    for (const worker of [...this.pool.all()]) {
      if (worker.generation !== generation) {
        this.pool.drain(worker, 'replaced by a new generation', this.config);
      } else if (worker.retiring) {
        this.pool.drain(worker, 'replaced (maxRequests or maxMemory)', this.config);
      }
    }
    if (this.generations.complete()) {
      this.setTitle();
      this.logger.info({ release: this.release.name }, 'reload complete: new workers ready');
    }
    if (this.state === 'booting') {
      this.life.becomeReady({
        pidfile: this.config.pid,
        binds: this.handed.map((s) => s.bind.name),
        release: this.release.name,
        workers: desired,
      });
    }
  }

  /** USR2, or a canary deploy's control request with the first step's worker count. */
  startUpgrade(canaryWorkers: number | undefined): string | undefined {
    if (this.upgrade.refusal() === undefined && this.state !== 'running') {
      return `the master is ${this.state}`;
    }
    const refused = this.upgrade.begin(this.effects, {
      command: this.parts.command,
      configSources: this.parts.configSources,
      sockets: this.handed,
      pidfile: this.config.pid,
      bootTimeoutS: this.config.bootTimeout,
      now: this.effects.now(),
      logger: this.logger,
      onEvent: (event) => this.enqueue(event),
      canaryWorkers,
      interactive: this.parts.interactive,
      peer: this.router.hooks('child'),
    });
    if (refused === undefined) this.setTitle();
    return refused;
  }

  /** The new master is gone: take the service back, and restart the workers WINCH stopped. */
  private onNewMasterExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.upgrade.onNewMasterExit(pid, code, signal)) return;
    this.setTitle();
    if (this.workersStopped && this.state === 'running') {
      this.workersStopped = false;
      this.logger.info('restarting the workers WINCH stopped');
    }
  }

  /** A canary deploy starts or ends on this master: its workers record figures (docs/canary.md). */
  setCanary(on: boolean): boolean {
    if (this.canary === on) return on;
    this.canary = on;
    this.logger.info(on ? 'canary deploy: judging this release' : 'canary deploy: over');
    this.pool.tellAll({ type: 'canary', on });
    return on;
  }

  private setTitle(): void {
    this.effects.setTitle(masterTitle(this.release.name, { old: this.upgrade.inFlight }));
  }

  /** Answers a control-socket request (validated by the control server's schema). */
  control(request: ControlRequest): unknown {
    return answerControl(request, this);
  }

  checkHealth(path: string): Promise<WorkerHealth[]> {
    return this.pool.checkHealth(path, this.config);
  }

  scale(workers: number): void {
    this.generations.current.desired = workers;
    this.logger.info(`scale: workers: ${workers}`);
    this.enqueue({ kind: 'tick' });
  }

  /** The other master of an upgrade in flight (the new one, or the old one still alive). */
  peerPid(): number | undefined {
    return this.upgrade.peerPid();
  }

  /** This master's own share of the metrics (a scrape adds the other master's). */
  metricsShare(): MasterMetrics {
    return metricsReport(this.reportSource());
  }

  /** This master's state, as `prefork status` shows it. */
  status(): MasterStatus {
    return statusReport(this.reportSource());
  }

  private reportSource(): ReportSource {
    return {
      now: this.effects.now(),
      startedAt: this.startedAt,
      state: this.state === 'running' && this.upgrade.inFlight ? 'old' : this.state,
      generation: this.generations.current,
      workersStopped: this.workersStopped,
      canary: this.canary,
      pool: this.pool,
      upgrade: this.upgrade,
      parts: this.parts,
    };
  }
}
