import { constants } from 'node:os';
import type { Logger } from 'pino';
import { type MasterCommand, spawnMaster } from '../handover/spawn-master.js';
import { sendSignal } from '../process/alive.js';
import { oldbinPath } from '../protocol/files.js';
import { readPidfile } from '../state/pidfile.js';
import type { Libc } from './libc.js';
import { isMasterEntry, liveDescendants, ownChildren } from './process-tree.js';

/** What TERM to the init does: docker stop, Kubernetes, `systemctl stop` (docs/containers.md). */
export type StopMode = 'graceful' | 'quick';

/** The signals an init handles; CHLD is how it learns a child has exited. */
const INIT_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGTTIN',
  'SIGTTOU',
  'SIGWINCH',
  'SIGCHLD',
] as const;
type InitSignal = (typeof INIT_SIGNALS)[number];

/** Signals passed as they are to the serving master (the pidfile's). */
const PASSED_ON = new Set<InitSignal>(['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU']);

/** How often the init looks for exited children besides SIGCHLD (which the kernel coalesces). */
const SWEEP_MS = 1000;
/** How long processes left behind by the last master get after TERM before KILL. */
export const STRAY_GRACE_MS = 5000;

export interface InitOptions {
  /** How to start the first master (the `start` command line less `--init`). */
  command: MasterCommand;
  pidfile: string;
  stopMode: StopMode;
  libc: Libc;
  logger: Logger;
  /** Reopens the init's own log file (USR1, before it is passed on). */
  reopenLog: () => void;
  /** The first master never became ready: undo what `start` did before it (`current`). */
  onBootFailure: () => void;
  /** Ends the process (tests of the loop pass their own). */
  exit: (code: number) => void;
}

/**
 * The container's main process (SPEC §17): PID 1 of its namespace, or on request a child
 * subreaper under another supervisor. It starts the first master and outlives every master
 * generation: each new master started by USR2 becomes its child when its old master exits. It
 * reaps every orphan as init must, passes the stop signal to every master and the other signals
 * to the serving one (found by the pidfile), and exits, with the last master's exit status,
 * once no master is left. It holds no state a deploy needs: killing it ends the service as
 * killing PID 1 would, nothing worse.
 */
