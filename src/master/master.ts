import { chownSync } from 'node:fs';
import type { Logger } from 'pino';
import { type ConfigSources, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors/index.js';
import type { NotifyDir } from '../exec/notify-dir.js';
import { type Log, tellStderr } from '../log/logger.js';
import { isFigures } from '../metrics/figures.js';
import type { MetricsServer } from '../metrics/metrics-server.js';
import { ReleaseBook } from '../metrics/release-book.js';
import { checkNode } from '../process/node-binary.js';
import { QUICK_KILL_MS, WORKER_KILL_GRACE_MS } from '../process/timeouts.js';
import {
  type ControlRequest,
  HANDOVER_PROTOCOL,
  type MasterMetrics,
  type MasterStatus,
  masterTitle,
  OLDBIN_SUFFIX,
  type WorkerExitReason,
  type WorkerHealth,
  type WorkerMessage,
} from '../protocol/index.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { readCurrentRelease } from '../release/current-link.js';
import type { Release } from '../release/read-release.js';
import { removePidfileIfOurs, writePidfile } from '../state/pidfile.js';
import {
  closeListenSockets,
  type ListenSocket,
  type SocketSharers,
  sharedWithOthers,
} from '../upgrade/listen-sockets.js';
import type { Handover, OldMaster } from '../upgrade/new-master-side.js';
import { type NewMaster, type NewMasterEvent, UpgradeRefused } from '../upgrade/old-master-side.js';
import type { MasterCommand } from '../upgrade/spawn-master.js';
import type { ControlServer } from './control-server.js';
import { CRASH_HEALTHY_MS, CrashBackoff } from './crash-backoff.js';
import { type MasterEffects, realEffects } from './effects.js';
import { HEALTH_ANSWER_MS, WorkerHealthChecks } from './worker-health.js';
import type { WorkerIdentity } from './worker-identity.js';
import type { WorkerRecord } from './worker-process.js';

/** How often the master checks heartbeats, boot and drain deadlines and backoff timers. */
const TICK_MS = 250;
/** How often the master reads an exec worker's RSS from `/proc`. */
const EXEC_RSS_EVERY_MS = 1000;

/** The signals a master handles; each has one handler below (`handleHup`, ...). */
export const MASTER_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGTTIN',
  'SIGTTOU',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
] as const;
type MasterSignal = (typeof MASTER_SIGNALS)[number];

/** Everything a master loop reacts to. All state changes happen while handling one of these. */
export type MasterEvent =
  | { kind: 'signal'; signal: MasterSignal }
  | { kind: 'worker-message'; pid: number; message: WorkerMessage }
  | { kind: 'worker-exit'; pid: number; code: number | null; signal: NodeJS.Signals | null }
  | NewMasterEvent
  | { kind: 'tick' };

/** What a master is built from (see `start-master.ts`). */
export interface MasterParts {
  config: Config;
  /** Where the configuration came from, to read it again on HUP. */
  configSources: ConfigSources;
  release: Release;
  sockets: ListenSocket[];
  log: Log;
  /** How this master was started; USR2 starts the next one the same way. */
  command: MasterCommand;
  /** Environment for workers: the original one, less prefork's own variables. */
  workerEnv: NodeJS.ProcessEnv;
  /** What whoever spawned this master handed it: the ready pipe, the old master (USR2). */
  handover: Handover;
  /** In the foreground of a terminal: WINCH is a window resize, not a command. */
  interactive: boolean;
  control: ControlServer | undefined;
  /** `GET /metrics` on the metrics socket (`--metrics-bind`), when set. */
  metrics: MetricsServer | undefined;
  /** uid/gid for workers (`--user`/`--group`). */
  identity: WorkerIdentity | undefined;
  /** Where exec workers' notify sockets go. */
  notifyDir: NotifyDir;
  /** Called when the master gives up before it was ever ready (`start` puts `current` back). */
  onBootFailure?: (() => void) | undefined;
  /** What the master does to processes, the clock and its exit; unit tests record them. */
  effects?: MasterEffects | undefined;
}

