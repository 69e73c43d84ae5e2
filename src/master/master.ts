import { chownSync } from 'node:fs';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { ControlRequest, MasterMetrics, MasterStatus } from '../control/schema.js';
import { messageOf } from '../errors/index.js';
import {
  closeListenSockets,
  type ListenSocket,
  sharedWithOthers,
} from '../handover/listen-sockets.js';
import { UpgradeRefused } from '../handover/new-master.js';
import type { MasterCommand } from '../handover/spawn-master.js';
import { tellStderr } from '../log/logger.js';
import { checkNode } from '../process/node-binary.js';
import { oldbinPath } from '../protocol/files.js';
import { masterTitle } from '../protocol/titles.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { HANDOVER_PROTOCOL } from '../protocol/versions.js';
import { readCurrentRelease } from '../release/current-link.js';
import type { Release } from '../release/read-release.js';
import { removePidfileIfOurs, writePidfile } from '../state/pidfile.js';
import { QUICK_KILL_MS } from '../wait/timeouts.js';
import { CRASH_HEALTHY_MS, CrashBackoff } from './crash-backoff.js';
import { type MasterEffects, realEffects } from './effects.js';
import { Generations } from './generations.js';
import {
  MASTER_SIGNALS,
  type MasterEvent,
  type MasterParts,
  type MasterSignal,
} from './master-parts.js';
import { metricsReport, type ReportSource, statusReport } from './master-report.js';
import { UpgradeState } from './upgrade-state.js';
import { kindOf } from './worker-kinds.js';
import { WorkerPool } from './worker-pool.js';