export class Init {
  private firstMaster: number | undefined;
  /** The exit status of the master that exited last. */
  private lastMasterCode = 0;
  /**
   * The first master's exit has been handled (libuv reaped it). Until then it counts as alive,
   * zombie or not: this process's own SIGCHLD listener can run before libuv's, and would see no
   * master left and exit 0 before the first master's status is known.
   */
  private firstMasterGone = false;
  /**
   * Whether the first master became ready is known (its ready pipe answered or closed). Until
   * then this process does not exit: a master that failed to boot has its failure logged and
   * `current` put back first (`onBootFailure`), however its exit and its pipe's end are ordered.
   */
  private bootKnown = false;
  /** Masters seen alive (by title or pidfile), so their exits count as masters' exits. */
  private readonly masters = new Set<number>();
  /** The stop signal passed to masters once a stop began; masters seen later get it too. */
  private stopSignal: NodeJS.Signals | undefined;
  private readonly stopped = new Set<number>();
  private finishing: { killAt: number } | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: InitOptions) {}

  /** Starts the first master and runs until the last one has exited. */
  run(): void {
    const { libc, logger, command } = this.options;
    libc.becomeSubreaper();
    for (const signal of INIT_SIGNALS) process.on(signal, () => this.onSignal(signal));
    const spawned = spawnMaster(command, {
      sockets: [],
      stdout: 'inherit',
      stderr: 'inherit',
      // Away from a terminal's process group: a window resize (WINCH) or Ctrl-C reaches this
      // process only, which decides what a master gets.
      newSession: true,
    });
    const pid = spawned.process.pid;
    if (pid === undefined) {
      logger.error('could not start the master');
      this.options.onBootFailure();
      this.options.exit(1);
      return;
    }
    this.firstMaster = pid;
    this.masters.add(pid);
    logger.info({ master: pid }, `init: started master ${pid}`);
    spawned.process.on('exit', (code, signal) => {
      this.firstMasterGone = true;
      this.masterExited(pid, code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
      this.afterChange();
    });
    void spawned.ready.then((message) => {
      if (message?.ready) logger.info({ master: pid }, `init: master ${pid} is ready`);
      else {
        logger.error(
          { master: pid },
          `init: master ${pid} did not start: ${message?.error ?? 'it exited first'}`,
        );
        this.options.onBootFailure();
      }
      this.bootKnown = true;
      this.afterChange();
    });
    this.sweepTimer = setInterval(() => this.afterChange(), SWEEP_MS);
  }

  private onSignal(signal: InitSignal): void {
    const { logger } = this.options;
    switch (signal) {
      case 'SIGCHLD':
        break;
      case 'SIGWINCH':
        // A terminal's window resize: never passed on (send WINCH to a master's pid to stop its workers).
        logger.debug('init: WINCH ignored');
        break;
      case 'SIGTERM':
        this.stop(
          this.stopSignal === undefined && this.options.stopMode === 'graceful'
            ? 'SIGQUIT'
            : 'SIGTERM',
          signal,
        );
        break;
      case 'SIGINT':
        this.stop('SIGTERM', signal);
        break;
      case 'SIGQUIT':
        this.stop(this.stopSignal ?? 'SIGQUIT', signal);
        break;
      default:
        if (signal === 'SIGUSR1') this.options.reopenLog();
        if (PASSED_ON.has(signal)) this.passOn(signal);
    }
    this.afterChange();
  }

  /** Passes `signal` to the serving master: the pidfile's, else the old one's, else any. */
  private passOn(signal: NodeJS.Signals): void {
    const live = this.liveMasters();
    const { pidfile } = this.options;
    const serving = [readPidfile(pidfile), readPidfile(oldbinPath(pidfile))].find(
      (pid) => pid !== undefined && live.includes(pid),
    );
    const target = serving ?? live.at(-1);
    if (target === undefined) {
      this.options.logger.warn(`init: ${signal} not passed on: no master runs`);
      return;
    }
    this.options.logger.info({ master: target }, `init: ${signal} passed to master ${target}`);
    sendSignal(target, signal);
  }

  /** A stop: `signal` to every master, now and to any that appears until the last has exited. */
  private stop(signal: NodeJS.Signals, received: NodeJS.Signals): void {
    if (this.stopSignal !== signal) this.stopped.clear();
    this.stopSignal = signal;
    const kind = signal === 'SIGQUIT' ? 'graceful' : 'quick';
    this.options.logger.info(
      `init: ${received} received: ${kind} stop (${signal} to every master)`,
    );
  }

  /** Reaps what has exited, passes a stop on, and ends once no master is left. */
  private afterChange(): void {
    this.reapAdopted();
    const live = this.liveMasters();
    if (this.stopSignal !== undefined) {
      for (const pid of live) {
        if (this.stopped.has(pid)) continue;
        this.stopped.add(pid);
        sendSignal(pid, this.stopSignal);
      }
    }
    if (live.length > 0 || !this.firstMasterGone || !this.bootKnown) return;
    // Looked at twice: one look may catch a master adopted from an old one mid-move (each
    // process's stat is read in turn), the next sees it adopted.
    if (this.liveMasters().length === 0) this.finish();
  }

  /**
   * Masters alive among this process's descendants: by title, or as the first master or a
   * pidfile's pid before its title is set.
   */
  private liveMasters(): number[] {
    const { pidfile } = this.options;
    const named = new Set([
      this.firstMaster,
      readPidfile(pidfile),
      readPidfile(oldbinPath(pidfile)),
    ]);
    const live = liveDescendants()
      .filter((entry) => isMasterEntry(entry) || named.has(entry.pid))
      .map((entry) => entry.pid);
    for (const pid of live) this.masters.add(pid);
    return live;
  }

  /**
   * Reaps every exited child libuv did not spawn (adopted masters, a release's orphans), so no
   * zombie is left; the first master is libuv's to reap (its `exit` event).
   */
  private reapAdopted(): void {
    for (const entry of ownChildren()) {
      const { pid } = entry;
      if (pid === this.firstMaster || entry.state !== 'Z') continue;
      const code = this.options.libc.reap(pid);
      if (code === undefined) continue;
      if (this.masters.has(pid) || isMasterEntry(entry)) this.masterExited(pid, code);
    }
  }

  private masterExited(pid: number, code: number): void {
    this.masters.delete(pid);
    this.lastMasterCode = code;
    this.options.logger.info({ master: pid, code }, `init: master ${pid} exited (${code})`);
  }

  /**
   * No master is left: TERM whatever the masters left behind, KILL what remains after
   * {@link STRAY_GRACE_MS}, and exit with the last master's status.
   */
  private finish(): void {
    const strays = liveDescendants();
    const now = Date.now();
    if (this.finishing === undefined) {
      this.finishing = { killAt: now + STRAY_GRACE_MS };
      for (const stray of strays) sendSignal(stray.pid, 'SIGTERM');
      if (strays.length > 0) {
        this.options.logger.warn(
          `init: no master left; ${strays.length} process(es) left behind get TERM, then KILL in ${STRAY_GRACE_MS / 1000} s`,
        );
      }
    } else if (now >= this.finishing.killAt) {
      for (const stray of strays) sendSignal(stray.pid, 'SIGKILL');
    }
    if (strays.length > 0) return;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.options.logger.info(`init: no master left, exiting (${this.lastMasterCode})`);
    this.options.exit(this.lastMasterCode);
  }
}