/**
 * The master: one loop over a queue of events (signals, worker messages and exits, the new
 * master's readiness, a timer tick). Each signal has one handler, so the signal table in
 * `docs/signals.md` maps 1:1 to the code. After every event `reconcile()` brings the workers
 * in line with the desired state: spawn the missing, drain the extra and the outdated.
 */
export class Master {
  private config: Config;
  private release: Release;
  private readonly logger: Logger;
  private readonly workers = new Map<number, WorkerRecord>();
  private readonly events: MasterEvent[] = [];
  private scheduled = false;
  private generation = 1;
  private desired: number;
  private state: 'booting' | 'running' | 'stopping' = 'booting';
  private workersStopped = false;
  /** The generation a HUP replaces, to go back to if the new workers fail to boot. */
  private reload:
    | { generation: number; release: Release; config: Config; desired: number }
    | undefined;
  private readonly backoff = new CrashBackoff();
  private readonly healthChecks = new WorkerHealthChecks();
  /** Each release's workers and figures, those gone included (metrics, `status`). */
  private readonly book = new ReleaseBook();
  private nextSpawnAt = 0;
  private exitCode = 0;
  /** The pidfile holding this master's pid: `prefork.pid`, or `.oldbin` during an upgrade. */
  private pidPath: string;
  /** The new master this one started by USR2, while it runs. */
  private newMaster: NewMaster | undefined;
  /** Why the last new master failed to start, for `status` and `deploy`. */
  private upgradeError: string | undefined;
  /** The old master of the upgrade that started this one (undefined when started by hand). */
  private readonly oldMaster: OldMaster | undefined;
  private readonly effects: MasterEffects;
  private readonly startedAt: number;
  private tick: NodeJS.Timeout | undefined;
  private killAllAt: number | undefined;
  /** exit() ran: the master waits for its last scrapes, then exits. */
  private exiting = false;
  /** A canary deploy is judging this master's release (docs/canary.md). */
  private canary: boolean;