export { MASTER_SIGNALS, type MasterEvent, type MasterParts } from './master-parts.js';

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
export class Master {
  private readonly logger: Logger;
  private readonly events: MasterEvent[] = [];
  private scheduled = false;
  private readonly generations: Generations;
  private readonly pool: WorkerPool;
  private readonly upgrade: UpgradeState;
  private state: 'booting' | 'running' | 'stopping' = 'booting';
  private workersStopped = false;
  private readonly backoff = new CrashBackoff();
  private nextSpawnAt = 0;
  private exitCode = 0;
  private readonly effects: MasterEffects;
  private readonly startedAt: number;
  private tick: NodeJS.Timeout | undefined;
  private killAllAt: number | undefined;
  /** exit() ran: the master waits for its last scrapes, then exits. */
  private exiting = false;
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
    this.upgrade = new UpgradeState(parts.config.pid, parts.handover.oldMaster);
    this.startedAt = this.effects.now();
  }

  private get config(): Config {
    return this.generations.current.config;
  }

  private get release(): Release {
    return this.generations.current.release;
  }

  // -------------------------------------------------------------------------------------------
  // The loop
  // -------------------------------------------------------------------------------------------

  /** Installs the signal handlers, starts the first workers and runs until exit. */
  run(): void {
    this.shareLogFile();
    for (const signal of MASTER_SIGNALS) {
      process.on(signal, () => this.enqueue({ kind: 'signal', signal }));
    }
    this.tick = setInterval(() => this.enqueue({ kind: 'tick' }), TICK_MS);
    this.setTitle();
    const { sockets, metrics } = this.parts;
    this.logger.info(
      {
        release: this.release.name,
        version: this.release.version,
        binds: sockets.map((s) => s.address),
        workers: this.generations.current.desired,
      },
      `starting master with pid: ${process.pid}`,
    );
    for (const socket of sockets) {
      this.logger.info({ inherited: socket.inherited }, `listening at ${urlOf(socket)}`);
    }
    if (metrics !== undefined) {
      this.logger.info(
        { inherited: metrics.socket.inherited },
        `serving metrics at ${urlOf(metrics.socket)}/metrics`,
      );
    }
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

  /**
   * Handles `event` and reconciles at once, as the loop would: how unit tests drive a master
   * without processes (see `test/unit/master-decisions.test.ts`).
   */
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

  // -------------------------------------------------------------------------------------------
  // Signals: one handler each
  // -------------------------------------------------------------------------------------------

  private readonly signalHandlers: Record<MasterSignal, () => void> = {
    SIGTERM: () => this.handleTerm(),
    SIGINT: () => this.handleInt(),
    SIGQUIT: () => this.handleQuit(),
    SIGHUP: () => this.handleHup(),
    SIGTTIN: () => this.handleTtin(),
    SIGTTOU: () => this.handleTtou(),
    SIGUSR1: () => this.handleUsr1(),
    SIGUSR2: () => this.handleUsr2(),
    SIGWINCH: () => this.handleWinch(),
  };

  /** TERM: quick shutdown. */
  private handleTerm(): void {
    this.quickShutdown();
  }

  /** INT: quick shutdown, as TERM. */
  private handleInt(): void {
    this.quickShutdown();
  }

  /** QUIT: graceful shutdown — workers drain, then the master exits. */
  private handleQuit(): void {
    if (this.state === 'stopping') return;
    this.state = 'stopping';
    this.killAllAt = undefined;
    this.pool.drainWhere(() => true, 'graceful shutdown', this.config);
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
    let config: Config;
    let release: Release;
    try {
      config = loadConfig(this.parts.configSources);
      release = readCurrentRelease(this.config.root);
    } catch (error) {
      this.logger.error(
        `reload refused: ${messageOf(error)}; keeping the running configuration and release`,
      );
      return;
    }
    for (const key of ['bind', 'pid', 'logFile', 'metricsBind'] as const) {
      if (JSON.stringify(config[key]) !== JSON.stringify(this.config[key])) {
        this.logger.warn(`"${key}" changed: it takes effect on the next USR2 upgrade or restart`);
      }
    }
    this.logger.info(
      { release: release.name, version: release.version, workers: config.workers },
      'hang up: reloading',
    );
    this.parts.log.logger.level = config.logLevel;
    const kept = { ...config, bind: this.config.bind, pid: this.config.pid };
    this.startGeneration(release, kept, kept.workers);
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
    this.shareLogFile();
    this.logger.info('reopened log file');
    this.pool.reopenLogs();
  }

  /**
   * USR2: binary upgrade. Move the pidfile to `.oldbin`, become `master (old)`, and start a
   * new master the way this one was started, handing it the listen sockets
   * (`src/handover/new-master.ts`).
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
    this.abandonReload(undefined);
    this.pool.drainWhere(() => true, 'WINCH', this.config);
  }

  // -------------------------------------------------------------------------------------------
  // Workers and generations
  // -------------------------------------------------------------------------------------------

  private onWorkerExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const exited = this.pool.onExit(pid, code, signal, this.state === 'stopping');
    if (exited === undefined || exited.expected) return;
    const { worker, reason } = exited;
    const current = this.generations.current.number;
    if (this.state === 'booting') {
      this.failBoot(`worker ${pid} failed before the master became ready: ${reason}`);
      return;
    }
    if (this.generations.reloading && worker.generation === current && worker.state === 'booting') {
      this.abandonReload(`a new worker failed to boot: ${reason}`);
      return;
    }
    if (worker.generation !== current) return;
    const delay = this.backoff.recordDeath(this.effects.now() - worker.bornAt);
    if (delay > 0) {
      this.nextSpawnAt = this.effects.now() + delay;
      this.logger.warn(
        { deaths: this.backoff.deaths, delayMs: delay },
        `workers are crash-looping: next spawn in ${delay} ms`,
      );
    }
  }

  private onTick(): void {
    const now = this.effects.now();
    this.upgrade.tick(now, this.config.pid, this.logger);
    const healthy = this.pool.tick(now, this.config, CRASH_HEALTHY_MS);
    const current = this.generations.current.number;
    if (this.backoff.deaths > 0 && healthy.some((w) => w.generation === current)) {
      this.backoff.recordHealthy();
    }
    if (this.killAllAt !== undefined && now > this.killAllAt) {
      this.pool.killAll('quick shutdown timed out');
      this.killAllAt = undefined;
    }
  }

  private spawn(): void {
    const { config, release, number: generation } = this.generations.current;
    const jitter = config.maxRequestsJitter;
    const { sockets, metrics, identity, notifyDir, workerEnv, command } = this.parts;
    this.pool.spawn({
      kind: kindOf(release),
      release,
      generation,
      fds: sockets.map((s) => s.fd),
      env: workerEnv,
      identity,
      nodePath: command.execPath,
      worker: {
        sockets: sockets.map((s) => s.bind.name),
        gracefulTimeoutMs: config.gracefulTimeout * 1000,
        heartbeatMs: Math.max(50, Math.min(1000, (config.timeout * 1000) / 4)),
        maxRequests:
          config.maxRequests > 0
            ? config.maxRequests + Math.floor(Math.random() * (jitter + 1))
            : 0,
        warmup: config.warmup,
        warmupPath: config.warmupPath ?? config.healthPath ?? '/',
        warmupTimeoutMs: (config.bootTimeout * 1000) / 2,
        logLevel: config.logLevel,
        logFile: config.logFile,
        metrics: metrics !== undefined,
        canary: this.canary,
      },
      onMessage: (pid, message) => this.enqueue({ kind: 'worker-message', pid, message }),
      onExit: (pid, code, signal) => this.enqueue({ kind: 'worker-exit', pid, code, signal }),
      notifyDir,
      // The worker's own release: after a HUP, the current generation's is the next one.
      onOutput: (pid, stream, line) =>
        this.logger.info({ worker: pid, release: release.name, stream }, line),
    });
  }

  private startGeneration(release: Release, config: Config, workers: number): void {
    this.abandonReload(undefined);
    this.generations.start(release, config, workers);
    this.workersStopped = false;
    this.backoff.recordHealthy();
    this.nextSpawnAt = 0;
  }

  /**
   * Gives up an unfinished reload: back to the generation it was replacing. `reason`
   * undefined gives it up silently (superseded by another reload, or WINCH).
   */
  private abandonReload(reason: string | undefined): void {
    const abandoned = this.generations.current.number;
    const limits = this.config;
    if (this.generations.abandon() === undefined) return;
    this.pool.drainWhere((w) => w.generation === abandoned, 'reload abandoned', limits);
    if (reason !== undefined) {
      this.logger.error(
        { release: this.release.name },
        `reload failed: ${reason}; keeping the workers of release ${this.release.name}`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reconcile
  // -------------------------------------------------------------------------------------------

  private reconcile(): void {
    if (this.state === 'stopping') {
      if (this.pool.size === 0) this.exit();
      return;
    }
    const { number: generation, desired } = this.generations.current;
    const current = this.pool.serving(generation);
    if (!this.workersStopped) {
      if (current.length < desired && this.effects.now() >= this.nextSpawnAt) {
        const count = this.backoff.deaths > 1 ? 1 : desired - current.length;
        for (let i = 0; i < count; i += 1) this.spawn();
        if (this.backoff.delay() > 0) this.nextSpawnAt = this.effects.now() + this.backoff.delay();
      }
      const extra = current.length - desired;
      if (extra > 0) {
        const byPreference = current.sort(
          (a, b) =>
            Number(a.state === 'ready') - Number(b.state === 'ready') || a.bornAt - b.bornAt,
        );
        for (const worker of byPreference.slice(0, extra)) {
          this.pool.drain(worker, 'TTOU', this.config);
        }
      }
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
    if (this.state === 'booting') this.becomeReady();
  }

  /** All workers ready for the first time: write the pidfile, tell whoever waits. */
  private becomeReady(): void {
    this.state = 'running';
    try {
      writePidfile(this.config.pid, process.pid);
    } catch (error) {
      this.failBoot(`cannot write the pidfile ${this.config.pid}: ${messageOf(error)}`);
      return;
    }
    this.upgrade.holding(this.config.pid);
    this.parts.handover.reportReady({
      ready: true,
      pid: process.pid,
      binds: this.handedOver().map((s) => s.bind.name),
      protocol: HANDOVER_PROTOCOL,
      version: PREFORK_VERSION,
    });
    this.logger.info(
      { workers: this.generations.current.desired, pidfile: this.config.pid },
      `master ready (pid: ${process.pid}, release ${this.release.name})`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Upgrades: this master as the old one (its new master) or as the new one (its old master)
  // -------------------------------------------------------------------------------------------

  /**
   * What USR2 does, also asked for over the control socket by a canary deploy, which gives the
   * new master's first worker count (`canaryWorkers`). Returns why it was refused, if it was.
   */
  private startUpgrade(canaryWorkers: number | undefined): string | undefined {
    const refused = this.upgrade.refusal();
    if (refused !== undefined) return refused;
    if (this.state !== 'running') return `the master is ${this.state}`;
    let command: MasterCommand;
    try {
      command = this.upgradeCommand();
    } catch (error) {
      return messageOf(error);
    }
    try {
      this.upgrade.started(
        this.effects.startUpgrade({
          command,
          sockets: this.handedOver(),
          pidfile: this.config.pid,
          bootTimeoutS: this.config.bootTimeout,
          now: this.effects.now(),
          logger: this.logger,
          onEvent: (event) => this.enqueue(event),
          canaryWorkers,
          interactive: this.parts.interactive,
        }),
      );
    } catch (error) {
      if (!(error instanceof UpgradeRefused)) throw error;
      return error.message;
    }
    this.setTitle();
    return undefined;
  }

  /**
   * How USR2 starts the new master: as this one was started, on the Node the configuration
   * names now (`node`, read again so that a new Node takes effect), checked to run first.
   */
  private upgradeCommand(): MasterCommand {
    const { node } = loadConfig(this.parts.configSources);
    if (node === undefined || node === this.parts.command.execPath) return this.parts.command;
    checkNode(node);
    return { ...this.parts.command, execPath: node };
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

  /**
   * A canary deploy starts (`on`) or ends on this master: its workers, those running and those
   * it spawns, record figures and ask kept-alive clients to reconnect now and then.
   */
  private setCanary(on: boolean): void {
    if (this.canary === on) return;
    this.canary = on;
    this.logger.info(on ? 'canary deploy: judging this release' : 'canary deploy: over');
    this.pool.tellAll({ type: 'canary', on });
  }

  /** The sockets a new master inherits: the app's and the metrics socket. */
  private handedOver(): ListenSocket[] {
    const { metrics, sockets } = this.parts;
    return metrics === undefined ? sockets : [...sockets, metrics.socket];
  }

  private setTitle(): void {
    this.effects.setTitle(masterTitle(this.release.name, { old: this.upgrade.inFlight }));
  }

  /** Workers running as `--user` append to the log file too: it is theirs as well. */
  shareLogFile(): void {
    const { identity } = this.parts;
    if (identity === undefined || this.config.logFile === undefined) return;
    try {
      chownSync(this.config.logFile, identity.uid, identity.gid);
    } catch (error) {
      this.logger.error(
        `cannot hand ${this.config.logFile} to the workers' user: ${messageOf(error)}`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Shutdown
  // -------------------------------------------------------------------------------------------

  private quickShutdown(): void {
    this.state = 'stopping';
    this.killAllAt = this.effects.now() + QUICK_KILL_MS;
    this.pool.terminateAll();
  }

  /** Gives up booting: reports why, stops the workers, exits non-zero. */
  private failBoot(reason: string): void {
    this.logger.error(reason);
    tellStderr(`prefork: ${reason}`);
    this.parts.handover.reportFailure(reason);
    try {
      this.parts.onBootFailure?.();
    } catch (error) {
      this.logger.error(`could not undo the start: ${messageOf(error)}`);
    }
    this.exitCode = 1;
    this.quickShutdown();
  }

  /**
   * Cleans up what this master owns and exits, whatever fails on the way; with metrics on, once
   * the scrapes it accepted are answered.
   */
  private exit(): void {
    if (this.exiting) return;
    this.exiting = true;
    const metrics = this.parts.metrics;
    let sharers: ReturnType<UpgradeState['sharers']> | undefined;
    try {
      if (this.tick) clearInterval(this.tick);
      this.parts.control?.close();
      this.parts.notifyDir.remove();
      removePidfileIfOurs(this.config.pid, process.pid);
      removePidfileIfOurs(oldbinPath(this.config.pid), process.pid);
      sharers = this.upgrade.sharers();
      closeListenSockets(this.parts.sockets, sharers);
      this.logger.info({ code: this.exitCode }, `master exiting (pid: ${process.pid})`);
    } finally {
      const exit = () => this.effects.exit(this.exitCode);
      if (metrics === undefined || sharers === undefined) exit();
      else metrics.stop(sharedWithOthers(metrics.socket, sharers), exit);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Control socket and reports
  // -------------------------------------------------------------------------------------------

  /** Answers a control-socket request (validated by the control server's schema). */
  control(request: ControlRequest): unknown {
    switch (request.cmd) {
      case 'health':
        return this.pool.checkHealth(request.path, this.config);
      case 'metrics':
        return this.metricsShare();
      case 'canary':
        this.setCanary(request.on);
        return { canary: this.canary };
      case 'upgrade': {
        const refused = this.startUpgrade(request.workers);
        if (refused !== undefined) throw new Error(`upgrade refused: ${refused}`);
        return { newMasterPid: this.upgrade.newMasterPid };
      }
      case 'scale':
        this.generations.current.desired = request.workers;
        this.logger.info(`scale: workers: ${request.workers}`);
        this.enqueue({ kind: 'tick' });
        return { workers: request.workers };
      case 'status':
        return this.status();
    }
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
    const { sockets, metrics, identity, command } = this.parts;
    return {
      now: this.effects.now(),
      startedAt: this.startedAt,
      state: this.state === 'running' && this.upgrade.inFlight ? 'old' : this.state,
      generation: this.generations.current,
      workersStopped: this.workersStopped,
      canary: this.canary,
      pool: this.pool,
      upgrade: this.upgrade,
      binds: sockets.map((s) => s.address),
      metricsAddress: metrics?.socket.address,
      identity,
      nodePath: command.execPath,
    };
  }
}

/** How a log line names a socket: its path, or an `http://` URL. */
function urlOf(socket: ListenSocket): string {
  return socket.bind.kind === 'unix' ? socket.address : `http://${socket.address}`;
}