  constructor(private readonly parts: MasterParts) {
    this.config = parts.config;
    this.release = parts.release;
    const canaryWorkers = parts.handover.canaryWorkers();
    this.desired = canaryWorkers ?? parts.config.workers;
    this.canary = canaryWorkers !== undefined;
    this.pidPath = parts.config.pid;
    this.logger = parts.log.logger;
    this.oldMaster = parts.handover.oldMaster;
    this.effects = parts.effects ?? realEffects;
    this.startedAt = this.effects.now();
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
    this.logger.info(
      {
        release: this.release.name,
        version: this.release.version,
        binds: this.parts.sockets.map((s) => s.address),
        workers: this.desired,
      },
      `starting master with pid: ${process.pid}`,
    );
    for (const socket of this.parts.sockets) {
      this.logger.info(
        { inherited: socket.inherited },
        `listening at ${socket.bind.kind === 'unix' ? socket.address : `http://${socket.address}`}`,
      );
    }
    const metrics = this.parts.metrics?.socket;
    if (metrics !== undefined) {
      const url = metrics.bind.kind === 'unix' ? metrics.address : `http://${metrics.address}`;
      this.logger.info({ inherited: metrics.inherited }, `serving metrics at ${url}/metrics`);
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
        this.onWorkerMessage(event.pid, event.message);
        return;
      case 'worker-exit':
        this.onWorkerExit(event.pid, event.code, event.signal);
        return;
      case 'new-master-ready':
        if (this.newMaster?.pid === event.pid) this.newMaster.onReadyMessage(event.message);
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
    for (const worker of this.workers.values()) this.drainWorker(worker, 'graceful shutdown');
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
    if (this.newMaster !== undefined) {
      this.logger.info(
        { release: this.release.name },
        'upgrade in flight: restarting workers on this master’s own release, nothing reloaded',
      );
      this.startGeneration(this.release, this.config, this.desired);
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
    this.startGeneration(release, { ...config, bind: this.config.bind, pid: this.config.pid });
  }

  /** TTIN: one worker more. */
  private handleTtin(): void {
    this.desired += 1;
    this.logger.info(`workers: ${this.desired}`);
  }

  /** TTOU: one worker fewer, never below one. */
  private handleTtou(): void {
    if (this.desired <= 1) {
      this.logger.warn('TTOU ignored: already at one worker');
      return;
    }
    this.desired -= 1;
    this.logger.info(`workers: ${this.desired}`);
  }

  /** USR1: reopen the log file here and in every worker. */
  private handleUsr1(): void {
    this.parts.log.reopen();
    this.shareLogFile();
    this.logger.info('reopened log file');
    // An exec worker's output reaches the log through this master, which just reopened it;
    // USR1 would kill most programs.
    for (const worker of this.workers.values()) {
      if (worker.release.kind === 'node') this.effects.signalWorker(worker, 'SIGUSR1');
    }
  }

  /**
   * USR2: binary upgrade. Move the pidfile to `.oldbin`, become `master (old)`, and start a
   * new master the way this one was started, handing it the listen sockets
   * (`src/upgrade/old-master-side.ts`).
   */
  private handleUsr2(): void {
    const refused = this.startUpgrade(undefined);
    if (refused !== undefined) this.logger.warn(`USR2 refused: ${refused}`);
  }

  /**
   * What USR2 does, also asked for over the control socket by a canary deploy, which gives the
   * new master's first worker count (`canaryWorkers`). Returns why it was refused, if it was.
   */
  private startUpgrade(canaryWorkers: number | undefined): string | undefined {
    if (this.newMaster !== undefined) {
      return `an upgrade is already in flight (new master pid ${this.newMaster.pid})`;
    }
    if (this.oldMaster?.alive()) {
      return `this master is itself the new master of an upgrade; its old master (pid ${this.oldMaster.pid}) still runs — QUIT it first`;
    }
    if (this.state !== 'running') return `the master is ${this.state}`;
    let command: MasterCommand;
    try {
      command = this.upgradeCommand();
    } catch (error) {
      return messageOf(error);
    }
    try {
      this.newMaster = this.effects.startUpgrade({
        command,
        sockets: this.handedOver(),
        pidfile: this.config.pid,
        bootTimeoutS: this.config.bootTimeout,
        now: this.effects.now(),
        logger: this.logger,
        onEvent: (event) => this.enqueue(event),
        canaryWorkers,
        interactive: this.parts.interactive,
      });
    } catch (error) {
      if (!(error instanceof UpgradeRefused)) throw error;
      return error.message;
    }
    this.pidPath = this.newMaster.oldbin;
    this.upgradeError = undefined;
    this.setTitle();
    return undefined;
  }

  /**
   * A canary deploy starts (`on`) or ends on this master: its Node workers, those running and
   * those it spawns, record figures and ask kept-alive clients to reconnect now and then.
   */
  private setCanary(on: boolean): void {
    if (this.canary === on) return;
    this.canary = on;
    this.logger.info(on ? 'canary deploy: judging this release' : 'canary deploy: over');
    for (const worker of this.workers.values()) {
      if (worker.release.kind === 'node') this.effects.sendWorker(worker, { type: 'canary', on });
    }
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
    for (const worker of this.workers.values()) this.drainWorker(worker, 'WINCH');
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
  // Workers
  // -------------------------------------------------------------------------------------------

  private onWorkerMessage(pid: number, message: WorkerMessage): void {
    const worker = this.workers.get(pid);
    if (worker === undefined) return;
    worker.lastBeat = this.effects.now();
    switch (message.type) {
      case 'ready':
        if (worker.state === 'booting') {
          worker.state = 'ready';
          worker.tls = message.tls === true;
          worker.readyAt = this.effects.now();
          this.logger.debug({ worker: pid }, 'worker ready');
        }
        return;
      case 'heartbeat':
        worker.requests = message.requests;
        worker.rss = message.rss;
        if (isFigures(message.figures)) worker.figures = message.figures;
        this.checkMemory(worker);
        return;
      case 'boot-error':
        worker.failure = message.message;
        return;
      case 'watchdog':
        return;
      case 'status':
        worker.statusText = message.text;
        return;
      case 'health':
        this.healthChecks.answer(pid, message);
        return;
      case 'retire':
        worker.requests = message.requests;
        if (!worker.retiring) {
          worker.retiring = true;
          this.logger.info(
            { worker: pid, requests: message.requests },
            'worker reached maxRequests: replacing it',
          );
        }
        return;
    }
  }

  /** A worker over `maxMemory` (a leak) is replaced like one that reached `maxRequests`. */
  private checkMemory(worker: WorkerRecord): void {
    const limit = this.config.maxMemory * 1024 * 1024;
    if (limit === 0 || worker.retiring || worker.state !== 'ready' || worker.rss <= limit) return;
    worker.retiring = true;
    this.logger.warn(
      { worker: worker.pid, rss: worker.rss },
      `worker ${worker.pid} uses ${Math.round(worker.rss / 1024 / 1024)} MB, over maxMemory ${this.config.maxMemory} MB: replacing it`,
    );
  }

  private onWorkerExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const worker = this.workers.get(pid);
    if (worker === undefined) return;
    this.workers.delete(pid);
    this.healthChecks.workerExited(pid);
    this.book.workerExited(worker, this.exitReason(worker), this.effects.now());
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (worker.state === 'draining' || this.state === 'stopping') {
      this.logger.info({ worker: pid }, `worker exited (pid: ${pid}, ${how})`);
      return;
    }
    const said =
      worker.release.kind === 'exec' && worker.lastOutput
        ? ` (it said: ${worker.lastOutput.slice(0, 300)})`
        : '';
    const reason = worker.failure ?? `exited with ${how}${said}`;
    this.logger.error(
      { worker: pid, release: worker.release.name, state: worker.state },
      `worker ${pid} died: ${reason}`,
    );
    if (this.state === 'booting') {
      this.failBoot(`worker ${pid} failed before the master became ready: ${reason}`);
      return;
    }
    if (
      this.reload !== undefined &&
      worker.generation === this.generation &&
      worker.state === 'booting'
    ) {
      this.abandonReload(`a new worker failed to boot: ${reason}`);
      return;
    }
    if (worker.generation !== this.generation) return;
    const delay = this.backoff.recordDeath(this.effects.now() - worker.bornAt);
    if (delay > 0) {
      this.nextSpawnAt = this.effects.now() + delay;
      this.logger.warn(
        { deaths: this.backoff.deaths, delayMs: delay },
        `workers are crash-looping: next spawn in ${delay} ms`,
      );
    }
  }

  /** Why a worker that just exited did, as `prefork_worker_exits_total{reason}` counts it. */
  private exitReason(worker: WorkerRecord): WorkerExitReason {
    if (worker.exitReason !== undefined) return worker.exitReason;
    if (worker.state === 'draining') return worker.retiring ? 'recycled' : 'drained';
    if (this.state === 'stopping') return 'stopped';
    return worker.state === 'booting' ? 'boot_failed' : 'crashed';
  }

  private onTick(): void {
    const now = this.effects.now();
    this.book.sample(this.workers.values(), now);
    this.noticeOldMasterGone();
    this.newMaster?.checkReadyDeadline(now);
    for (const worker of this.workers.values()) {
      this.checkExecWorker(worker, now);
      const silence = this.heartbeatTimeoutS(worker);
      if (worker.state === 'booting' && now - worker.bornAt > this.config.bootTimeout * 1000) {
        this.killWorker(worker, this.notReadyReason(worker), 'boot_failed');
      } else if (
        worker.state === 'ready' &&
        silence !== undefined &&
        now - worker.lastBeat > silence * 1000
      ) {
        this.killWorker(
          worker,
          worker.release.kind === 'exec'
            ? `no WATCHDOG=1 for ${silence} s (watchdogSec): hung?`
            : `no heartbeat for ${silence} s (blocked event loop?)`,
          'hung',
        );
      } else if (worker.killAt !== undefined && now > worker.killAt) {
        this.killWorker(worker, 'still draining past the graceful timeout', 'killed');
      } else if (
        worker.state === 'ready' &&
        worker.readyAt &&
        now - worker.readyAt > CRASH_HEALTHY_MS
      ) {
        if (this.backoff.deaths > 0 && worker.generation === this.generation)
          this.backoff.recordHealthy();
      }
    }
    if (this.killAllAt !== undefined && now > this.killAllAt) {
      for (const worker of this.workers.values())
        this.killWorker(worker, 'quick shutdown timed out', 'killed');
      this.killAllAt = undefined;
    }
  }

  /**
   * Seconds a ready worker may stay silent before it is killed: `--timeout` for a Node worker,
   * `watchdogSec` for an exec worker (none when that is 0: an exec worker sends nothing else).
   */
  private heartbeatTimeoutS(worker: WorkerRecord): number | undefined {
    if (worker.release.kind === 'node') return this.config.timeout;
    return worker.release.exec.watchdogSec > 0 ? worker.release.exec.watchdogSec : undefined;
  }

  /** Why a booting worker is killed at bootTimeout: for an exec worker, what it never did. */
  private notReadyReason(worker: WorkerRecord): string {
    const within = `within bootTimeout (${this.config.bootTimeout} s)`;
    if (worker.release.kind === 'exec' && worker.release.exec.ready.kind === 'notify') {
      return `never sent READY=1 on NOTIFY_SOCKET ${within}: make it notify (sd_notify), or set "ready": {"afterMs": N} in prefork.json`;
    }
    return `did not become ready ${within}`;
  }

  /**
   * What an exec worker cannot report itself: readiness by time (`ready: {afterMs}`) and its
   * RSS (for `status` and `--max-memory`), read from `/proc` about once a second.
   */
  private checkExecWorker(worker: WorkerRecord, now: number): void {
    if (worker.release.kind !== 'exec') return;
    const { ready } = worker.release.exec;
    if (worker.state === 'booting' && ready.kind === 'after' && now - worker.bornAt >= ready.ms) {
      this.onWorkerMessage(worker.pid, { type: 'ready', tls: false });
    }
    if (now - worker.rssAt >= EXEC_RSS_EVERY_MS) {
      worker.rssAt = now;
      worker.rss = this.effects.processRss(worker.pid);
      this.checkMemory(worker);
    }
  }

  private spawn(): void {
    const jitter = this.config.maxRequestsJitter;
    // The worker's own release: after a HUP, `this.release` is the next generation's.
    const release = this.release.name;
    const worker = this.effects.spawnWorker({
      release: this.release,
      generation: this.generation,
      fds: this.parts.sockets.map((s) => s.fd),
      env: this.parts.workerEnv,
      identity: this.parts.identity,
      nodePath: this.parts.command.execPath,
      worker: {
        sockets: this.parts.sockets.map((s) => s.bind.name),
        gracefulTimeoutMs: this.config.gracefulTimeout * 1000,
        heartbeatMs: Math.max(50, Math.min(1000, (this.config.timeout * 1000) / 4)),
        maxRequests:
          this.config.maxRequests > 0
            ? this.config.maxRequests + Math.floor(Math.random() * (jitter + 1))
            : 0,
        warmup: this.config.warmup,
        warmupPath: this.config.warmupPath ?? this.config.healthPath ?? '/',
        warmupTimeoutMs: (this.config.bootTimeout * 1000) / 2,
        logLevel: this.config.logLevel,
        logFile: this.config.logFile,
        metrics: this.parts.metrics !== undefined,
        canary: this.canary,
      },
      onMessage: (pid, message) => this.enqueue({ kind: 'worker-message', pid, message }),
      onExit: (pid, code, signal) => this.enqueue({ kind: 'worker-exit', pid, code, signal }),
      notifyDir: this.parts.notifyDir,
      onOutput: (pid, stream, line) => this.logger.info({ worker: pid, release, stream }, line),
    });
    this.workers.set(worker.pid, worker);
    this.logger.info(
      { worker: worker.pid, release: this.release.name },
      `booting worker with pid: ${worker.pid}`,
    );
  }

  /**
   * Graceful stop of one worker: QUIT (an exec release's `stopSignal`), and SIGKILL past the
   * graceful timeout.
   */
  private drainWorker(worker: WorkerRecord, reason: string): void {
    if (worker.state === 'draining') return;
    worker.state = 'draining';
    worker.killAt = this.effects.now() + this.config.gracefulTimeout * 1000 + WORKER_KILL_GRACE_MS;
    this.logger.info({ worker: worker.pid, reason }, `draining worker ${worker.pid} (${reason})`);
    const signal = worker.release.kind === 'exec' ? worker.release.exec.stopSignal : 'SIGQUIT';
    this.effects.signalWorker(worker, signal);
  }

  private killWorker(worker: WorkerRecord, reason: string, exitReason: WorkerExitReason): void {
    if (worker.killed) return;
    worker.killed = true;
    worker.failure = reason;
    worker.exitReason = exitReason;
    worker.killAt = undefined;
    this.logger.error({ worker: worker.pid }, `killing worker ${worker.pid}: ${reason}`);
    this.effects.signalWorker(worker, 'SIGKILL');
  }

  // -------------------------------------------------------------------------------------------
  // Generations (HUP)
  // -------------------------------------------------------------------------------------------

  private startGeneration(release: Release, config: Config, workers = config.workers): void {
    this.abandonReload(undefined);
    this.reload = {
      generation: this.generation,
      release: this.release,
      config: this.config,
      desired: this.desired,
    };
    this.generation += 1;
    this.release = release;
    this.config = config;
    this.desired = workers;
    this.workersStopped = false;
    this.backoff.recordHealthy();
    this.nextSpawnAt = 0;
  }

  /**
   * Gives up an unfinished reload: back to the generation it was replacing. `reason`
   * undefined gives it up silently (superseded by another reload, or WINCH).
   */
  private abandonReload(reason: string | undefined): void {
    const previous = this.reload;
    if (previous === undefined) return;
    this.reload = undefined;
    for (const worker of this.workers.values()) {
      if (worker.generation === this.generation) this.drainWorker(worker, 'reload abandoned');
    }
    this.generation = previous.generation;
    this.release = previous.release;
    this.config = previous.config;
    this.desired = previous.desired;
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
      if (this.workers.size === 0) this.exit();
      return;
    }
    const current = [...this.workers.values()].filter(
      (w) => w.generation === this.generation && !w.retiring && w.state !== 'draining',
    );
    if (!this.workersStopped) {
      if (current.length < this.desired && this.effects.now() >= this.nextSpawnAt) {
        const count = this.backoff.deaths > 1 ? 1 : this.desired - current.length;
        for (let i = 0; i < count; i += 1) this.spawn();
        if (this.backoff.delay() > 0) this.nextSpawnAt = this.effects.now() + this.backoff.delay();
      }
      const extra = current.length - this.desired;
      if (extra > 0) {
        const byPreference = current.sort(
          (a, b) =>
            Number(a.state === 'ready') - Number(b.state === 'ready') || a.bornAt - b.bornAt,
        );
        for (const worker of byPreference.slice(0, extra)) this.drainWorker(worker, 'TTOU');
      }
    }
    const ready = current.filter((w) => w.state === 'ready').length;
    if (ready < this.desired || this.workersStopped) return;
    for (const worker of this.workers.values()) {
      if (worker.generation !== this.generation)
        this.drainWorker(worker, 'replaced by a new generation');
      else if (worker.retiring) this.drainWorker(worker, 'replaced (maxRequests or maxMemory)');
    }
    if (this.reload !== undefined) {
      this.reload = undefined;
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
    this.pidPath = this.config.pid;
    this.parts.handover.reportReady({
      ready: true,
      pid: process.pid,
      binds: this.handedOver().map((s) => s.bind.name),
      protocol: HANDOVER_PROTOCOL,
      version: PREFORK_VERSION,
    });
    this.logger.info(
      { workers: this.desired, pidfile: this.config.pid },
      `master ready (pid: ${process.pid}, release ${this.release.name})`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Upgrades: this master as the old one (its new master) or as the new one (its old master)
  // -------------------------------------------------------------------------------------------

  /** The new master is gone: take the service back, and restart the workers WINCH stopped. */
  private onNewMasterExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const newMaster = this.newMaster;
    if (newMaster?.pid !== pid) return;
    this.newMaster = undefined;
    this.upgradeError = newMaster.failure;
    this.pidPath = newMaster.onExit(code, signal);
    this.setTitle();
    if (this.workersStopped && this.state === 'running') {
      this.workersStopped = false;
      this.logger.info('restarting the workers WINCH stopped');
    }
  }

  /** Once the old master that started this one has exited, clean up after it. */
  private noticeOldMasterGone(): void {
    const gone = this.oldMaster?.noticeGone(this.config.pid);
    if (gone !== undefined) this.logger[gone.level](gone.message);
  }

  private setTitle(): void {
    this.effects.setTitle(masterTitle(this.release.name, { old: this.newMaster !== undefined }));
  }

  // -------------------------------------------------------------------------------------------
  // Shutdown
  // -------------------------------------------------------------------------------------------

  private quickShutdown(): void {
    this.state = 'stopping';
    this.killAllAt = this.effects.now() + QUICK_KILL_MS;
    for (const worker of this.workers.values()) {
      worker.state = 'draining';
      worker.exitReason ??= 'stopped';
      this.effects.signalWorker(worker, 'SIGTERM');
    }
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
    let sharers: SocketSharers | undefined;
    try {
      if (this.tick) clearInterval(this.tick);
      this.parts.control?.close();
      this.parts.notifyDir.remove();
      removePidfileIfOurs(this.config.pid, process.pid);
      removePidfileIfOurs(this.config.pid + OLDBIN_SUFFIX, process.pid);
      sharers = {
        newMaster: this.newMaster && { binds: this.newMaster.binds },
        oldMasterAlive: this.oldMaster?.alive() === true,
      };
      closeListenSockets(this.parts.sockets, sharers);
      this.logger.info({ code: this.exitCode }, `master exiting (pid: ${process.pid})`);
    } finally {
      const exit = () => this.effects.exit(this.exitCode);
      if (metrics === undefined || sharers === undefined) exit();
      else metrics.stop(sharedWithOthers(metrics.socket, sharers), exit);
    }
  }

  /** The sockets a new master inherits: the app's and the metrics socket. */
  private handedOver(): ListenSocket[] {
    const { metrics } = this.parts;
    return metrics === undefined ? this.parts.sockets : [...this.parts.sockets, metrics.socket];
  }

  // -------------------------------------------------------------------------------------------
  // Control socket
  // -------------------------------------------------------------------------------------------

  /** Answers a control-socket request. */
  control(request: ControlRequest): unknown {
    if (request.cmd === 'health') return this.checkWorkers(request.path);
    if (request.cmd === 'metrics') return this.metricsShare();
    if (request.cmd === 'canary') {
      this.setCanary(request.on === true);
      return { canary: this.canary };
    }
    if (request.cmd === 'upgrade') {
      if (!Number.isInteger(request.workers) || request.workers < 1) {
        throw new Error('workers must be a whole number, at least 1');
      }
      const refused = this.startUpgrade(request.workers);
      if (refused !== undefined) throw new Error(`upgrade refused: ${refused}`);
      return { newMasterPid: this.newMaster?.pid };
    }
    if (request.cmd === 'scale') {
      if (request.workers < 1) throw new Error('workers must be at least 1');
      this.desired = request.workers;
      this.logger.info(`scale: workers: ${this.desired}`);
      this.enqueue({ kind: 'tick' });
      return { workers: this.desired };
    }
    return this.status();
  }

  /**
   * Asks every serving worker (ready, not draining) to GET `path` from its own app, so that
   * whoever calls (a deploy) learns how this master's release answers even while another
   * generation accepts on the same sockets. Empty when no worker serves (WINCH, booting).
   */
  private checkWorkers(path: string): Promise<WorkerHealth[]> {
    // Exec workers have no channel to be asked on: deploy checks them through the bind.
    const serving = [...this.workers.values()].filter(
      (w) => w.state === 'ready' && w.release.kind === 'node',
    );
    const bounds = { answerMs: HEALTH_ANSWER_MS, reachMs: this.config.timeout * 1000 };
    return Promise.all(serving.map((w) => this.healthChecks.ask(w, path, bounds)));
  }

  /**
   * This master's own share of the metrics: its state, release, and its workers' figures by
   * release (those gone included). A scrape adds the other master's during an upgrade.
   */
  metricsShare(): MasterMetrics {
    return {
      pid: process.pid,
      state: this.publicState(),
      release: this.release.name,
      version: this.release.version,
      releases: this.book.releases(this.workers.values()),
    };
  }

  /** The other master of an upgrade in flight (the new one, or the old one still alive). */
  peerPid(): number | undefined {
    if (this.newMaster !== undefined) return this.newMaster.pid;
    return this.oldMaster?.alive() ? this.oldMaster.pid : undefined;
  }

  private publicState(): MasterStatus['state'] {
    return this.state === 'running' && this.newMaster !== undefined ? 'old' : this.state;
  }

  /** This master's state, as `prefork status` shows it. */
  status(): MasterStatus {
    const now = this.effects.now();
    return {
      pid: process.pid,
      root: this.config.root,
      release: this.release.name,
      version: this.release.version,
      releaseDir: this.release.dir,
      state: this.publicState(),
      workersStopped: this.workersStopped,
      desiredWorkers: this.desired,
      configuredWorkers: this.config.workers,
      canary: this.canary,
      uptime: Math.round((now - this.startedAt) / 1000),
      rss: process.memoryUsage.rss(),
      binds: this.parts.sockets.map((s) => s.address),
      oldMasterPid: this.oldMaster?.alive() ? this.oldMaster.pid : null,
      newMasterPid: this.newMaster?.pid ?? null,
      upgradeError: this.upgradeError ?? null,
      pidfile: this.pidPath,
      heartbeatTimeout: this.config.timeout,
      preforkVersion: PREFORK_VERSION,
      node: { version: process.version, path: this.parts.command.execPath },
      workerIdentity: this.parts.identity ?? null,
      metrics: this.parts.metrics?.socket.address ?? null,
      traffic: this.book.traffic(),
      workers: [...this.workers.values()].map((w) => ({
        pid: w.pid,
        release: w.release.name,
        kind: w.release.kind,
        generation: w.generation,
        state: w.state,
        tls: w.tls,
        requests: w.requests,
        rss: w.rss,
        age: Math.round((now - w.bornAt) / 1000),
        ...(w.statusText === undefined ? {} : { status: w.statusText }),
      })),
    };
  }
}
